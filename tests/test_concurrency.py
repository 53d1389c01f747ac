"""Concurrent writers and readers, as `make -j8` would run them: separate `vz` processes on one store.

Every command must succeed (writers queue on SQLite's write lock), the final contents must be
exactly what replaying the committed mutations in commit order gives, and readers must never see
a half-applied command. A writer that cannot get the lock in VZ_LOCK_TIMEOUT seconds fails with
code 1003 and a message naming the lock and the variable, never SQLite's "database is locked".

VZ_SOAK=1 runs a larger variant (more writers, commands and records; see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

VZ = str(Path(sys.executable).with_name("vz"))
SOAK = os.environ.get("VZ_SOAK") == "1"
WRITERS = 12 if SOAK else 8
ROUNDS = 6 if SOAK else 1  # upsert + insert + delete rounds per writer
OWN = 120 if SOAK else 40  # disjoint ids per writer per round
SHARED = 60 if SOAK else 30  # ids every writer touches
DIMS = 8


def _env(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VZ_")}
    env.update(VZ_STORE=str(store), VZ_MERGE_THRESHOLD="40", **extra)
    return env


def _run(store: Path, *args: str, input: bytes | None = None, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([VZ, *args], input=input, capture_output=True, env=_env(store, **env), timeout=300)


def _rec(vid: str, writer: int, rnd: int, kind: str) -> dict[str, Any]:
    rng = random.Random(f"{vid}/{writer}/{rnd}/{kind}")
    return {"id": vid, "values": [round(rng.uniform(-1, 1), 6) for _ in range(DIMS)],
            "metadata": {"writer": writer, "round": rnd, "kind": kind}}


def _ndjson(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in recs)


class Ledger:
    """The commands that reported success, keyed by the mutationId they printed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: dict[str, tuple[str, list[dict[str, Any]] | list[str]]] = {}
        self.failures: list[str] = []

    def ok(self, mid: str, op: str, payload: Any) -> None:
        with self.lock:
            self.ops[mid] = (op, payload)

    def fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _writer(store: Path, w: int, ledger: Ledger, start: threading.Barrier) -> None:
    start.wait()
    for rnd in range(ROUNDS):
        own = [f"w{w}-r{rnd}-{i}" for i in range(OWN)]
        shared = [f"shared-{j}" for j in range(SHARED)]
        ups = [_rec(v, w, rnd, "upsert") for v in own + shared]
        random.Random(w * 100 + rnd).shuffle(ups)
        ins = [_rec(f"w{w}-r{rnd}-ins-{i}", w, rnd, "insert") for i in range(OWN // 2)] + \
            [_rec(v, w, rnd, "insert") for v in shared[::2]]
        dels = own[: OWN // 4] + [f"shared-{j}" for j in range(w % 3, SHARED, 7 + w)]
        steps: list[tuple[str, Any, list[str], bytes | None]] = [
            ("upsert", ups, ["upsert", "c", "--file", "-", "--json"], _ndjson(ups)),
            ("insert", ins, ["insert", "c", "--file", "-", "--json"], _ndjson(ins)),
            ("delete", dels, ["delete-vectors", "c", "--json", "--ids", *dels], None),
        ]
        for op, payload, args, stdin in steps:
            r = _run(store, *args, input=stdin)
            err = r.stderr.decode()
            if r.returncode != 0 or "database is locked" in err or "Traceback" in err:
                ledger.fail(f"writer {w} {op}: exit {r.returncode}: {err}")
                continue
            ledger.ok(json.loads(r.stdout)["mutationId"], op, payload)


def _replay(store: Path, ledger: Ledger) -> dict[str, dict[str, Any]]:
    """Apply the successful commands in commit order (the mutation log's seq) to a dict."""
    db = sqlite3.connect(store / "catalog.sqlite3")
    order = {u: s for s, u in db.execute("SELECT seq, uuid FROM mutations")}
    db.close()
    assert set(ledger.ops) <= set(order), "a reported mutationId is not in the mutation log"
    model: dict[str, dict[str, Any]] = {}
    for mid in sorted(ledger.ops, key=order.__getitem__):
        op, payload = ledger.ops[mid]
        for item in payload:
            if op == "upsert":
                model[item["id"]] = item
            elif op == "insert":
                model.setdefault(item["id"], item)
            else:
                model.pop(item, None)
    return model


def _reader(store: Path, stop: threading.Event, problems: list[str], seen: list[int], seed: int) -> None:
    """Queries, gets and listings in a loop; a command's own batch is all there or not at all."""
    rng = random.Random(seed)
    while not stop.is_set():
        w, rnd = rng.randrange(WRITERS), rng.randrange(ROUNDS)
        batch = [f"w{w}-r{rnd}-ins-{i}" for i in range(OWN // 2)]
        kind = rng.choice(["get", "query", "query-filter", "list", "info"])
        if kind == "get":
            args = ["get-vectors", "c", "--json", "--ids", *batch]
        elif kind == "query":
            args = ["query", "c", "--vector", *[str(rng.uniform(-1, 1)) for _ in range(DIMS)], "--top-k", "20",
                    "--json"]
        elif kind == "query-filter":
            args = ["query", "c", "--vector", *[str(rng.uniform(-1, 1)) for _ in range(DIMS)], "--top-k", "20",
                    "--filter", json.dumps({"writer": w}), "--return-metadata", "all", "--json"]
        elif kind == "list":
            args = ["list-vectors", "c", "--count", "1000", "--json"]
        else:
            args = ["info", "c", "--json"]
        r = _run(store, *args)
        seen[0] += 1
        if r.returncode != 0 or r.stderr.strip() and kind != "query-filter":
            problems.append(f"{kind}: exit {r.returncode}: {r.stderr.decode()}")
            continue
        out = json.loads(r.stdout)
        if kind == "get":
            got = {v["id"] for v in out}
            if got and got != set(batch):
                problems.append(f"torn insert batch w{w} r{rnd}: {len(got)} of {len(batch)} records visible")
            for v in out:
                if v["metadata"] != {"writer": w, "round": rnd, "kind": "insert"}:
                    problems.append(f"record {v['id']} has metadata {v['metadata']}")
        elif kind.startswith("query"):
            scores = [m["score"] for m in out["matches"]]
            if scores != sorted(scores) or len(scores) > 20 or len({m["id"] for m in out["matches"]}) != len(scores):
                problems.append(f"bad query result {out}")
            if kind == "query-filter" and any(m["metadata"]["writer"] != w for m in out["matches"]):
                problems.append(f"filter on writer {w} returned {out}")


def test_eight_writers_and_two_readers(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _run(store, "create", "c", "--dimensions", str(DIMS), "--metric", "euclidean").returncode == 0
    assert _run(store, "create-metadata-index", "c", "--property-name", "writer", "--type", "number").returncode == 0
    ledger = Ledger()
    start = threading.Barrier(WRITERS)
    writers = [threading.Thread(target=_writer, args=(store, w, ledger, start)) for w in range(WRITERS)]
    stop = threading.Event()
    problems: list[str] = []
    seen = [0]
    readers = [threading.Thread(target=_reader, args=(store, stop, problems, seen, s)) for s in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()

    assert ledger.failures == []
    assert problems == []
    assert len(ledger.ops) == WRITERS * ROUNDS * 3 and seen[0] > 0
    model = _replay(store, ledger)

    info = json.loads(_run(store, "info", "c", "--json").stdout)
    assert info["vectorCount"] == len(model)
    listed = _run(store, "list-vectors", "c", "--all", "--json")
    assert listed.returncode == 0
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == sorted(model, key=str.encode)
    exported = {}
    for line in _run(store, "export", "c").stdout.splitlines():
        rec = json.loads(line)
        exported[rec["id"]] = rec
    assert set(exported) == set(model)
    for vid, want in model.items():
        got = exported[vid]
        assert got["metadata"] == want["metadata"], vid
        assert got["values"] == pytest.approx(want["values"], abs=1e-6), vid
    r = _run(store, "doctor", "c", "--json")
    assert r.returncode == 0, r.stdout
    # the ANN path agrees with exact search after all the racing merges
    for seed in range(3):
        q = [str(random.Random(seed).uniform(-1, 1)) for _ in range(DIMS)]
        a = json.loads(_run(store, "query", "c", "--vector", *q, "--top-k", "10", "--json").stdout)
        b = json.loads(_run(store, "query", "c", "--vector", *q, "--top-k", "10", "--json", "--exact").stdout)
        assert [m["id"] for m in a["matches"]] == [m["id"] for m in b["matches"]]


def test_concurrent_first_writes_create_the_store_once(tmp_path: Path) -> None:
    """Eight processes racing to create a store that does not exist yet, each with its own index."""
    store = tmp_path / "fresh"
    procs = [subprocess.Popen([VZ, "create", f"i{n}", "--dimensions", "3", "--metric", "cosine", "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(store)) for n in range(8)]
    results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert results == [(0, "")] * 8
    names = [i["name"] for i in json.loads(_run(store, "list", "--json").stdout)]
    assert names == [f"i{n}" for n in range(8)]
    db = sqlite3.connect(store / "catalog.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def _hold_write_lock(store: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(store / "catalog.sqlite3", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_lock_timeout_is_a_clear_error(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _run(store, "create", "c", "--dimensions", "2", "--metric", "cosine").returncode == 0
    assert _run(store, "insert", "c", "--file", "-", input=b'{"id": "a", "values": [1, 0]}\n').returncode == 0
    holder = _hold_write_lock(store)
    try:
        t = time.monotonic()
        r = _run(store, "upsert", "c", "--file", "-", input=b'{"id": "b", "values": [0, 1]}\n', VZ_LOCK_TIMEOUT="1")
        waited = time.monotonic() - t
        err = r.stderr.decode()
        assert r.returncode == 1, err
        assert "database is locked" not in err and "Traceback" not in err
        assert err.startswith("✘ [ERROR] The store ") and "locked by another writer" in err
        assert "VZ_LOCK_TIMEOUT" in err and err.rstrip().endswith("[code: 1003]")
        assert waited >= 1.0
        for args in (["delete-vectors", "c", "--ids", "a"], ["create", "d", "--dimensions", "2", "--metric", "cosine"],
                     ["create-metadata-index", "c", "--property-name", "p", "--type", "string"], ["delete", "c", "-y"]):
            r = _run(store, *args, VZ_LOCK_TIMEOUT="0.5")
            assert (r.returncode, r.stderr.decode().rstrip()[-12:]) == (1, "[code: 1003]"), args
        # readers never wait for the writer lock
        r = _run(store, "get-vectors", "c", "--ids", "a", "b", "--json", VZ_LOCK_TIMEOUT="0.5")
        assert r.returncode == 0 and [v["id"] for v in json.loads(r.stdout)] == ["a"]
        r = _run(store, "query", "c", "--vector", "1", "0", "--json", VZ_LOCK_TIMEOUT="0.5")
        assert r.returncode == 0 and json.loads(r.stdout)["count"] == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # nothing was half-applied by the failed writers
    r = _run(store, "export", "c")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == ["a"]
    assert [i["name"] for i in json.loads(_run(store, "list", "--json").stdout)] == ["c"]


def test_writer_waits_for_the_lock_then_succeeds(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert _run(store, "create", "c", "--dimensions", "2", "--metric", "cosine").returncode == 0
    holder = _hold_write_lock(store)
    proc = subprocess.Popen([VZ, "insert", "c", "--file", "-", "--json"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(store, VZ_LOCK_TIMEOUT="30"))
    proc.stdin.write(b'{"id": "x", "values": [1, 2]}\n')
    proc.stdin.close()
    # the writer is blocked until we let go: it cannot finish while we hold the lock
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert proc.poll() is None
        time.sleep(0.1)
    holder.execute("ROLLBACK")
    holder.close()
    assert proc.wait(timeout=60) == 0
    assert json.loads(proc.stdout.read())["count"] == 1
    proc.stdout.close()
    proc.stderr.close()
    assert json.loads(_run(store, "info", "c", "--json").stdout)["vectorCount"] == 1
