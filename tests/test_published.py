"""Sealed ANN files (`vzcli.published`): opened in O(1), never trusted once changed.

A published file is verified against SQLite and sealed before the catalog points at it. These
tests alter, replace, truncate and unseal the file, crash the publisher between the file and its
seal, and mock a usearch version whose layout vz does not know: every query must still answer
exactly what `exact=True` answers (same ids, same scores), and the next write must restore a
sealed file. Indexes here hold 600 vectors (above the size where the planner uses HNSW) and are
built with one thread (deterministic graphs).
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vzcli import ann, published, usearch_file
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 16
N = 600


def _lines(items: dict[str, np.ndarray]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist(), "metadata": {"n": int(k[1:])}}) + "\n"
                              for k, v in items.items()).encode())


def _row(st: Store, name: str = "p") -> dict:
    cur = st.conn().execute("SELECT * FROM indexes WHERE name = ?", (name,))
    return dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))


def _file(st: Store) -> Path:
    return st.index_dir("p") / _row(st)["ann_file"]


def _make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> tuple[Store, dict[str, np.ndarray]]:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    ann._OPEN.clear()
    rng = np.random.default_rng(seed)
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("p", dimensions=DIMS, metric="cosine")
    be.create_metadata_index("p", "n", "number")
    model = {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(N)}
    be.insert("p", _lines(model))
    assert _row(st)["ann_file"] is not None
    return st, model


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, dict[str, np.ndarray]]:
    return _make(tmp_path, monkeypatch, 3)


def _assert_exact(be: LocalBackend, model: dict[str, np.ndarray], ids: list[str], **kw: object) -> None:
    """Every query equals the exact answer: the same ids and the same scores."""
    for vid in ids:
        q = model[vid].tolist()
        got = be.query("p", vector=q, top_k=5, return_values=True, **kw)  # type: ignore[arg-type]
        want = be.query("p", vector=q, top_k=5, return_values=True, exact=True, **kw)  # type: ignore[arg-type]
        assert got == want
        assert got["matches"][0]["id"] == vid


def test_a_sealed_file_opens_without_reading_its_graph(built, monkeypatch) -> None:
    st, model = built
    s = published.read_seal(_file(st), _file(st).stat(), _row(st))
    assert isinstance(s, published.Seal) and s.head["vectors"] and s.head["n"] == N
    assert list(s.keys) == sorted(s.keys)

    def no_parse(*a: object, **kw: object) -> None:
        raise AssertionError("a query parsed the file")

    monkeypatch.setattr(usearch_file, "parse", no_parse)
    monkeypatch.setattr(usearch_file, "size_ok", no_parse)
    for resident in (False, True):
        ann._OPEN.clear()
        _assert_exact(LocalBackend(st, resident=resident), model, ["v1", "v77"])
        _assert_exact(LocalBackend(st, resident=resident), model, ["v5"], filter={"n": {"$lt": 40}})


def _overwrite_row(path: Path, key_of_row: int, vec: np.ndarray, st: Store, *, keep_mtime: bool) -> None:
    """Overwrite, in place, the matrix row of key `key_of_row` with `vec` (same size)."""
    s = published.read_seal(path, path.stat(), _row(st))
    assert isinstance(s, published.Seal)
    slot = int(s.slots[int(np.searchsorted(s.keys, key_of_row))])
    before = path.stat()
    with open(path, "r+b") as f:
        f.seek(int(s.head["matrix_offset"]) + slot * DIMS * 4)
        f.write(vec.astype(np.float32).tobytes())
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_mtime_ns == before.st_mtime_ns


def _key(st: Store, vid: str) -> int:
    return st.conn().execute("SELECT key FROM vectors WHERE id = ?", (vid,)).fetchone()[0]


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_row_altered_in_place_is_never_scored(built, keep_mtime) -> None:
    """One row of another record is overwritten with the query's own vector: scoring from the file
    would return that record with score 1.0. With the mtime put back, only the resident path's
    hash of the matrix can tell; with it changed, the identity check does."""
    st, model = built
    target = model["v10"]
    _overwrite_row(_file(st), _key(st, "v20"), target, st, keep_mtime=keep_mtime)
    ann._OPEN.clear()
    backends = [LocalBackend(st, resident=True)] + ([] if keep_mtime else [LocalBackend(st, resident=False)])
    for be in backends:
        res = be.query("p", vector=target.tolist(), top_k=3)
        assert res == be.query("p", vector=target.tolist(), top_k=3, exact=True)
        assert res["matches"][0]["id"] == "v10"
        _assert_exact(be, model, ["v3", "v20"])
        _assert_exact(be, model, ["v7"], filter={"n": {"$lt": 40}})


def test_a_resident_copy_made_before_the_file_is_altered_stays_right(built) -> None:
    st, model = built
    be = LocalBackend(st, resident=True)
    _assert_exact(be, model, ["v1"])  # the matrix is now copied and verified
    _overwrite_row(_file(st), _key(st, "v20"), model["v10"], st, keep_mtime=True)
    # the graph usearch searches is the altered file, so it may miss v20 (recall), but every
    # score comes from the verified copy: never v20 scored 1.0 against v10's vector
    from vzcli.search import distances, score_of

    for vid in ("v10", "v20"):
        q = model[vid]
        res = be.query("p", vector=q.tolist(), top_k=5)["matches"]
        if vid == "v10":
            assert res[0]["id"] == "v10"
        for m in res:
            want = score_of("cosine", float(distances("cosine", q, model[m["id"]][None, :])[0]))
            assert m["score"] == want


@pytest.mark.parametrize("damage", ["replace", "truncate", "unseal", "seal-garbage"])
def test_a_replaced_truncated_or_unsealed_file_answers_right_and_is_resealed(built, damage) -> None:
    st, model = built
    path, row = _file(st), _row(st)
    seal = published.seal_path(path)
    data = path.read_bytes()
    if damage == "replace":  # a byte-identical copy: a new inode, so it must be verified again
        path.unlink()
        path.write_bytes(data)
    elif damage == "truncate":
        path.unlink()
        path.write_bytes(data[: len(data) - 100])
    elif damage == "unseal":
        seal.unlink()
    else:
        seal.write_bytes(b"VZSEAL1\n{not json")
    ann._OPEN.clear()
    for resident in (False, True):
        _assert_exact(LocalBackend(st, resident=resident), model, ["v2", "v300"])
        _assert_exact(LocalBackend(st, resident=resident), model, ["v9"], filter={"n": {"$lt": 40}})
    assert ann.needs_work(st.conn(), row, st) == "seal"
    with st.write() as c:  # as an older vz left it: ef_search not yet chosen by size
        c.execute("UPDATE indexes SET expansion_search = 24")
    LocalBackend(st).upsert("p", _lines({"v1": model["v1"]}))  # unchanged record: no new file due
    after = _row(st)
    assert after["expansion_search"] == 64
    if damage == "truncate":
        assert after["ann_file"] != row["ann_file"]  # could not be verified: rebuilt from SQLite
    else:
        assert after["ann_file"] == row["ann_file"]  # verified against SQLite and sealed again
    assert ann.file_state(_file(st), after) == "sealed"
    ann._OPEN.clear()
    _assert_exact(LocalBackend(st, resident=True), model, ["v2"])


class _Crash(BaseException):
    pass


@pytest.mark.parametrize("at", ["before-seal", "after-seal"])
def test_a_crash_between_the_file_and_the_catalog_leaves_a_store_that_answers_right(built, monkeypatch, at) -> None:
    st, model = built
    before = _row(st)
    real = published._write

    def crash(*a: object, **kw: object) -> None:
        if at == "after-seal":
            real(*a, **kw)  # type: ignore[arg-type]
        raise _Crash

    monkeypatch.setattr(published, "_write", crash)
    more = {f"v{i}": np.random.default_rng(i).standard_normal(DIMS).astype(np.float32) for i in range(N, N + 150)}
    with pytest.raises(_Crash):
        LocalBackend(st).insert("p", _lines(more))  # committed; the merge dies while publishing
    monkeypatch.setattr(published, "_write", real)
    model |= more
    assert _row(st)["ann_file"] == before["ann_file"]  # the catalog never saw the new file
    ann._OPEN.clear()
    for resident in (False, True):
        _assert_exact(LocalBackend(st, resident=resident), model, ["v4", f"v{N + 3}"])
    LocalBackend(st).upsert("p", _lines({"v1": model["v1"]}))  # the next write merges and sweeps
    after = _row(st)
    assert after["ann_file"] != before["ann_file"] and ann.file_state(_file(st), after) == "sealed"
    names = sorted(p.name for p in st.index_dir("p").iterdir())
    assert names == sorted([after["ann_file"], "seal-" + after["ann_file"], "merge.lock"])
    _assert_exact(LocalBackend(st, resident=True), model, ["v4", f"v{N + 3}"])


def test_a_usearch_version_of_unknown_layout_uses_no_file_vectors(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(usearch_file, "KNOWN_VERSIONS", frozenset({"0.0.1"}))
    st, model = _make(tmp_path, monkeypatch, 8)
    s = published.read_seal(_file(st), _file(st).stat(), _row(st))
    assert isinstance(s, published.Seal) and not s.head["vectors"]  # identity only
    opened = ann.open_file(_file(st), _row(st))
    assert opened is not None and opened.fv is None  # usearch searches; SQLite scores
    for resident in (False, True):
        _assert_exact(LocalBackend(st, resident=resident), model, ["v1", "v2", "v50"])
        _assert_exact(LocalBackend(st, resident=resident), model, ["v6"], filter={"n": {"$lt": 40}})


def test_the_installed_usearch_writes_the_layout_usearch_file_knows(tmp_path) -> None:
    """The layout check itself: keys, slots and matrix read through `usearch_file` are exactly
    what was added, tombstones included, for the installed usearch."""
    from usearch.index import Index

    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((300, 12)).astype(np.float32)
    idx = Index(ndim=12, metric="l2sq", dtype="f32", connectivity=16)
    idx.add(np.arange(1, 301, dtype=np.uint64), vecs, threads=1)
    idx.remove(np.arange(1, 301, 7, dtype=np.uint64))
    path = tmp_path / "f.usearch"
    idx.save(str(path))
    meta = usearch_file.header(path)
    assert meta is not None
    meta_version = str(meta["version"])
    layout = usearch_file.layout_of(meta)
    assert layout is not None, f"usearch {meta_version} is not in usearch_file.KNOWN_VERSIONS"
    parsed = usearch_file.parse(path, layout)
    assert parsed is not None and parsed.rows == 300 and parsed.bytes_per_vector == 48
    live = parsed.slot_keys != -1
    assert sorted(parsed.slot_keys[live].tolist()) == [k for k in range(1, 301) if (k - 1) % 7]
    mat = np.frombuffer(path.read_bytes(), dtype=np.float32, count=300 * 12, offset=parsed.matrix_offset)
    mat = mat.reshape(300, 12)
    for slot in np.flatnonzero(live):
        assert mat[slot].tobytes() == vecs[parsed.slot_keys[slot] - 1].tobytes()
    path.write_bytes(path.read_bytes()[:-10])
    assert usearch_file.parse(path, layout) is None and not usearch_file.size_ok(path, layout)


def test_small_graphs_are_built_with_one_thread(tmp_path, monkeypatch) -> None:
    from usearch.index import Index

    seen: list[int] = []
    real = Index.add

    def spy(self: Index, *a: object, **kw: object) -> object:
        seen.append(int(kw.get("threads", 0)))  # type: ignore[call-overload]
        return real(self, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Index, "add", spy)
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "10")
    be = LocalBackend(Store(tmp_path / "s"))
    be.create_index("p", dimensions=DIMS, metric="cosine")
    rng = np.random.default_rng(0)
    be.insert("p", _lines({f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(50)}))
    be.optimize("p")
    assert seen and set(seen) == {1}


def test_parallel_queries_equal_serial_ones(built) -> None:
    """One resident backend answering on several threads at once (as `vz serve` does)."""
    st, model = built
    be = LocalBackend(st, resident=True)
    ann._OPEN.clear()
    rng = np.random.default_rng(4)
    qs = [rng.standard_normal(DIMS).tolist() for _ in range(24)]
    kinds = [{}, {"filter": {"n": {"$lt": 40}}}, {"return_metadata": "all"}, {"filter": {"n": {"$gte": 100}}}]
    serial_be = LocalBackend(Store(st.path), resident=False)
    want = [[serial_be.query("p", vector=q, top_k=7, **kw) for kw in kinds] for q in qs]  # type: ignore[arg-type]
    got: list[list[dict] | None] = [None] * len(qs)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(part: int) -> None:
        try:
            start.wait()
            for i in range(part, len(qs), 4):
                got[i] = [be.query("p", vector=qs[i], top_k=7, **kw) for kw in kinds]  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert got == want
    assert len(st._readers) >= 3  # the worker threads read through their own connections


def test_sqlite_connections_are_per_thread(tmp_path) -> None:
    st = Store(tmp_path / "s")
    LocalBackend(st).create_index("p", dimensions=3, metric="cosine")
    seen: list[sqlite3.Connection | None] = []

    def grab() -> None:
        with st.read() as c:
            seen.append(c)

    grab()
    t = threading.Thread(target=grab)
    t.start()
    t.join()
    assert seen[0] is st.conn() and seen[1] is not None and seen[1] is not seen[0]
    # a write on another thread while this one holds a read transaction (vz serve's background
    # merge while a query runs): each has its own connection, so neither disturbs the other
    errors: list[BaseException] = []

    def write() -> None:
        try:
            LocalBackend(st).insert("p", io.BytesIO(b'{"id": "a", "values": [1, 2, 3]}\n'))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    with st.read() as c:
        assert c is not None
        before = c.execute("SELECT count(*) FROM vectors").fetchone()[0]
        t = threading.Thread(target=write)
        t.start()
        t.join()
        assert not errors, errors
        assert c.execute("SELECT count(*) FROM vectors").fetchone()[0] == before  # its snapshot
    assert LocalBackend(st).info("p")["vectorCount"] == 1
    st.close()
    assert st._readers == []


def test_resident_caches_follow_every_commit(built) -> None:
    """A resident backend caches catalog facts between commits; a commit by another connection
    or by its own must show in the next query (new records in the delta, deleted records gone)."""
    st, model = built
    be = LocalBackend(st, resident=True)
    other = LocalBackend(Store(st.path), resident=False)
    q = np.full(DIMS, 0.25, dtype=np.float32)
    assert be.query("p", vector=q.tolist(), top_k=1)["matches"][0]["score"] < 0.99
    for writer, vid in ((other, "new-a"), (be, "new-b")):
        writer.insert("p", io.BytesIO(json.dumps({"id": vid, "values": q.tolist()}).encode() + b"\n"))
        top = be.query("p", vector=q.tolist(), top_k=2)["matches"]
        assert vid in {m["id"] for m in top} and top[0]["score"] == pytest.approx(1.0)
        writer.delete_by_ids("p", [vid])
        assert vid not in {m["id"] for m in be.query("p", vector=q.tolist(), top_k=2)["matches"]}
    # a record in the file deleted by another connection never comes back
    target = model["v42"]
    assert be.query("p", vector=target.tolist(), top_k=1)["matches"][0]["id"] == "v42"
    other.delete_by_ids("p", ["v42"])
    assert "v42" not in {m["id"] for m in be.query("p", vector=target.tolist(), top_k=5)["matches"]}


def test_a_resident_backend_reads_the_delta_once_between_commits(built) -> None:
    st, model = built
    be = LocalBackend(st, resident=True)
    q = np.full(DIMS, 0.25, dtype=np.float32)
    be.insert("p", io.BytesIO(json.dumps({"id": "fresh", "values": q.tolist()}).encode() + b"\n"))  # a delta
    conn = st.conn()
    assert conn is not None
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        for _ in range(3):
            top = be.query("p", vector=q.tolist(), top_k=3)["matches"]
            assert top[0]["id"] == "fresh" and top[0]["score"] == pytest.approx(1.0)
        assert be.query("p", vector=q.tolist(), top_k=3, filter={"n": {"$lt": 40}})["matches"][0]["id"] != "fresh"
    finally:
        conn.set_trace_callback(None)
    delta_reads = [s for s in seen if "key > " in s and "vec FROM" in s]
    # unfiltered: read once into memory; filtered: searched in SQLite with the filter
    assert len(delta_reads) == 2 and "LIMIT" in delta_reads[0], delta_reads
    want = be.query("p", vector=q.tolist(), top_k=3, exact=True)
    assert be.query("p", vector=q.tolist(), top_k=3) == want


def _answers_in_time(fn: Any) -> Any:
    """Run `fn` on a thread; it must finish (a FIFO opened for reading would block it forever)."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the query blocked"
    return out[0]


