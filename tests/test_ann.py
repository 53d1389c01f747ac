"""The HNSW file and its delta: merges, tombstones, rebuilds, optimize, and a lost or broken file.

Every check compares the default query path (HNSW + exact delta) with `exact=True` and with a numpy
reference over a Python model of what the index should hold. HNSW may miss a neighbour now and then
(usearch's graph is randomised and can leave a node without in-links), so the HNSW path must reach
90% recall, score exactly, and never return a deleted or replaced record; the exact path must match.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from corehelp import assert_ann_close, create, rec, write

from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 8


@pytest.fixture
def always_hnsw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search the HNSW file even below the size where the planner answers exactly, so that these
    small indexes exercise the HNSW path (graphs this small are built with one thread: no race)."""
    from vzcli import search

    monkeypatch.setattr(search, "hnsw_pays", lambda k, live: True)


def _ndjson(items: dict[str, np.ndarray]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist()}) + "\n" for k, v in items.items()).encode())


def _row(store: Store, name: str) -> dict:
    conn = store.conn()
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    r = cur.fetchone()
    return dict(zip([c[0] for c in cur.description], r, strict=True))


def _max_key(store: Store) -> int:
    return store.conn().execute("SELECT coalesce(max(key), 0) FROM vectors").fetchone()[0]


def _ref(metric: str, model: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[str]:
    ids = sorted(model)
    m = np.stack([model[i] for i in ids]).astype(np.float64)
    qv = q.astype(np.float64)
    if metric == "cosine":
        d = -(m @ qv) / (np.linalg.norm(m, axis=1) * np.linalg.norm(qv))
    elif metric == "euclidean":
        d = np.sqrt(((m - qv) ** 2).sum(axis=1))
    else:
        d = -(m @ qv)
    return [ids[i] for i in np.argsort(d, kind="stable")[:k]]


class Harness:
    """A LocalBackend plus the model of its contents, checked after every step."""

    def __init__(self, root, metric: str, seed: int = 0) -> None:
        self.store = Store(root)
        self.b = LocalBackend(self.store)
        self.b.create_index("ann", dimensions=DIMS, metric=metric)
        self.metric = metric
        self.model: dict[str, np.ndarray] = {}
        self.gone: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(seed)
        self.n = 0
        self.paths: set[str] = set()

    def vec(self) -> np.ndarray:
        return self.rng.normal(size=DIMS).astype(np.float32)

    def insert(self, n: int) -> None:
        items = {}
        for _ in range(n):
            self.n += 1
            items[f"id-{self.n:05d}"] = self.vec()
        self.b.insert("ann", _ndjson(items))
        self.model.update(items)
        for k in items:
            self.gone.pop(k, None)

    def upsert(self, ids: list[str]) -> None:
        items = {i: self.vec() for i in ids}
        self.b.upsert("ann", _ndjson(items))
        for i in ids:
            if i in self.model:
                self.gone[i] = self.model[i]  # the old vector must never be found again
        self.model.update(items)

    def delete(self, ids: list[str]) -> None:
        self.b.delete_by_ids("ann", ids)
        for i in ids:
            self.gone[i] = self.model.pop(i)

    def sample(self, n: int) -> list[str]:
        keys = sorted(self.model)
        return [keys[i] for i in self.rng.choice(len(keys), size=min(n, len(keys)), replace=False)]

    def check(self, queries: int = 4, k: int = 10) -> None:
        from vzcli import search

        info = self.b.info("ann")
        assert info["vectorCount"] == len(self.model)
        qs = [self.vec() for _ in range(queries)]
        # the old vectors of replaced and deleted ids: their own ids must not come back
        qs += [v for _, v in zip(range(2), self.gone.values(), strict=False)]
        with self.store.read() as conn:
            row = _row(self.store, "ann")
            _, plan = search.search(conn, row, self.store.index_dir("ann"), qs[0], k, None, None)
        self.paths.add(plan.path)  # which path answered, to prove that every path ran
        hits = total = 0
        for q in qs:
            fast = self.b.query("ann", vector=q.tolist(), top_k=k)["matches"]
            slow = self.b.query("ann", vector=q.tolist(), top_k=k, exact=True)["matches"]
            assert [m["id"] for m in slow] == _ref(self.metric, self.model, q, k)
            assert len(fast) == len(slow)
            assert not ({m["id"] for m in fast} - set(self.model)), "a deleted or replaced record came back"
            if plan.path == "exact":
                assert fast == slow
                continue
            # HNSW may miss a neighbour (usearch leaves the odd node unreachable, even in a fresh
            # graph); what it returns is scored exactly and can never beat the exact answer.
            exact_score = {m["id"]: m["score"] for m in self.b.query("ann", vector=q.tolist(), top_k=100,
                                                                    exact=True)["matches"]}
            better = (lambda a, b: a >= b) if self.metric == "cosine" else (lambda a, b: a <= b)
            for i, m in enumerate(fast):
                if m["id"] in exact_score:
                    assert m["score"] == exact_score[m["id"]]
                assert better(slow[i]["score"], m["score"])
            hits += len({m["id"] for m in fast} & {m["id"] for m in slow})
            total += len(slow)
        if total:
            assert hits / total >= 0.9, f"recall {hits / total:.2f}"


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_delta_merge_tombstones_agree_with_exact(tmp_path, monkeypatch, metric, always_hnsw) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "40")
    h = Harness(tmp_path / "s", metric)
    h.insert(150)  # >= threshold: the first write builds the file
    row = _row(h.store, "ann")
    assert row["ann_file"] is not None and row["ann_max_key"] == _max_key(h.store) and row["ann_nodes"] == 150
    h.check()
    h.insert(10)  # below the threshold: stays in the delta
    row = _row(h.store, "ann")
    assert row["ann_max_key"] < _max_key(h.store)
    h.check()
    h.upsert(h.sample(20) + ["new-a", "new-b"])  # replacements: old nodes are dead in the file
    row = _row(h.store, "ann")
    assert row["ann_dead"] > 0
    h.check()
    h.delete(h.sample(25))
    h.check()
    h.insert(45)  # passes the threshold: merge, dead nodes become tombstones
    row = _row(h.store, "ann")
    assert row["ann_max_key"] == _max_key(h.store) and row["ann_tombstones"] > 0 and row["ann_dead"] == 0
    h.check()
    h.delete(h.sample(70))  # churn > 25% and >= 64: the next maintenance rebuilds from SQLite
    row = _row(h.store, "ann")
    assert row["ann_tombstones"] == 0 and row["ann_dead"] == 0 and row["ann_nodes"] == len(h.model)
    h.check()
    h.upsert(h.sample(5))
    h.insert(3)
    h.check()
    assert {"hnsw", "hnsw+exact-delta"} <= h.paths


