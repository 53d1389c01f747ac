"""A bulk write into an index without an ANN file builds the file while it is written (vzcli.annbuild,
vzcli.annchild)."""

from __future__ import annotations

import io
import os
import sqlite3
import struct
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest

from vzcli import ann, annbase, annbuild, annchild
from vzcli.doctor import run as doctor_run
from vzcli.errors import InvalidVector
from vzcli.local import LocalBackend
from vzcli.store import Store

N, DIMS = 3000, 8  # above the default merge threshold (2000)


def _ndjson(ids: list[str], seed: int) -> io.BytesIO:
    rng = np.random.default_rng(seed)
    vals = rng.random((len(ids), DIMS)) + 0.01
    lines = [f'{{"id":"{v}","values":[{",".join(f"{x:.5f}" for x in row)}]}}\n' for v, row in zip(ids, vals, strict=True)]
    return io.BytesIO("".join(lines).encode())


def _row(store: Store) -> dict[str, object]:
    con = sqlite3.connect(store.catalog_path)
    try:
        cur = con.execute("SELECT ann_file, ann_max_key, ann_nodes, ann_dead, vector_count, "
                          "(SELECT max(key) FROM vectors) AS top, (SELECT count(*) FROM dead_keys) AS dead FROM indexes")
        return dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
    finally:
        con.close()


@pytest.fixture
def be(tmp_path: Path) -> LocalBackend:
    b = LocalBackend(Store(tmp_path / "s"), resident=False)
    b.create_index("k", dimensions=DIMS, metric="cosine")
    return b


def _no_merge_after_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("the file should have been built during the write")

    monkeypatch.setattr(ann, "maintain", lambda store, name, **k: None if _row(store)["ann_file"] else refuse())


def test_bulk_insert_builds_the_file_during_the_write(be, monkeypatch) -> None:
    _no_merge_after_commit(monkeypatch)
    be.insert("k", _ndjson([f"v{i}" for i in range(N)], 0))
    row = _row(be.store)
    assert row["ann_file"] is not None
    assert (row["ann_nodes"], row["ann_max_key"], row["ann_dead"], row["vector_count"]) == (N, row["top"], 0, N)
    assert sorted(p.name for p in be.store.index_dir("k").iterdir()) == sorted(
        [row["ann_file"], "merge.lock", f"seal-{row['ann_file']}"])  # published with its seal
    assert doctor_run(be.store, "k").healthy


def test_upsert_replacing_records_it_already_sent(be, monkeypatch) -> None:
    """Records replaced later in the same write stay in the file as dead nodes, counted as such."""
    _no_merge_after_commit(monkeypatch)
    # 300 repeated ids; the 250 below v2000 were stored (and sent) in the first chunk of 2000
    ids = [f"v{i}" for i in range(N)] + [f"v{i}" for i in range(0, 2400, 8)]
    be.upsert("k", _ndjson(ids, 1))
    row = _row(be.store)
    assert (row["ann_nodes"], row["ann_dead"], row["dead"], row["vector_count"]) == (N + 250, 250, 250, N)
    rep = doctor_run(be.store, "k")
    assert rep.healthy, rep.to_dict()
    q = [0.5] * DIMS
    exact = be.query("k", vector=q, top_k=5, exact=True)
    assert all(m["id"] in {f"v{i}" for i in range(N)} for m in be.query("k", vector=q, top_k=5)["matches"])
    assert exact["count"] == 5


def test_a_failed_builder_falls_back_to_the_merge(be, monkeypatch) -> None:
    def broken(self: annbuild.Builder) -> str:
        self.abort()
        raise RuntimeError("builder failed")

    monkeypatch.setattr(annbuild.Builder, "result", broken)
    res = be.insert("k", _ndjson([f"v{i}" for i in range(N)], 2))
    assert res.notes == []
    row = _row(be.store)
    assert row["ann_file"] is not None and row["ann_nodes"] == N  # rebuilt from SQLite after the commit
    assert doctor_run(be.store, "k").healthy


def test_a_rolled_back_write_leaves_no_file(be) -> None:
    data = _ndjson([f"v{i}" for i in range(N)], 3).getvalue() + b'{"id": "bad", "values": [1]}\n'
    with pytest.raises(InvalidVector):
        be.insert("k", io.BytesIO(data))
    row = _row(be.store)
    assert (row["ann_file"], row["vector_count"], row["top"]) == (None, 0, None)
    assert [p.name for p in be.store.index_dir("k").iterdir()] == ["merge.lock"]


