"""SIGKILL a writer at random moments of insert, upsert, delete, optimize and metadata-index work.

After every kill: the store opens, every command that reported success (exit 0 and a printed
mutationId) is present exactly, a killed command is applied in full or not at all, `vz doctor`
finds no error, and the ANN path agrees with exact search. Leftovers of the killed process (a
lagging or half-written ANN file, temp files) are repaired by the next write without help.

The kill moment comes from a seeded RNG (VZ_CRASH_SEED to replay one run): either a random delay
scaled to how long that kind of command takes when left alone, or the instant a temp ANN file of
the process appears (mid-publish). VZ_SOAK=1 runs 200 rounds instead of 20 (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vzcli.doctor import run as doctor_run
from vzcli.local import LocalBackend
from vzcli.store import Store

VZ = str(Path(sys.executable).with_name("vz"))
SOAK = os.environ.get("VZ_SOAK") == "1"
ROUNDS = 200 if SOAK else 20
SEED = int(os.environ.get("VZ_CRASH_SEED", "20261122"))
DIMS = 16
BATCH = 2000 if SOAK else 1000
CAP = 20000


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VZ_")}
    env.update(VZ_STORE=str(store), VZ_MERGE_THRESHOLD="250", VZ_LOCK_TIMEOUT="60")
    return env


def _vz(store: Path, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([VZ, *args], input=input, capture_output=True, env=_env(store), timeout=300)


class Model:
    """What the store must hold: id -> (metadata, float32 bytes), and whether `grp` is indexed."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.grp_indexed = False
        self.next_id = 0

    def make(self, rng: random.Random, cmd: int, ids: list[str]) -> list[dict[str, Any]]:
        return [{"id": v, "values": [round(rng.uniform(-1, 1), 5) for _ in range(DIMS)],
                 "metadata": {"cmd": cmd, "grp": f"g{rng.randrange(4)}"}} for v in ids]

    def new_ids(self, n: int) -> list[str]:
        ids = [f"r{self.next_id + i:06d}" for i in range(n)]
        self.next_id += n
        return ids


def _stored(store: Path) -> tuple[dict[str, tuple[dict[str, Any], bytes]], bool, int]:
    """(records, grp indexed?, mvals rows of grp) read straight from SQLite."""
    db = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        recs = {vid: (json.loads(md), vec) for vid, md, vec in db.execute("SELECT id, metadata, vec FROM vectors")}
        row = db.execute("SELECT id FROM metadata_indexes WHERE property_name = 'grp'").fetchone()
        n = db.execute("SELECT count(*) FROM mvals WHERE prop_id = ?", (row[0],)).fetchone()[0] if row else 0
    finally:
        db.close()
    return recs, row is not None, n


def _as_stored(recs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], bytes]]:
    return {r["id"]: (r["metadata"], np.asarray(r["values"], dtype=np.float32).tobytes()) for r in recs}