def test_deleting_everything_then_writing_again(tmp_path, monkeypatch, always_hnsw) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "1")
    h = Harness(tmp_path / "s", "cosine")
    h.insert(80)
    h.delete(sorted(h.model))
    assert h.b.query("ann", vector=h.vec().tolist(), top_k=5) == {"count": 0, "matches": []}
    row = _row(h.store, "ann")
    assert row["vector_count"] == 0
    h.insert(30)
    h.check()


def test_optimize(vz, store, monkeypatch) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    rng = np.random.default_rng(3)
    create(vz, "o", DIMS, "euclidean")
    recs = [rec(f"v{i:03d}", rng.normal(size=DIMS)) for i in range(120)]
    write(vz, "o", recs)
    assert not list((store / "indexes" / "o").glob("ann-*.usearch"))  # all delta so far
    vz("delete-vectors", "o", "--ids", "v000", "v001")
    r = vz("optimize", "o", "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert {k: out[k] for k in ("index", "action", "vectorCount", "annNodes", "efSearch", "annDtype")} == {
        "index": "o", "action": "rebuild", "vectorCount": 118, "annNodes": 118, "efSearch": 64, "annDtype": "f16"}
    assert isinstance(out["seconds"], float)
    files = list((store / "indexes" / "o").glob("ann-*.usearch"))
    assert len(files) == 1
    # 118 vectors are below the size where HNSW pays: the answer is exact although a file exists
    for _ in range(5):
        q = [repr(float(x)) for x in rng.normal(size=DIMS)]
        fast = vz("query", "o", "--vector", *q, "--top-k", "20", "--json").json()
        slow = vz("query", "o", "--vector", *q, "--top-k", "20", "--exact", "--json").json()
        assert fast["count"] == 20 and fast == slow
    # optimize again: a fresh file replaces the old one, which is swept
    assert vz("optimize", "o", "--json").exit_code == 0
    files2 = list((store / "indexes" / "o").glob("ann-*.usearch"))
    assert len(files2) == 1 and files2 != files
    r = vz("optimize", "o")
    assert r.exit_code == 0 and "Optimized index 'o': 118 vectors" in r.stdout
    assert vz("optimize", "nope").exit_code == 1


