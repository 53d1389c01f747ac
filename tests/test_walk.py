"""vz's own search of a sealed HNSW file (`vzcli.walk`), used by one-shot processes.

It must find what usearch's own search finds on the same file (the same algorithm over the same
graph), never load usearch, read only what its seal and the visited nodes say, and fall back to
an exact answer from SQLite when the graph under a seal is not what the seal vouched for.
Graphs are built with one thread, so each file, and each answer, is the same on every run.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vzcli import ann, published, search, usearch_file, walk
from vzcli.local import LocalBackend
from vzcli.store import Store

METRICS = {"cos": "cosine", "l2sq": "euclidean", "ip": "dot-product"}


def _graph(tmp_path: Path, usearch_metric: str, removed: bool) -> tuple[Path, np.ndarray]:
    from usearch.index import Index

    rng = np.random.default_rng(11)
    centres = rng.standard_normal((20, 24)).astype(np.float32)
    vecs = (centres[rng.integers(0, 20, 3000)] + 0.3 * rng.standard_normal((3000, 24))).astype(np.float32)
    idx = Index(ndim=24, metric=usearch_metric, dtype="f32", connectivity=16, expansion_add=64)
    idx.add(np.arange(1, 3001, dtype=np.uint64), vecs, threads=1)
    if removed:
        idx.remove(np.arange(1, 3001, 5, dtype=np.uint64))
    path = tmp_path / "g.usearch"
    idx.save(str(path))
    return path, vecs


def _walker(path: Path, metric: str, ef: int) -> walk.Walker:
    meta = usearch_file.header(path)
    assert meta is not None
    layout = usearch_file.layout_of(meta)
    assert layout is not None
    parsed = usearch_file.parse(path, layout)
    assert parsed is not None and parsed.graph is not None and parsed.offsets is not None
    return walk.Walker(os.open(path, os.O_RDONLY), parsed.matrix_offset, 24, parsed.offsets, parsed.graph, metric, ef)


@pytest.mark.parametrize("removed", [False, True], ids=["whole", "with-removed-nodes"])
@pytest.mark.parametrize("usearch_metric", list(METRICS))
def test_the_walker_finds_what_usearch_finds_on_the_same_file(tmp_path, usearch_metric, removed) -> None:
    from usearch.index import Index

    path, vecs = _graph(tmp_path, usearch_metric, removed)
    w = _walker(path, METRICS[usearch_metric], 16)
    view = Index.restore(str(path), view=True, expansion_search=16)
    rng = np.random.default_rng(5)
    qs = (vecs[rng.integers(0, 3000, 60)] + 0.2 * rng.standard_normal((60, 24))).astype(np.float32)
    same = 0
    for count in (1, 10, 40):
        for q in qs:
            got, want = w.search(q, count), view.search(q, count, threads=1)
            assert len(got.keys) == len(want.keys) == count
            if removed:
                assert not bool((got.keys % 5 == 1).any())  # removed keys are never returned
            # the same algorithm on the same graph: the same answer, unless float32 rounding (numpy's
            # against usearch's SIMD kernels) orders two equal distances differently
            same += got.keys.tolist() == want.keys.tolist()
            np.testing.assert_allclose(np.sort(got.distances), np.sort(want.distances)[: len(got.keys)],
                                       rtol=1e-3, atol=1e-3)
    assert same >= 0.95 * 3 * len(qs)


def _lines(vecs: dict[str, np.ndarray]) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist()}) + "\n" for k, v in vecs.items()).encode())


@pytest.fixture
def built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Store, dict[str, np.ndarray]]:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    monkeypatch.setattr(ann, "WALK_BASE_NODES", 0)  # walk these 700-node graphs too, up to ef 87
    monkeypatch.setattr(ann, "WALK_NODES_PER_EF", 8)
    monkeypatch.setattr(ann, "WALK_IMPORT_NODES", 0)  # the same whether or not usearch is imported yet
    ann._OPEN.clear()
    rng = np.random.default_rng(2)
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("p", dimensions=16, metric="cosine")
    model = {f"v{i}": rng.standard_normal(16).astype(np.float32) for i in range(700)}
    be.insert("p", _lines(model))
    return st, model


def _row(st: Store) -> dict:
    cur = st.conn().execute("SELECT * FROM indexes WHERE name = 'p'")
    return dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))


def _file(st: Store) -> Path:
    return st.index_dir("p") / _row(st)["ann_file"]


def test_a_one_shot_query_walks_the_sealed_graph_without_loading_usearch(built) -> None:
    st, model = built
    assert isinstance(ann.open_file(_file(st), _row(st), walk=True).view, walk.Walker)  # type: ignore[union-attr]
    assert not isinstance(ann.open_file(_file(st), _row(st)).view, walk.Walker)  # type: ignore[union-attr]
    code = (
        "import json, sys\n"
        "import vzcli.ann\n"
        "vzcli.ann.WALK_BASE_NODES = vzcli.ann.WALK_NODES_PER_EF = 0\n"
        "from vzcli.cli import main\n"
        "sys.argv = ['vz', 'query', 'p', '--vector', sys.argv[1], '--top-k', '3', '--json']\n"
        "try:\n    main()\nfinally:\n"
        "    print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'usearch')), file=sys.stderr)\n")
    vec = ",".join(str(x) for x in model["v42"].tolist())
    r = subprocess.run([sys.executable, "-c", code, vec], capture_output=True, text=True,
                       env=dict(os.environ, VZ_STORE=str(st.path)), timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stderr.splitlines()[-1]) == []
    want = LocalBackend(st, resident=False).query("p", vector=model["v42"].tolist(), top_k=3, exact=True)
    assert json.loads(r.stdout) == want
    assert want["matches"][0]["id"] == "v42"


def _level0_lists(st: Store) -> tuple[Path, list[int], int]:
    """(file, offset of each node's level-0 neighbour count, m0)."""
    path = _file(st)
    s = published.read_seal(path, path.stat(), _row(st))
    assert isinstance(s, published.Seal) and s.offsets is not None
    g = s.head["graph"]
    return path, [usearch_file.V2.neighbours_at(int(o), 0, g["m"], g["m0"]) for o in s.offsets], g["m0"]


def _write_keeping_identity(path: Path, writes: list[tuple[int, bytes]]) -> None:
    before = path.stat()
    with open(path, "r+b") as f:
        for at, data in writes:
            f.seek(at)
            f.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert published.identity(path.stat()) == published.identity(before)


@pytest.mark.parametrize("damage", ["count", "slot"])
def test_a_graph_altered_under_its_seal_is_answered_exactly(built, damage) -> None:
    """The seal vouches for the identity only, and a one-shot process does not hash the file:
    a neighbour count or slot out of range must make it answer from SQLite, exactly."""
    st, model = built
    path, lists, m0 = _level0_lists(st)
    if damage == "count":
        _write_keeping_identity(path, [(at, (m0 + 1).to_bytes(4, "little")) for at in lists])
    else:
        _write_keeping_identity(path, [(at + 4, (10**9).to_bytes(4, "little")) for at in lists])
    ann._OPEN.clear()
    be = LocalBackend(st, resident=False)
    for vid in ("v1", "v500"):
        q = model[vid].tolist()
        got = be.query("p", vector=q, top_k=5, return_values=True)
        assert got == be.query("p", vector=q, top_k=5, return_values=True, exact=True)
        assert got["matches"][0]["id"] == vid
    row = _row(st)
    with st.read() as conn:
        _, plan = search.search(conn, row, st.index_dir("p"), model["v1"], 5, None, None)
    assert plan.path == "exact"


def test_a_graph_rewired_under_its_seal_never_changes_a_score(built) -> None:
    """In-range but wrong neighbours (every level-0 neighbour of every node is slot 0) can only
    change which candidates are found: each returned score is still the exact one."""
    st, model = built
    path, lists, m0 = _level0_lists(st)
    _write_keeping_identity(path, [(at + 4, bytes(4 * m0)) for at in lists])
    ann._OPEN.clear()
    be = LocalBackend(st, resident=False)
    for vid in ("v3", "v250"):
        q = model[vid]
        got = be.query("p", vector=q.tolist(), top_k=4)
        assert got["matches"]
        for m in got["matches"]:
            assert m["score"] == search.score_of("cosine", float(search.distances("cosine", q, model[m["id"]][None])[0]))


def test_a_seal_written_before_graph_offsets_is_searched_through_usearch(built) -> None:
    """Seals of vz before `walk` carry no offsets: a one-shot query then uses usearch's view."""
    st, model = built
    path, row = _file(st), _row(st)
    s = published.read_seal(path, path.stat(), row)
    assert isinstance(s, published.Seal)
    head = {k: v for k, v in s.head.items() if k != "graph"}
    published._write(published.seal_path(path), head, np.array(s.keys), np.array(s.slots), np.empty(0, np.int64))
    ann._OPEN.clear()
    s2 = published.read_seal(path, path.stat(), row)
    assert isinstance(s2, published.Seal) and s2.offsets is None
    opened = ann.open_file(path, row, walk=True)
    assert opened is not None and not isinstance(opened.view, walk.Walker) and opened.fv is not None
    be = LocalBackend(st, resident=False)
    for vid in ("v8", "v600"):
        q = model[vid].tolist()
        assert be.query("p", vector=q, top_k=5) == be.query("p", vector=q, top_k=5, exact=True)


def test_walk_pays_only_where_it_costs_less_than_usearch() -> None:
    loaded = {"usearch_loaded": True}
    assert ann.walk_pays(1_000_000, 128, **loaded) and ann.walk_pays(1_000_000, 1000, **loaded)
    assert ann.walk_pays(5_000_000, 5000, **loaded)
    assert not ann.walk_pays(100_000, 64, **loaded)  # usearch's open costs less than a walk
    assert not ann.walk_pays(1_000_000, 2000, **loaded)  # a wide search: usearch's open and search cost less
    # a process that has not imported usearch would pay its import too (50-70 ms)
    assert ann.walk_pays(10_000, 64, usearch_loaded=False) and ann.walk_pays(100_000, 1000, usearch_loaded=False)
    assert not ann.walk_pays(100_000, 2000, usearch_loaded=False)
    assert ann.walk_pays(100_000, 64) is ("usearch.index" not in sys.modules)


def test_a_search_that_widens_past_the_walk_limit_switches_to_usearch(built, monkeypatch) -> None:
    """A filtered one-shot query searches wider than ef: beyond WALK_MAX_EF it goes on through
    usearch's view, and still answers like the exact search."""
    st, model = built
    be = LocalBackend(st, resident=False)
    be.create_metadata_index("p", "g", "number")
    rng = np.random.default_rng(9)
    extra = {f"w{i}": rng.standard_normal(16).astype(np.float32) for i in range(300)}
    be.upsert("p", io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist(), "metadata": {"g": 0}}) + "\n"
                                      for k, v in extra.items()).encode()))  # 300 > the exact cap (256)
    assert _row(st)["ann_max_key"] > 700  # merged into the file
    used: list[str] = []
    real_walk, real_view = walk.Walker.search, ann._usearch_view

    def spy_walk(self: walk.Walker, *a: object, **kw: object) -> walk.Matches:
        used.append("walk")
        return real_walk(self, *a, **kw)  # type: ignore[arg-type]

    def spy_view(*a: object, **kw: object) -> object:
        used.append("usearch")
        return real_view(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(walk.Walker, "search", spy_walk)
    monkeypatch.setattr(ann, "_usearch_view", spy_view)
    # the fixture walks up to ef 87 here: unfiltered queries search at ef 64, a filtered first pass at 128
    ann._OPEN.clear()
    q = extra["w4"].tolist()
    assert be.query("p", vector=q, top_k=5)["matches"][0]["id"] == "w4"
    assert used == ["walk"]
    got = be.query("p", vector=q, top_k=5, filter={"g": 0})
    assert got == be.query("p", vector=q, top_k=5, filter={"g": 0}, exact=True)
    assert got["matches"][0]["id"] == "w4" and used == ["walk", "usearch"]
