"""The resident query path: what `vz serve` and a library `LocalBackend` run for each query.

Once a query has found an index fit for it (a resident file with no deleted key, and at most a
few hundred records newer than it, held in memory), an unfiltered query runs without a
transaction or a SQLite read (`Reads._lean_query`, `search.resident_top`): its answer must be
exactly the general path's, and a commit by any connection must be seen by the next query.
Indexes hold 600 vectors (above the size where the planner uses HNSW).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corehelp import SearchCalls

from vzcli import ann, search, snapshot, wal_index
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 16
N = 600


def _lines(items: dict[str, np.ndarray], ns: str | None = None) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist(), **({"namespace": ns} if ns else {}),
                                          **({"metadata": {"n": int(k[1:]), "tag": k}} if k[1:].isdigit() and
                                             int(k[1:]) % 3 else {})}) + "\n"
                              for k, v in items.items()).encode())


def _model(n: int, seed: int, start: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(start, start + n)}


def _built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric: str) -> tuple[Store, dict[str, np.ndarray]]:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    ann._OPEN.clear()
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("p", dimensions=DIMS, metric=metric)
    model = _model(N, 7)
    half = dict(list(model.items())[: N // 2])
    be.insert("p", _lines(half))
    be.insert("p", _lines({k: v for k, v in model.items() if k not in half}, ns="b"))
    return st, model


@pytest.fixture(autouse=True)
def _room_for_a_descriptor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process keeps at most `wal_index.MAX_FILES` descriptors of `-shm` files, never closed;
    the suite's earlier tests may have used them up (then the pragma answers alone, correctly).
    These tests are about the header, so each gets room for its own stores."""
    monkeypatch.setattr(wal_index, "MAX_FILES", len(wal_index._FDS) + 4)


Calls = SearchCalls