def test_optimize_empty_index(vz) -> None:
    create(vz, "e", 3)
    r = vz("optimize", "e", "--json")
    assert r.exit_code == 0 and r.json()["vectorCount"] == 0 and r.json()["annNodes"] == 0


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_lost_or_broken_file_falls_back_and_is_rebuilt(tmp_path, monkeypatch, damage, always_hnsw) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "20")
    h = Harness(tmp_path / "s", "cosine")
    h.insert(200)
    h.delete(h.sample(10))
    row = _row(h.store, "ann")
    path = h.store.index_dir("ann") / row["ann_file"]
    assert path.exists()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        data = path.read_bytes()
        path.unlink()  # a new inode, as a copy or restore would make
        path.write_bytes(data[: len(data) * 2 // 3])
    else:
        path.unlink()
        path.write_bytes(b"\0" * 4096)
    # queries stay correct: the file is not mapped, everything is searched exactly
    h.check()
    assert h.paths == {"exact"}
    h.insert(2)  # the next write notices and rebuilds from SQLite
    row2 = _row(h.store, "ann")
    assert row2["ann_file"] is not None and row2["ann_file"] != row["ann_file"]
    assert (h.store.index_dir("ann") / row2["ann_file"]).exists()
    assert row2["ann_nodes"] == len(h.model) and row2["ann_dead"] == 0
    h.paths.clear()
    h.check()
    assert h.paths == {"hnsw"}


def test_file_of_another_index_is_not_used(tmp_path, monkeypatch, always_hnsw) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "10")
    a = Harness(tmp_path / "s", "cosine")
    a.insert(50)
    store = a.store
    b = LocalBackend(Store(tmp_path / "s"))
    b.create_index("other", dimensions=DIMS + 1, metric="euclidean")
    rng = np.random.default_rng(5)
    b.insert("other", io.BytesIO("".join(
        json.dumps({"id": f"o{i}", "values": rng.normal(size=DIMS + 1).tolist()}) + "\n" for i in range(30)).encode()))
    mine = store.index_dir("ann") / _row(store, "ann")["ann_file"]
    theirs = store.index_dir("other") / _row(store, "other")["ann_file"]
    mine.unlink()
    mine.write_bytes(theirs.read_bytes())
    a.check()


def test_catalog_agrees_with_files_after_cli_writes(vz, store, monkeypatch, always_hnsw) -> None:
    """Through the CLI too: with a threshold of 1 every write merges, and results agree with --exact."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "1")
    rng = np.random.default_rng(9)
    create(vz, "c", DIMS, "dot-product")
    write(vz, "c", [rec(f"v{i:03d}", rng.normal(size=DIMS)) for i in range(60)])
    write(vz, "c", [rec(f"v{i:03d}", rng.normal(size=DIMS)) for i in range(0, 60, 3)], upsert=True)
    vz("delete-vectors", "c", "--ids", *[f"v{i:03d}" for i in range(1, 60, 5)])
    with sqlite3.connect(store / "catalog.sqlite3") as c:
        ann_file, max_key, vc = c.execute("SELECT ann_file, ann_max_key, vector_count FROM indexes").fetchone()
        assert max_key == c.execute("SELECT max(key) FROM vectors").fetchone()[0]
    assert [p.name for p in (store / "indexes" / "c").glob("ann-*.usearch")] == [ann_file]
    for _ in range(5):
        q = [repr(float(x)) for x in rng.normal(size=DIMS)]
        fast = vz("query", "c", "--vector", *q, "--top-k", "15", "--json").json()
        slow = vz("query", "c", "--vector", *q, "--top-k", "15", "--exact", "--json").json()
        assert_ann_close(fast["matches"], slow["matches"], "dot-product", 0.85)
    assert vc == 60 - 12


# --- readers while another process merges and sweeps files ---------------------------------------------

WRITER = r"""
set -u
line() {  # a record with fresh random values, so that every upsert really replaces
  printf '{"id":"%s","values":[%d,%d,%d,%d,%d,%d,%d,%d]}\n' "$1" $((RANDOM-16384)) $((RANDOM-16384)) \
    $((RANDOM-16384)) $((RANDOM-16384)) $((RANDOM-16384)) $((RANDOM-16384)) $((RANDOM-16384)) $((RANDOM-16384))
}
i=0
while [ ! -e "$STOP" ]; do
  i=$((i+1))
  { for j in 0 1 2 3 4 5; do line "w$((i % 2))-$j"; done; } | "$VZ" upsert ann --file - --json >/dev/null || exit 1
  "$VZ" delete-vectors ann --ids "w$(((i + 1) % 2))-0" --json >/dev/null || exit 1
done
"""


def test_queries_stay_right_while_another_process_merges(tmp_path, monkeypatch, always_hnsw) -> None:
    import os
    import subprocess
    import sys
    import time

    root = tmp_path / "s"
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "3")
    h = Harness(root, "cosine", seed=11)
    h.insert(300)  # stable records the writer never touches; the first file
    stop = tmp_path / "stop"
    env = {**os.environ, "VZ_STORE": str(root), "VZ_MERGE_THRESHOLD": "3", "STOP": str(stop),
           "VZ": str(Path(sys.executable).with_name("vz"))}
    proc = subprocess.Popen(["bash", "-c", WRITER], env=env, stderr=subprocess.PIPE, text=True)
    stable = sorted(h.model)
    seen_files: set[str] = set()
    hits = total = 0
    try:
        deadline = time.monotonic() + 90
        while len(seen_files) < 3:  # until the writer has published (and swept) two more files
            assert time.monotonic() < deadline, "the writer made no progress"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            reader = LocalBackend(Store(root))  # a fresh process-like reader each time
            row = _row(reader.store, "ann")
            if row["ann_file"]:
                seen_files.add(row["ann_file"])
            for vid in (stable[total % 300], stable[(total * 7 + 3) % 300]):
                res = reader.query("ann", vector=h.model[vid].tolist(), top_k=3)
                assert res["count"] == 3
                total += 1
                hits += res["matches"][0]["id"] == vid
                if res["matches"][0]["id"] == vid:
                    assert res["matches"][0]["score"] == pytest.approx(1.0)
            reader.store.close()
    finally:
        stop.touch()
        rc = proc.wait(timeout=120)
    assert rc == 0, proc.stderr.read() if proc.stderr else rc
    assert hits / total >= 0.95, (hits, total)
    # the store is consistent afterwards: one file, every stable record there, exact == numpy
    final = LocalBackend(Store(root))
    assert {r["id"] for r in final.get_by_ids("ann", stable)} == set(stable)
    files = [p.name for p in (root / "indexes" / "ann").glob("ann-*.usearch")]
    assert files == [_row(final.store, "ann")["ann_file"]]


def test_ef_search_follows_the_graph_size() -> None:
    from vzcli.ann import ef_search_for

    assert [ef_search_for(n) for n in (0, 1000, 100_000, 100_001, 1_000_000, 5_000_000, 20_000_000, 10**9)] == \
        [64, 64, 64, 72, 128, 512, 1024, 1024]


def test_ef_construction_follows_the_graph_size() -> None:
    from vzcli.ann import ef_construction_for

    assert [ef_construction_for(n, 64) for n in (0, 1000, 1_000_000, 1_000_001, 1_050_000, 1_200_000, 2_000_000,
                                                 5_000_000, 20_000_000, 10**9)] == \
        [64, 64, 64, 64, 64, 72, 88, 128, 232, 256]  # no step just past 1M (a builder's estimate of 1M)
    assert ef_construction_for(1_000_001, 98) == 98  # rounding never goes below the index's setting
    assert ef_construction_for(5_000_000, 300) == 300  # never below the index's own setting


def test_a_rebuild_adds_every_node_at_the_ef_construction_of_its_final_size(tmp_path, monkeypatch) -> None:
    """Nodes are added at the ef_construction of the size the graph will reach (here past 200
    nodes instead of 1M), from the first block on; `vz optimize --json` reports it."""
    from vzcli import ann, annbase

    monkeypatch.setattr(annbase, "EFC_BASE_NODES", 200)
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    seen: list[tuple[int, int]] = []
    real_add = ann._new_index

    def spy(row):  # record (graph size after the block, expansion_add) of every block added
        idx = real_add(row)
        add = idx.add

        def recording_add(keys, vecs, **kw):
            seen.append((len(idx) + len(keys), idx.expansion_add))
            return add(keys, vecs, **kw)

        idx.add = recording_add
        return idx

    monkeypatch.setattr(ann, "_new_index", spy)
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("g", dimensions=DIMS, metric="cosine")
    rng = np.random.default_rng(2)
    lines = "".join(json.dumps({"id": f"v{i}", "values": rng.standard_normal(DIMS).tolist()}) + "\n" for i in range(900))
    be.insert("g", io.BytesIO(lines.encode()))
    out = be.optimize("g")
    assert out["annNodes"] == 900 and out["efConstruction"] == ann.ef_construction_for(900, 64) == 120
    assert len(seen) == 1 and seen[0] == (900, 120)  # one block (CHUNK rows), at 900's ef_construction
    seen.clear()
    monkeypatch.setattr(ann, "CHUNK", 100)
    assert be.optimize("g")["action"] == "rebuild"
    assert [s for s, _ in seen] == list(range(100, 1000, 100)) and {e for _, e in seen} == {120}