@pytest.mark.parametrize("fifo", ["ann-file", "ann-file-unsealed", "seal"])
def test_a_fifo_in_place_of_a_store_file_never_blocks_a_query(built, fifo) -> None:
    st, model = built
    path = _file(st)
    target = published.seal_path(path) if fifo == "seal" else path
    if fifo == "ann-file-unsealed":
        published.seal_path(path).unlink()
    target.unlink()
    os.mkfifo(target)
    ann._OPEN.clear()
    for resident in (False, True):
        be = LocalBackend(st, resident=resident)
        q = model["v7"].tolist()
        got = _answers_in_time(lambda: be.query("p", vector=q, top_k=5))  # noqa: B023
        assert got == be.query("p", vector=q, top_k=5, exact=True) and got["matches"][0]["id"] == "v7"


def test_a_fifo_swapped_in_before_the_resident_copy_is_read_is_refused(built) -> None:
    st, _ = built
    path = _file(st)
    ann._OPEN.clear()
    opened = ann.open_file(path, _row(st))
    assert opened is not None and opened.fv is not None and not opened.fv.resident
    path.unlink()
    os.mkfifo(path)
    assert _answers_in_time(opened.fv.make_resident) is False


def test_keys_are_gathered_in_blocks_with_the_same_result(built, monkeypatch) -> None:
    st, _ = built
    path = _file(st)
    layout = usearch_file.layout_of(usearch_file.header(path))
    whole = usearch_file.parse(path, layout)
    monkeypatch.setattr(usearch_file, "_GATHER", 7)  # 600 nodes: 86 blocks, the last one short
    blocks = usearch_file.parse(path, layout)
    assert whole is not None and blocks is not None and len(whole.slot_keys) == N
    assert np.array_equal(whole.slot_keys, blocks.slot_keys) and np.array_equal(whole.offsets, blocks.offsets)