def _queries(model: dict[str, np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(11)
    return [model[k] for k in ("v1", "v299", "v300", "v599")] + [rng.standard_normal(DIMS).astype(np.float32)
                                                                 for _ in range(6)]


@pytest.mark.parametrize("dtype", ["f16", "f32"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_the_lean_path_answers_what_the_general_path_does(tmp_path, monkeypatch, metric, dtype) -> None:
    """f16 files score from the float32 copy read from SQLite, f32 files from the file itself."""
    monkeypatch.setenv("VZ_ANN_DTYPE", dtype)
    st, model = _built(tmp_path, monkeypatch, metric)
    lean, one_shot = LocalBackend(st, resident=True), LocalBackend(st, resident=False)
    lean.query("p", vector=model["v5"].tolist(), top_k=3)  # the general path finds the index fit
    calls = Calls(monkeypatch)
    for q in _queries(model):
        for kw in ({"top_k": 5}, {"top_k": 7, "return_values": True}, {"top_k": 1, "filter": {}},
                   {"top_k": 6, "return_metadata": "all", "return_values": True}):
            before = calls.n
            got = lean.query("p", vector=q.tolist(), **kw)  # type: ignore[arg-type]
            assert calls.n == before  # the lean path answered
            assert got == one_shot.query("p", vector=q.tolist(), **kw)  # type: ignore[arg-type]
            assert got == lean.query("p", vector=q.tolist(), exact=True, **kw)  # type: ignore[arg-type]
    # namespaces and values come back as SQLite has them
    top = lean.query("p", vector=model["v450"].tolist(), top_k=1, return_values=True)["matches"][0]
    assert top["id"] == "v450" and top["namespace"] == "b"
    assert top["values"] == model["v450"].astype(np.float64).tolist()
    assert list(top) == ["id", "score", "values", "namespace"]
    top = lean.query("p", vector=model["v451"].tolist(), top_k=1, return_values=True, return_metadata="all")
    assert top["matches"][0]["metadata"] == {"n": 451, "tag": "v451"}
    assert list(top["matches"][0]) == ["id", "score", "values", "metadata", "namespace"]
    assert lean.query("p", vector=model["v450"].tolist(), top_k=1, return_metadata="all")["matches"][0][
        "metadata"] == {}


def test_a_warm_lean_query_asks_sqlite_nothing_but_a_pragma_now_and_then(tmp_path, monkeypatch) -> None:
    """Commits are seen in the catalog's wal-index header; the pragma confirms it every RECHECK
    queries. Without a header to read (a read-only connection), every query asks the pragma."""
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    be.query("p", vector=model["v5"].tolist(), top_k=3)
    conn = st.reader()
    assert conn is not None
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    queries = _queries(model) * 7  # 70
    try:
        for q in queries:
            be.query("p", vector=q.tolist(), top_k=4)
        st.wal_index.refuse(conn)
        for q in queries[:5]:
            be.query("p", vector=q.tolist(), top_k=4)
    finally:
        conn.set_trace_callback(None)
    assert seen == ["PRAGMA data_version"] * (len(queries) // (snapshot.RECHECK + 1) + 5)


def test_a_header_that_misses_a_commit_is_caught_and_never_read_again(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    q = model["v42"].tolist()
    be.query("p", vector=q, top_k=1)
    conn = st.reader()
    frozen = st.wal_index.header(conn)
    assert frozen is not None and len(frozen) == wal_index.HEADER
    monkeypatch.setattr(st.wal_index, "header", lambda c: frozen)  # as if the mapping were stale
    be.query("p", vector=q, top_k=1)
    LocalBackend(Store(st.path), resident=False).delete_by_ids("p", ["v42"])
    answers = [be.query("p", vector=q, top_k=1)["matches"][0]["id"] for _ in range(snapshot.RECHECK + 1)]
    assert answers[-1] != "v42"  # the pragma's check found the commit the header did not show
    monkeypatch.undo()
    assert st.wal_index.header(conn) is None  # refused from then on: every query asks the pragma
    assert be.query("p", vector=q, top_k=1)["matches"][0]["id"] != "v42"


def test_a_commit_by_another_process_is_seen_by_the_next_query(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    q = model["v7"]
    for _ in range(3):
        assert be.query("p", vector=q.tolist(), top_k=1)["matches"][0]["id"] == "v7"
    assert st.wal_index.header(st.reader()) is not None
    line = json.dumps({"id": "twin", "values": q.tolist()})
    code = ("import io, sys; from vzcli.local import LocalBackend; from vzcli.store import Store; "
            f"LocalBackend(Store(sys.argv[1])).upsert('p', io.BytesIO({line!r}.encode()))")
    subprocess.run([sys.executable, "-c", code, str(st.path)], check=True, timeout=120)
    got = be.query("p", vector=q.tolist(), top_k=2)["matches"]
    assert {m["id"] for m in got} == {"v7", "twin"}


def test_read_only_connections_never_read_the_header(tmp_path, monkeypatch) -> None:
    st, _ = _built(tmp_path, monkeypatch, "cosine")
    ro = Store(st.path)
    conn = ro._connect_read_only()  # what a store in a directory one cannot write to gets (mode=ro)
    try:
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == N
        assert ro.wal_index.header(conn) is None
        plain = st.reader()
        assert plain is not None and st.wal_index.header(plain) is not None
    finally:
        conn.close()


def test_commits_of_another_connection_are_seen_by_the_next_query(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    other = LocalBackend(Store(st.path), resident=False)
    q = model["v42"]
    assert be.query("p", vector=q.tolist(), top_k=1)["matches"][0]["id"] == "v42"
    assert be.query("p", vector=q.tolist(), top_k=1)["matches"][0]["id"] == "v42"  # lean now
    other.delete_by_ids("p", ["v42"])  # a key of the file is now dead: the general path checks it
    assert "v42" not in {m["id"] for m in be.query("p", vector=q.tolist(), top_k=5)["matches"]}
    other.upsert("p", _lines({"near": q + np.float32(1e-3)}, ns="n"))  # a delta record, held in memory
    for _ in range(2):
        top = be.query("p", vector=q.tolist(), top_k=2, return_values=True)["matches"][0]
        assert (top["id"], top["namespace"]) == ("near", "n")
        assert top["values"] == (q + np.float32(1e-3)).astype(np.float64).tolist()
    # this backend's own write changes no data_version, only total_changes: seen all the same
    be.delete_by_ids("p", ["near"])
    assert "near" not in {m["id"] for m in be.query("p", vector=q.tolist(), top_k=5)["matches"]}


def test_held_delta_records_are_answered_from_memory_exactly(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "euclidean")
    be = LocalBackend(st, resident=True)
    fresh = _model(40, 9, start=N)
    be.insert("p", _lines(fresh, ns="new"))  # fewer than VZ_MERGE_THRESHOLD: stays a delta
    row = st.reader().execute("SELECT ann_max_key FROM indexes WHERE name = 'p'").fetchone()
    assert st.reader().execute("SELECT count(*) FROM vectors WHERE key > ?", row).fetchone()[0] == 40
    be.query("p", vector=model["v5"].tolist(), top_k=3)
    calls = Calls(monkeypatch)
    for q in [fresh["v601"], fresh["v639"], *_queries(model)]:
        before = calls.n
        got = be.query("p", vector=q.tolist(), top_k=6, return_values=True)
        assert calls.n == before  # the lean path answered
        assert got == be.query("p", vector=q.tolist(), top_k=6, return_values=True, exact=True)
    top = be.query("p", vector=fresh["v620"].tolist(), top_k=1)["matches"][0]
    assert (top["id"], top["namespace"], top["score"]) == ("v620", "new", 0.0)


def test_lookup_gives_positions_only_for_keys_the_file_answers_for(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    be.query("p", vector=model["v5"].tolist(), top_k=3)
    (opened,) = [o for o in ann._OPEN.values() if o.fv is not None and o.fv.path.parent == st.index_dir("p")]
    fv = opened.fv
    keys = np.asarray(fv.keys[[0, 7, len(fv.keys) - 1]], dtype=np.int64)
    pos = fv.lookup(keys)
    assert pos is not None and list(fv.keys[pos]) == list(keys)
    for bad in (int(fv.keys[-1]) + 1, int(fv.keys[0]) - 1, -5, 2 ** 40):
        assert fv.lookup(np.asarray([int(keys[0]), bad], dtype=np.int64)) is None
    fv._usable = fv._usable.copy()
    fv._usable[pos[1]] = -1  # a key whose record is gone (no float32 copy, no id)
    assert fv.lookup(keys) is None and fv.lookup(keys[[0, 2]]) is not None


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_a_score_does_not_depend_on_the_rows_scored_beside_it(metric) -> None:
    """HNSW answers rescore a few candidates, exact search scores thousands at once: a row's
    score must be bit for bit the same either way (one BLAS dot product per row)."""
    rng = np.random.default_rng(5)
    for dims in (3, 16, 100, 768):
        mat = (rng.standard_normal((257, dims)) * rng.uniform(0.01, 100, (257, 1))).astype(np.float32)
        q = rng.standard_normal(dims).astype(np.float32)
        whole = search.distances(metric, q, mat)
        for lo, hi in ((0, 1), (5, 6), (3, 40), (100, 257), (1, 256)):
            assert np.array_equal(search.distances(metric, q, mat[lo:hi]), whole[lo:hi])
        picked = rng.permutation(257)[:20]
        assert np.array_equal(search.distances(metric, q, mat[picked]), whole[picked])
        if metric == "cosine":  # with the norms a resident file computes once (`FileVectors.norms`)
            ahead = search.row_norms(mat.astype(np.float64))
            assert np.array_equal(search.distances(metric, q, mat[picked], ahead[picked]), whole[picked])


def test_metadata_of_a_key_deleted_after_the_check_sends_the_query_down_the_general_path(tmp_path,
                                                                                        monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    be = LocalBackend(st, resident=True)
    q = model["v43"].tolist()
    assert be.query("p", vector=q, top_k=1, return_metadata="all")["matches"][0]["metadata"] == {"n": 43, "tag": "v43"}
    frozen = st.wal_index.header(st.reader())
    monkeypatch.setattr(st.wal_index, "header", lambda c: frozen)  # the snapshot looks current ...
    LocalBackend(Store(st.path), resident=False).delete_by_ids("p", ["v43"])  # ... but v43 is gone
    calls = Calls(monkeypatch)
    got = be.query("p", vector=q, top_k=2, return_metadata="all")["matches"]
    assert calls.n == 1 and "v43" not in {m["id"] for m in got}


def test_reading_the_header_never_drops_sqlites_locks(tmp_path, monkeypatch) -> None:
    """Closing any descriptor of the -shm file would drop the process's POSIX locks on it,
    SQLite's DMS lock included; another process could then re-initialise the wal-index under
    this one's connections (which die of SIGBUS). While the header is read, another process must
    still find the DMS byte (offset 128 in SQLite's unix VFS) locked."""
    st, model = _built(tmp_path, monkeypatch, "cosine")
    shm = st.path / "catalog.sqlite3-shm"
    be = LocalBackend(st, resident=True)
    for vid in ("v1", "v2", "v3"):
        be.query("p", vector=model[vid].tolist(), top_k=2)
    other = LocalBackend(Store(st.path), resident=True)  # a second store object: its own connection
    other.query("p", vector=model["v4"].tolist(), top_k=2)
    other.store.close()  # its connection closes; this process's other connections keep theirs
    assert st.wal_index.header(st.reader()) is not None
    be.query("p", vector=model["v5"].tolist(), top_k=2)
    code = ("import fcntl, sys\n"
            "f = open(sys.argv[1], 'r+b')\n"
            "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)\nexcept OSError:\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", code, str(shm)], timeout=60)
    assert r.returncode == 3  # still locked by this process's SQLite


def test_past_max_files_the_pragma_answers_alone(tmp_path, monkeypatch) -> None:
    st, model = _built(tmp_path, monkeypatch, "cosine")
    monkeypatch.setattr(wal_index, "MAX_FILES", len(wal_index._FDS))  # no room left
    be = LocalBackend(st, resident=True)
    q = model["v8"].tolist()
    assert be.query("p", vector=q, top_k=1)["matches"][0]["id"] == "v8"
    assert st.wal_index.header(st.reader()) is None
    LocalBackend(Store(st.path), resident=False).delete_by_ids("p", ["v8"])
    assert be.query("p", vector=q, top_k=1)["matches"][0]["id"] != "v8"


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_an_index_without_a_file_is_answered_from_the_rows_held_in_memory(tmp_path, monkeypatch, metric) -> None:
    """A resident backend holds every record of an index that has no HNSW file (until the next
    commit) and scores unfiltered queries from them: the same answers as a scan of SQLite, ties
    broken by key; a filter or a namespace still reads SQLite; a commit is seen at once."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    st = Store(tmp_path / "store")
    be, one_shot = LocalBackend(st), LocalBackend(Store(st.path), resident=False)
    be.create_index("p", dimensions=DIMS, metric=metric)
    be.create_metadata_index("p", "n", "number")
    model = _model(600, 9)
    model["dup1"] = model["dup0"] = model["v3"]  # exact ties: broken by key (insertion order)
    be.insert("p", _lines(model))
    assert st.conn().execute("SELECT ann_file, ann_max_key FROM indexes").fetchone() == (None, 0)
    scans: list[int] = []
    real_exact = search._exact
    monkeypatch.setattr(search, "_exact", lambda *a, **kw: scans.append(1) or real_exact(*a, **kw))
    reader = LocalBackend(Store(st.path))
    reader.query("p", vector=model["v1"].tolist())  # the general path: holds the records
    calls = Calls(monkeypatch)
    for q in [*_queries(model), model["v3"]]:
        for kw in ({"top_k": 5}, {"top_k": 7, "return_values": True, "return_metadata": "all"}):
            before, general = len(scans), calls.n
            got = reader.query("p", vector=q.tolist(), **kw)  # type: ignore[arg-type]
            assert len(scans) == before and calls.n == general  # the lean path, no scan of SQLite
            assert got == one_shot.query("p", vector=q.tolist(), **kw)  # type: ignore[arg-type]
            assert len(scans) == before + 1  # (the one-shot backend scans)
    assert [m["id"] for m in reader.query("p", vector=model["v3"].tolist(), top_k=3)["matches"]] == ["v3", "dup1", "dup0"]
    # a filter or a namespace reads SQLite
    for kw in ({"namespace": "b"}, {"filter": {"n": {"$lt": 100}}}):
        before = len(scans)
        got = reader.query("p", vector=model["v5"].tolist(), top_k=3, **kw)  # type: ignore[arg-type]
        assert len(scans) == before + 1 and got == one_shot.query("p", vector=model["v5"].tolist(), top_k=3, **kw)  # type: ignore[arg-type]
    # another connection's commit: the next query holds the new record
    new = _model(1, 99, start=1000)
    LocalBackend(Store(st.path)).insert("p", _lines(new))
    before = len(scans)
    top = reader.query("p", vector=new["v1000"].tolist(), top_k=50)
    assert len(scans) == before and "v1000" in [m["id"] for m in top["matches"]]
    assert top == one_shot.query("p", vector=new["v1000"].tolist(), top_k=50)


def test_an_index_past_the_held_budget_is_scanned_from_sqlite(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    monkeypatch.setattr(snapshot.Snapshot, "DELTA_FLOATS", DIMS * 599)  # one record short of the index
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("p", dimensions=DIMS, metric="cosine")
    model = _model(600, 9)
    be.insert("p", _lines(model))
    scans: list[int] = []
    real_exact = search._exact
    monkeypatch.setattr(search, "_exact", lambda *a, **kw: scans.append(1) or real_exact(*a, **kw))
    got = [be.query("p", vector=q.tolist(), top_k=5) for q in _queries(model)]
    assert len(scans) == len(got)
    assert got == [LocalBackend(Store(st.path), resident=False).query("p", vector=q.tolist(), top_k=5)
                   for q in _queries(model)]


def test_records_held_for_all_indexes_together_stay_within_one_budget(tmp_path, monkeypatch) -> None:
    """However many indexes a reader queries between two commits, it holds at most HELD_FLOATS
    floats of their records; the indexes past it are scanned from SQLite, with the same answers."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    monkeypatch.setattr(snapshot.Snapshot, "HELD_FLOATS", DIMS * 250)  # room for 2 indexes of 100 records
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    models = {}
    for name in ("a", "b", "c"):
        be.create_index(name, dimensions=DIMS, metric="euclidean")
        models[name] = _model(100, ord(name))
        be.insert(name, _lines(models[name]))
    reader, one_shot = LocalBackend(Store(st.path)), LocalBackend(Store(st.path), resident=False)
    scans: list[int] = []
    real_exact = search._exact
    monkeypatch.setattr(search, "_exact", lambda *a, **kw: scans.append(1) or real_exact(*a, **kw))
    for _ in range(2):
        for name in ("a", "b", "c"):
            before = len(scans)
            q = models[name]["v7"].tolist()
            got = reader.query(name, vector=q, top_k=3)
            assert len(scans) - before == (1 if name == "c" else 0)  # "c" is past the budget: scanned
            assert got == one_shot.query(name, vector=q, top_k=3) and got["matches"][0]["id"] == "v7"
    snap = snapshot._TLS.snaps[id(reader.store.conn())]
    assert snap.held == DIMS * 200