def _kill_when(proc: subprocess.Popen[bytes], d: Path, rng: random.Random, est: float) -> str:
    """Kill `proc` at a random moment; returns how the moment was chosen."""
    if rng.random() < 0.25:
        prefix = f".tmp-{proc.pid}-"
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if d.is_dir() and any(p.name.startswith(prefix) for p in d.iterdir()):
                break
            time.sleep(0.002)
        how = "mid-publish"
    else:
        delay = rng.uniform(0.05, 1.3 * est)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        how = f"after {delay:.2f}s"
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return how


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = random.Random(SEED)
    model = Model()
    assert _vz(store, "create", "k", "--dimensions", str(DIMS), "--metric", "cosine").returncode == 0
    seed_recs = model.make(rng, -1, model.new_ids(BATCH))
    assert _vz(store, "insert", "k", "--file", "-", input=b"".join(json.dumps(r).encode() + b"\n"
                                                                   for r in seed_recs)).returncode == 0
    model.records.update(_as_stored(seed_recs))
    durations: dict[str, list[float]] = {}
    tally = {"killed": 0, "finished": 0, "applied": 0, "not-applied": 0}
    log: list[str] = []
    overlaps: list[int] = []
    # every kind of command gets its share of kills, in a seeded random order
    ops = (["insert"] * 3 + ["upsert"] * 3 + ["delete"] * 2 + ["optimize"] * 2 + ["metadata"] * 2) * (ROUNDS // 12 + 1)
    ops = ops[:ROUNDS]
    rng.shuffle(ops)
    for cmd, op in enumerate(ops):
        stdin: bytes | None = None
        expect: dict[str, tuple[dict[str, Any], bytes]] = {}
        gone: list[str] = []
        existing = sorted(model.records)
        if op == "insert":
            # new ids plus some existing ones, which insert must leave unchanged
            recs = model.make(rng, cmd, model.new_ids(BATCH) + rng.sample(existing, min(100, len(existing))))
            expect = {k: v for k, v in _as_stored(recs).items() if k not in model.records}
            args = ["insert", "k", "--file", "-", "--json"]
        elif op == "upsert":
            recs = model.make(rng, cmd, model.new_ids(BATCH // 2) + rng.sample(existing, min(BATCH // 2, len(existing))))
            expect = _as_stored(recs)
            args = ["upsert", "k", "--file", "-", "--json"]
        elif op == "delete":
            # past CAP records deletes grow, so a long soak keeps the index (and each round) bounded
            gone = rng.sample(existing, min(BATCH // 4 if len(existing) < CAP else 2 * BATCH, len(existing)))
            args = ["delete-vectors", "k", "--json", "--ids-file", "-"]
            stdin = "\n".join(gone).encode() + b"\n"
        elif op == "optimize":
            args = ["optimize", "k", "--json"]
        elif model.grp_indexed:
            args = ["delete-metadata-index", "k", "--property-name", "grp", "--json"]
        else:
            args = ["create-metadata-index", "k", "--property-name", "grp", "--type", "string", "--backfill", "--json"]
        if op in ("insert", "upsert"):
            stdin = b"".join(json.dumps(r).encode() + b"\n" for r in recs)

        if stdin is not None:  # from a file, so the kill timer starts with the process
            src = tmp_path / f"input-{cmd}"
            src.write_bytes(stdin)
            args = [str(src) if a == "-" else a for a in args]
        proc = subprocess.Popen([VZ, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_env(store))
        t0 = time.monotonic()
        est = statistics.median(durations[op]) if durations.get(op) else 2.5
        how = _kill_when(proc, store / "indexes" / "k", rng, est)
        out, err = proc.communicate(timeout=300)
        took = time.monotonic() - t0
        committed = proc.returncode == 0 and b'"mutationId"' in out
        if proc.returncode == 0:
            durations.setdefault(op, []).append(took)
            tally["finished"] += 1
        else:
            assert proc.returncode == -signal.SIGKILL, (op, proc.returncode, err.decode())
            tally["killed"] += 1

        # --- what is in the store now: the whole command or nothing of it ---
        stored, grp, grp_rows = _stored(store)
        if op in ("insert", "upsert"):
            applied = all(stored.get(k) == v for k, v in expect.items())
            untouched = all(stored.get(k) == model.records.get(k) for k in expect)
        elif op == "delete":
            applied = not any(k in stored for k in gone)
            untouched = all(k in stored for k in gone)
        elif op == "metadata":
            applied = grp != model.grp_indexed
            untouched = not applied
        else:
            applied, untouched = True, True  # optimize changes no record
        assert applied or untouched, f"round {cmd}: {op} killed {how} is partly applied"
        if committed:
            assert applied, f"round {cmd}: {op} reported success but is not in the store"
        if applied and op != "optimize":
            model.records.update(expect)
            for k in gone:
                model.records.pop(k, None)
            if op == "metadata":
                model.grp_indexed = grp
        if proc.returncode and op != "optimize":
            tally["applied" if applied and not untouched else "not-applied"] += 1
        log.append(f"{cmd}: {op} {how} -> {'exit 0' if proc.returncode == 0 else 'killed'}")
        assert stored == model.records, f"round {cmd}: store differs from the model ({log[-1]})"
        assert grp == model.grp_indexed and grp_rows == (len(stored) if grp else 0), f"round {cmd}: grp index"

        # --- the store opens, doctor finds no error, the ANN path agrees with exact search ---
        s = Store(store)
        try:
            assert LocalBackend(s).info("k")["vectorCount"] == len(model.records)
            rep = doctor_run(s, "k")
            assert rep.healthy, (log[-1], rep.to_dict())
            q = [rng.uniform(-1, 1) for _ in range(DIMS)]
            a = LocalBackend(s).query("k", vector=q, top_k=10)
            b = LocalBackend(s).query("k", vector=q, top_k=10, exact=True)
            # HNSW is approximate (measured here: 1 top-1 miss in 500 queries), so single rounds may
            # differ a little; every match must still be a live record with its exact score
            exact_scores = {m["id"]: m["score"] for m in b["matches"]}
            for m in a["matches"]:
                assert m["id"] in model.records, (log[-1], m)
                if m["id"] in exact_scores:
                    assert m["score"] == exact_scores[m["id"]], (log[-1], m)
            overlaps.append(len(exact_scores.keys() & {m["id"] for m in a["matches"]}))
            assert overlaps[-1] >= 6 and len(a["matches"]) == len(b["matches"]) == 10, (log[-1], a, b)
        finally:
            s.close()

    print(tally, f"ANN/exact overlap {sum(overlaps)}/{10 * len(overlaps)}", *log, sep="\n")  # pytest -s
    assert sum(overlaps) >= 0.95 * 10 * len(overlaps), overlaps
    # the kills did land in the middle of work, in both outcomes
    assert tally["killed"] >= ROUNDS // 4, (tally, log)
    assert tally["not-applied"] >= 1, (tally, log)
    # a final write repairs whatever the last kill left, and a fresh process sees it all
    assert _vz(store, "upsert", "k", "--file", "-", input=b'{"id": "last", "values": [' +
               b", ".join([b"0.5"] * DIMS) + b"]}\n").returncode == 0
    r = _vz(store, "doctor", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["healthy"] is True, r.stdout
    assert [p for p in json.loads(r.stdout)["problems"] if p["check"] != "files.orphans"] == []
    assert json.loads(_vz(store, "info", "k", "--json").stdout)["vectorCount"] == len(model.records) + 1


# --- Ctrl-C: exit 130 means nothing was written; exit 0 reports the committed write ----------------

INT_N = 12000


def _index_state(store: Path, name: str) -> tuple[int, list[str]]:
    """(vectorCount, mutation ids) of index `name`, straight from SQLite."""
    db = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT id, vector_count FROM indexes WHERE name = ?", (name,)).fetchone()
        muts = [m for (m,) in db.execute("SELECT uuid FROM mutations WHERE index_id = ? AND kind IN "
                                         "('insert', 'upsert')", (row[0],))]
        return row[1], muts
    finally:
        db.close()


def _wait_for(proc: subprocess.Popen[bytes], cond: Any) -> None:
    """Poll `cond` until it holds or the process ends (polling a condition, not a timed guess)."""
    while proc.poll() is None and not cond():
        time.sleep(0.001)


def _in_the_pipe(f: Any) -> int:
    """Bytes written to a pipe and not read yet (FIONREAD works on either end on Linux)."""
    import fcntl
    import struct
    import termios

    return int(struct.unpack("i", fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


def test_sigint_exit_code_says_whether_data_changed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rng = np.random.default_rng(7)
    lines = [json.dumps({"id": f"v{i}", "values": [round(float(x), 4) for x in rng.random(DIMS)]}).encode() + b"\n"
             for i in range(INT_N)]
    env = _env(store)
    env["VZ_MERGE_THRESHOLD"] = "1000"  # the ANN build runs after the commit, in the same command
    points = ["fed:0", "fed:0.3", "fed:0.7", "fed:0.99", "eof", "committed", "publishing"]
    seen = {"130": 0, "0": 0}
    for rnd, (verb, point) in enumerate((v, p) for p in points for v in ("insert", "upsert")):
        name = f"i{rnd}"
        assert _vz(store, "create", name, "--dimensions", str(DIMS), "--metric", "cosine").returncode == 0
        # a session of its own, so that the signal goes to its whole process group, as Ctrl-C does
        proc = subprocess.Popen([VZ, verb, name, "--file", "-", "--json"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
        assert proc.stdin is not None
        # a blank line first, read once vz reads its input: the signals below come after the
        # interpreter's own start-up (a SIGINT during CPython's `import site` is CPython's fatal
        # error, outside vz: vzcli/entry.py), as a user's Ctrl-C does
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        _wait_for(proc, lambda p=proc: _in_the_pipe(p.stdin) == 0)
        upto = int(float(point.split(":")[1]) * INT_N) if point.startswith("fed:") else INT_N
        proc.stdin.write(b"".join(lines[:upto]))
        proc.stdin.flush()
        if upto == INT_N:
            proc.stdin.close()
            proc.stdin = None  # communicate() must not flush it
        if point == "committed":
            _wait_for(proc, lambda n=name: _index_state(store, n)[1])
        elif point == "publishing":
            d = store / "indexes" / name
            _wait_for(proc, lambda d=d: any(p.name.startswith(".tmp-") for p in d.iterdir()))
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass  # it has just finished
        out, err = proc.communicate(timeout=120)
        count, muts = _index_state(store, name)
        where = f"{verb} SIGINT at {point}: exit {proc.returncode}\n{err.decode()}"
        # -SIGINT: the signal came before Python set up its handler (the shell shows 130 too)
        assert proc.returncode in (0, 130, -signal.SIGINT), where
        if proc.returncode != 0:
            seen["130"] += 1
            assert (count, muts, out) == (0, [], b""), where
            assert proc.returncode == -signal.SIGINT or "interrupted" in err.decode(), where
        else:
            seen["0"] += 1
            assert json.loads(out) == {"index": name, "count": INT_N, "mutationId": muts[0]}, where
            assert count == INT_N and len(muts) == 1, where
        if point.startswith("fed:"):
            assert proc.returncode != 0, where  # the input was not over: nothing can have committed
        if point == "committed":
            assert proc.returncode == 0, where  # the mutation was in the catalog before the signal
    assert seen["130"] >= 8 and seen["0"] >= 2, seen


def _sigint_blocked(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            blk = next(ln for ln in f if ln.startswith("SigBlk:"))
    except (OSError, StopIteration):
        return False
    return bool(int(blk.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def test_ctrl_c_while_vz_starts_is_interrupted_not_a_crash(tmp_path: Path) -> None:
    """Ctrl-C during vz's imports (`vzcli/entry.py` holds it until they are done) ends the command
    as Ctrl-C does: "interrupted", exit 130, nothing on stdout. Before, a KeyboardInterrupt raised
    inside orjson's initialisation crashed the interpreter (SIGSEGV) about one time in twenty."""
    env = _env(tmp_path / "store")
    observed = 0
    for cmd in (["list", "--json"], ["insert", "p", "--file", "-"]) * 6:
        proc = subprocess.Popen([VZ, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, start_new_session=True)
        _wait_for(proc, lambda p=proc: _sigint_blocked(p.pid))
        if proc.poll() is not None:  # it started and ended between two looks: nothing to test this round
            proc.communicate()
            continue
        observed += 1
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert (proc.returncode, out, err.decode()) == (130, b"", "✘ [ERROR] interrupted\n")
    assert observed >= 6  # vz's imports take ~100 ms: the poll sees nearly every one
    assert not (tmp_path / "store").exists()


def test_once_the_command_has_ended_ctrl_c_is_ignored_until_exit(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    """While the interpreter shuts down (SIGINT back at its default action), a Ctrl-C would kill
    the process with "interrupted" after its write had committed: `vzcli.entry` ignores it then."""
    import pytest

    from vzcli import entry

    monkeypatch.setenv("VZ_STORE", str(tmp_path / "store"))
    old = signal.getsignal(signal.SIGINT)
    try:
        for argv, code in ((["vz", "create", "p", "--dimensions", "2", "--metric", "cosine"], 0),
                           (["vz", "get", "nope"], 1)):
            signal.signal(signal.SIGINT, signal.default_int_handler)
            monkeypatch.setattr(sys, "argv", argv)
            with pytest.raises(SystemExit) as e:
                entry.main()
            assert e.value.code == code and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())  # not left blocked
    finally:
        signal.signal(signal.SIGINT, old)
    assert "[code: 3000]" in capsys.readouterr().err  # the failed `get`'s error, as a command prints it


_CTRL_C_IN_USEARCH_IMPORT = """
import importlib.abc, os, signal, sys
calls = []
if sys.argv[1] == "handler":
    signal.signal(signal.SIGINT, lambda sig, frame: calls.append("usearch.index" in sys.modules))

class CtrlC(importlib.abc.MetaPathFinder):  # Ctrl-C just as usearch's extension is looked up
    def find_spec(self, name, path, target=None):
        if name == "usearch.compiled":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlC())
from vzcli import usearch_file
try:
    cls = usearch_file.index_class()
    print(calls, cls.__name__)
except KeyboardInterrupt:
    print("KeyboardInterrupt", "usearch.index" in sys.modules)
"""


def test_ctrl_c_during_usearchs_first_import_reaches_the_handler_after_it() -> None:
    """A KeyboardInterrupt raised inside usearch's extension initialisation became ImportError
    ("initialization failed"): after a committed write, exit 1 and "internal error" (seen once in
    sixty SIGINTs to `vz insert`). `usearch_file.index_class` records SIGINT during the import and
    hands it to the handler in place afterwards: the write's guard, or Python's default."""
    for mode, want in (("handler", "[True] Index"), ("default", "KeyboardInterrupt True")):
        r = subprocess.run([sys.executable, "-c", _CTRL_C_IN_USEARCH_IMPORT, mode], capture_output=True,
                           text=True, timeout=120)
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, want, "")


def _interrupted_in_an_importlib_callback() -> None:
    """What Python does to Ctrl-C that comes in an import lock's callback, in miniature: a weakref
    callback compiled as importlib's code trips SIGINT and returns; Python ignores exceptions raised
    in weakref callbacks."""
    import _thread
    import weakref

    ns: dict[str, Any] = {}
    exec(compile("def cb(ref):\n    trip()\n    n = 0\n    for i in range(20000):\n        n += i\n",
                 "<frozen importlib._bootstrap>", "exec"), {"trip": _thread.interrupt_main}, ns)

    class Lock:
        pass

    lock = Lock()
    ref = weakref.ref(lock, ns["cb"])
    del lock  # the callback runs now; the handler runs inside it
    assert ref() is None


def test_ctrl_c_in_importlibs_callbacks_is_raised_after_them_not_dropped(monkeypatch: Any) -> None:
    """Python drops a KeyboardInterrupt raised in importlib's module-lock callbacks, printing
    "Exception ignored" with a traceback: a `vz insert` then wrote every record after Ctrl-C. vz's
    handlers (the CLI's, the writes' guard) raise it at the next check outside importlib's frames."""
    import pytest

    from vzcli import interrupts, writes

    dropped: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: dropped.append(u.exc_type))
    old = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's: dropped
        _interrupted_in_an_importlib_callback()
        assert dropped == [KeyboardInterrupt]
        dropped.clear()
        for guarded in (False, True):  # the CLI's handler; a write's guard over Python's default
            with contextlib.ExitStack() as stack:
                if guarded:
                    stack.enter_context(writes.interrupt_guard())
                else:
                    signal.signal(signal.SIGINT, interrupts.handler)
                with pytest.raises(KeyboardInterrupt):
                    _interrupted_in_an_importlib_callback()
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:  # raised here, after the callback (polled, not timed)
                        pass
            assert dropped == []
            signal.signal(signal.SIGINT, signal.default_int_handler)
    finally:
        signal.signal(signal.SIGINT, old)