def test_publishing_holds_one_block_of_the_file_in_memory_at_a_time(tmp_path, monkeypatch) -> None:
    """The seal reads every node and vector of the file through a mapping; it drops the pages it
    has read after each block (the graph's keys, SQLite's vectors, the matrix's digest), so a
    bulk insert's parent does not peak at the file's size (it did: 306 MiB at 100k x 768, above
    the float32 input). The seal it writes is the same."""
    st, _ = _make(tmp_path, monkeypatch, 21)
    path, row = _file(st), _row(st)
    before = published.seal_path(path).read_bytes()
    calls: list[int] = []
    real = usearch_file.release
    monkeypatch.setattr(usearch_file, "release", lambda mm: (calls.append(len(mm)), real(mm)))
    monkeypatch.setattr(usearch_file, "_GATHER", 100)  # 6 blocks of node keys
    monkeypatch.setattr(published, "_VERIFY_BYTES", 4 * DIMS * 256)  # 3 batches of SQLite's vectors
    published.seal(path, row, st.conn(), max_key=row["ann_max_key"], seq=row["ann_seq"])
    assert len(calls) >= 6 + 3 + 1 and set(calls) == {path.stat().st_size}
    assert published.seal_path(path).read_bytes() == before


def test_a_digest_that_fails_in_its_thread_is_a_seal_error_and_no_traceback(tmp_path, monkeypatch) -> None:
    """The seal hashes the file's matrix in a thread beside its check against SQLite: an error
    there refuses the seal (SealError, which the merge and the bulk insert handle) and never
    reaches the thread's default hook, which would print a traceback to the user's terminal."""
    st, _ = _make(tmp_path, monkeypatch, 22)
    path, row = _file(st), _row(st)
    before = published.seal_path(path).read_bytes()
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)

    def fail(*_: Any) -> str:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(published, "_digest_mapped", fail)
    with pytest.raises(published.SealError, match="its matrix could not be read"):
        published.seal(path, row, st.conn(), max_key=row["ann_max_key"], seq=row["ann_seq"])
    assert hooked == [] and published.seal_path(path).read_bytes() == before