def _spy_expect(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(nodes after, expected nodes) of each block sent to the builder."""
    seen: list[tuple[int, int]] = []
    real = annbuild.Builder.add

    def spy(self: annbuild.Builder, keys: np.ndarray, vecs: np.ndarray, expect: int = 0) -> bool:
        seen.append((self.nodes + len(keys), expect))
        return real(self, keys, vecs, expect)

    monkeypatch.setattr(annbuild.Builder, "add", spy)
    return seen


def test_the_builder_is_told_the_size_a_seekable_input_will_reach(be, monkeypatch, tmp_path) -> None:
    """From how much of the input has been read, the builder expects the final size from its first
    block, and adds every node at that size's ef_construction (as a rebuild does)."""
    seen = _spy_expect(monkeypatch)
    n = 9000
    path = tmp_path / "in.ndjson"
    path.write_bytes(_ndjson([f"v{i:05d}" for i in range(n)], 1).getvalue())  # lines of one length
    with path.open("rb") as f:
        be.insert("k", f)
    assert _row(be.store)["ann_nodes"] == n
    # within 5%: the reader is ahead of the records written by up to one batch (ndjson.BATCH)
    assert seen and all(abs(expect - n) <= n // 20 for _, expect in seen), seen


def test_a_piped_input_has_no_size_to_expect(be, monkeypatch) -> None:
    import os

    from vzcli.writes import _input_span

    assert _input_span(io.BytesIO(b"abc")) == (0, 3)
    buf = io.BytesIO(b"abcdef")
    buf.read(2)
    assert _input_span(buf) == (2, 6) and buf.tell() == 2
    assert _input_span(io.BytesIO(b"")) is None
    r, w = os.pipe()
    with os.fdopen(r, "rb") as pipe, os.fdopen(w, "wb"):
        assert _input_span(pipe) is None


def test_vz_insert_file_tells_the_builder_the_size_to_expect(vz, monkeypatch, tmp_path) -> None:
    """The CLI's progress-counting reader stays seekable for a file (a pipe is not:
    `test_a_piped_input_has_no_size_to_expect`)."""
    seen = _spy_expect(monkeypatch)
    n = 6000
    data = _ndjson([f"v{i:05d}" for i in range(n)], 2).getvalue()
    path = tmp_path / "in.ndjson"
    path.write_bytes(data)
    assert vz("create", "f", "--dimensions", DIMS, "--metric", "cosine").exit_code == 0
    assert vz("insert", "f", "--file", path).exit_code == 0
    assert seen and all(abs(expect - n) <= n // 20 for _, expect in seen), seen


def _frame(start: int, n: int, dims: int = DIMS) -> bytes:
    keys = np.arange(start, start + n, dtype=np.uint64)
    vecs = (np.random.default_rng(start).random((n, dims)) + 0.01).astype(np.float16)
    return struct.pack("=qq", n, 0) + keys.tobytes() + vecs.tobytes()


def test_the_child_builds_with_one_thread_until_the_parent_has_committed(tmp_path, monkeypatch) -> None:
    """While the parent parses, two build threads beside it would share two cores three ways (and
    usearch's threads spin on locks a preempted thread holds): the child builds with one thread
    and buffers, and takes every core once the commit frame has arrived."""
    monkeypatch.setattr(annbase, "SMALL_GRAPH", 0)
    calls: list[int] = []
    first, go, committed = threading.Event(), threading.Event(), threading.Event()
    real_add, real_put = annchild.Graph.add, annchild._Inbox.put

    def add(self: annchild.Graph, keys: bytes, vecs: bytes, threads: int) -> None:
        calls.append(threads)
        first.set()
        assert go.wait(30)
        real_add(self, keys, vecs, threads)

    def put(self: annchild._Inbox, kind: str, arg: object, size: int = 0) -> None:
        real_put(self, kind, arg, size)
        if kind == "commit":
            committed.set()

    monkeypatch.setattr(annchild.Graph, "add", add)
    monkeypatch.setattr(annchild._Inbox, "put", put)
    row = {"id": 1, "name": "k", "dimensions": DIMS, "metric": "cosine", "dtype": "f16", "connectivity": 16,
           "expansion_add": 64, "expansion_search": 64}
    r, w = os.pipe()
    out = io.BytesIO()
    with os.fdopen(r, "rb") as rf, os.fdopen(w, "wb", buffering=0) as wf:
        result: list[int] = []
        child = threading.Thread(target=lambda: result.append(annchild.main(rf, out)))
        child.start()
        wf.write(orjson.dumps({"row": row, "dir": str(tmp_path)}) + b"\n" + _frame(1, 300))
        assert first.wait(30)  # the first block is being built: the parent is still writing
        wf.write(_frame(301, 300) + _frame(601, 300) + struct.pack("=qq", -1, 7))
        assert committed.wait(30)
        go.set()
        child.join(60)
    assert result == [0] and calls == [1, 0, 0]
    name = orjson.loads(out.getvalue())["file"]
    assert name.startswith("ann-000000000007-") and (tmp_path / name).is_file()


def test_the_childs_buffer_is_bounded_and_a_full_one_takes_every_core(monkeypatch) -> None:
    monkeypatch.setattr(annchild, "BUFFER", 100)
    box = annchild._Inbox()
    box.put("add", "a", 60)
    writer = threading.Thread(target=box.put, args=("add", "b", 60))  # 120 > 100: waits
    writer.start()
    with box.cond:
        assert box.cond.wait_for(lambda: box.full, 30)
    assert box.get() == ("add", "a", True)  # the parent waits for the build: every core builds
    writer.join(30)
    assert not writer.is_alive() and box.get() == ("add", "b", False)
    box.put("add", "c", 60)
    box.put("commit", 9)
    assert box.get() == ("add", "c", True)  # the parent has committed
    assert box.get() == ("commit", 9, True)


def test_a_rolled_back_write_drops_the_childs_buffer() -> None:
    box = annchild._Inbox()
    for i in range(3):
        box.put("add", i, 10)
    box.put("abort", None)
    assert box.get() == ("abort", None, True) and box.bytes == 0


def test_the_commit_leaves_its_checkpoint_until_the_builder_has_the_commit_frame(be, monkeypatch) -> None:
    """Copying the write from the WAL into the database file at the commit would keep the
    builder (one thread until then) waiting; the checkpoint runs after the commit frame is sent,
    and the connection's automatic checkpoints come back, on success and on rollback."""
    from vzcli import writes

    events: list[object] = []
    real_commit, real_ckpt = annbuild.Builder.commit, writes._BulkBuild._checkpoint

    def commit(self: annbuild.Builder, seq: int) -> None:
        events.append("commit frame")
        real_commit(self, seq)

    def ckpt(self: writes._BulkBuild) -> None:
        if self._autocheckpoint is not None:
            events.append(("checkpoint; automatic ones were", self._autocheckpoint[0].execute(
                "PRAGMA wal_autocheckpoint").fetchone()[0]))
        real_ckpt(self)

    monkeypatch.setattr(annbuild.Builder, "commit", commit)
    monkeypatch.setattr(writes._BulkBuild, "_checkpoint", ckpt)
    conn = be.store.reader()
    before = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    be.insert("k", _ndjson([f"v{i}" for i in range(N)], 4))
    assert events == ["commit frame", ("checkpoint; automatic ones were", 0)]
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == before == 1000
    assert _row(be.store)["ann_nodes"] == N
    events.clear()
    be.create_index("k2", dimensions=DIMS, metric="cosine")
    with pytest.raises(InvalidVector):
        be.insert("k2", io.BytesIO(_ndjson([f"w{i}" for i in range(N)], 5).getvalue() + b'{"id": "x"}\n'))
    assert events == [("checkpoint; automatic ones were", 0)]  # rolled back: no commit frame
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000



@pytest.mark.parametrize("stdin", [b"", b"not json\n", b'{"row": {}}\n'])
def test_a_builder_whose_parent_stopped_early_exits_without_a_traceback(stdin: bytes) -> None:
    """The child's stderr is the parent's terminal: a parent interrupted before it sent the first
    line (seen when Ctrl-C came 0.23 s into a `vz insert`) must not put a traceback there."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "VZ_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "vzcli.annchild"], input=stdin, capture_output=True, env=env,
                       timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (1, b"", b"")


def _child_build(tmp_path: Path, row: dict[str, object], frames: bytes, seq: int) -> bytes:
    """The bytes of the file `annchild.main` publishes from `frames` (in this process)."""
    head = orjson.dumps({"row": row, "dir": str(tmp_path)}) + b"\n"
    out = io.BytesIO()
    assert annchild.main(io.BytesIO(head + frames + struct.pack("=qq", -1, seq)), out) == 0
    return (tmp_path / orjson.loads(out.getvalue())["file"]).read_bytes()


@pytest.mark.parametrize(("metric", "dtype"), [("cosine", "f16"), ("euclidean", "f32"), ("dot-product", "f16")])
def test_the_childs_numpy_free_graph_saves_the_file_usearchs_wrapper_saves(tmp_path, monkeypatch, metric, dtype) -> None:
    """The child drives usearch's compiled Index through the buffer protocol; for a usearch whose
    binding it does not know it falls back to `usearch.index.Index`: byte for byte the same file
    (a graph this small is built with one thread, deterministic)."""
    scalar = np.float16 if dtype == "f16" else np.float32
    keys = np.arange(1, 1201, dtype=np.uint64)
    vecs = (np.random.default_rng(5).random((1200, DIMS)) + 0.01).astype(scalar)
    frames = b"".join(struct.pack("=qq", 400, 0) + keys[i:i + 400].tobytes() + vecs[i:i + 400].tobytes()
                      for i in (0, 400, 800))
    row = {"id": 1, "name": "k", "dimensions": DIMS, "metric": metric, "dtype": dtype, "connectivity": 16,
           "expansion_add": 64, "expansion_search": 64}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert annchild.load_compiled() is not None
    lean = _child_build(tmp_path / "a", row, frames, 3)
    idx = ann._new_index(row)  # what a rebuild builds from the same rows, in the same blocks
    for i in (0, 400, 800):
        idx.add(keys[i:i + 400], vecs[i:i + 400], threads=1)
    idx.save(str(tmp_path / "rebuilt"))
    assert (tmp_path / "rebuilt").read_bytes() == lean
    monkeypatch.setattr(annchild, "BINDING_VERSIONS", frozenset({"0.0.1"}))  # a usearch it was not checked against
    assert annchild.load_compiled() is None
    assert _child_build(tmp_path / "b", row, frames, 3) == lean


@pytest.mark.parametrize("case", ["lean", "not found", "unknown version"])
def test_the_child_process_builds_without_numpy_or_usearchs_wrapper(tmp_path, case: str) -> None:
    """The insert's peak at 128-d is the child's graph plus its interpreter: the child imports
    neither numpy nor `usearch.index` (44 MiB with them, ~15 MiB without). Where it cannot find
    usearch's extension file, or finds a version it was not checked against, it imports usearch
    as usual (reusing the extension it loaded) and builds the same."""
    import subprocess
    import sys

    row = {"id": 1, "name": "k", "dimensions": DIMS, "metric": "cosine", "dtype": "f16", "connectivity": 16,
           "expansion_add": 64, "expansion_search": 64}
    stdin = orjson.dumps({"row": row, "dir": str(tmp_path)}) + b"\n" + _frame(1, 300) + struct.pack("=qq", -1, 4)
    patch = {"lean": "", "not found": "annchild._extension = lambda *a: None\n",
             "unknown version": "annchild.BINDING_VERSIONS = frozenset({'0.0.1'})\n"}[case]
    code = ("import sys\nfrom vzcli import annchild\n" + patch +
            "rc = annchild.main()\nsys.stderr.write(repr(sorted(m for m in ('numpy', 'usearch.compiled', "
            "'usearch.index', 'orjson') if m in sys.modules)))\nraise SystemExit(rc)")
    r = subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, timeout=120)
    expect = ['usearch.compiled'] if case == "lean" else ['numpy', 'orjson', 'usearch.compiled', 'usearch.index']
    assert (r.returncode, r.stderr) == (0, repr(expect).encode())
    name = orjson.loads(r.stdout)["file"]
    assert name.startswith("ann-000000000004-")
    view = ann.usearch_file.index_class().restore(str(tmp_path / name), view=True)
    assert len(view) == 300 and view.get(17) is not None
