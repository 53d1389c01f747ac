"""Vectors read from the published usearch file (`ann.FileVectors`) instead of SQLite.

Queries score candidates from an f32 file's own matrix, and shortlist from an f16 file's. These
checks hold that path to SQLite (byte for byte, or within float16's bound): after inserts, after a
merge with deletes and upserts (tombstones, reused slots), with a resident and a one-shot
backend, and against `exact=True`. A file whose matrix disagrees with
SQLite must be refused, and a delete the catalog did not count must never surface.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vzcli import ann, published
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 16


def _lines(items: dict[str, np.ndarray], meta: bool = True) -> io.BytesIO:
    out = []
    for k, v in items.items():
        r: dict = {"id": k, "values": v.tolist()}
        if meta:
            r["metadata"] = {"n": int(k[1:])}
        out.append(json.dumps(r))
    return io.BytesIO(("\n".join(out) + "\n").encode())


def _row(conn: sqlite3.Connection, name: str) -> dict:
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    return dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))


@pytest.fixture(params=["f16", "f32"])
def built(request: pytest.FixtureRequest, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> tuple[Store, dict[str, np.ndarray]]:
    """An index of 600 vectors whose file (f16, the default, or f32) went through a merge with
    deletes and upserts."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "50")
    monkeypatch.setenv("VZ_ANN_DTYPE", request.param)
    rng = np.random.default_rng(7)
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("fv", dimensions=DIMS, metric="cosine")
    be.create_metadata_index("fv", "n", "number")
    model = {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(500)}
    be.insert("fv", _lines(model))
    gone = [f"v{i}" for i in range(0, 500, 13)]
    be.delete_by_ids("fv", gone)
    for g in gone:
        del model[g]
    changed = {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(1, 500, 11) if f"v{i}" in model}
    changed |= {f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(500, 600)}
    be.upsert("fv", _lines(changed))
    model |= changed
    ann.maintain(st, "fv", force="merge")
    return st, model


def test_file_vectors_equal_sqlite_for_every_live_key(built: tuple[Store, dict[str, np.ndarray]]) -> None:
    st, _ = built
    conn = st.conn()
    row = _row(conn, "fv")
    assert row["ann_tombstones"] > 0  # the merge really removed nodes
    path = st.index_dir("fv") / row["ann_file"]
    opened = ann.open_file(path, row)
    assert opened is not None and opened.fv is not None
    fv = opened.fv
    stored = dict(conn.execute("SELECT key, vec FROM vectors WHERE key <= ?", (row["ann_max_key"],)))
    keys = np.asarray(sorted(stored), dtype=np.int64)
    hit, mat = fv.split(keys)
    assert hit.all()
    want = [stored[int(k)] for k in keys]
    if row["dtype"] == "f32":
        assert fv.exact and [m.tobytes() for m in mat] == want
    else:  # float16 rounding of SQLite's float32, within the bound the seal proved
        assert row["dtype"] == "f16" and not fv.exact and mat.dtype == np.float16
        f32 = np.frombuffer(b"".join(want), dtype=np.float32).reshape(len(want), DIMS)
        assert np.array_equal(mat, f32.astype(np.float16)) and published.close_rows(mat, f32).all()
    # keys the file does not hold are reported as misses, not mapped to another row
    hit, mat = fv.split(np.asarray([0, row["ann_max_key"] + 1, 10**12], dtype=np.int64))
    assert not hit.any() and mat.shape == (0, DIMS)


@pytest.mark.parametrize("flt", [None, {"n": {"$lt": 40}}, {"n": {"$gte": 100}}])
def test_resident_one_shot_and_exact_agree_bit_for_bit(built: tuple[Store, dict[str, np.ndarray]], flt: dict | None) -> None:
    st, model = built
    rng = np.random.default_rng(11)
    resident, one_shot = LocalBackend(st, resident=True), LocalBackend(st, resident=False)
    for _ in range(10):
        q = rng.standard_normal(DIMS).tolist()
        a = resident.query("fv", vector=q, top_k=10, filter=flt, return_values=True)
        b = one_shot.query("fv", vector=q, top_k=10, filter=flt, return_values=True)
        e = resident.query("fv", vector=q, top_k=10, filter=flt, exact=True, return_values=True)
        assert a == b
        assert len(a["matches"]) == 10
        for m in a["matches"]:
            assert m["values"] == model[m["id"]].astype(np.float64).tolist()
        # the same scores wherever a record was found (HNSW may miss a neighbour, never misscore it)
        exact_scores = {m["id"]: m["score"] for m in e["matches"]}
        for m in a["matches"]:
            if m["id"] in exact_scores:
                assert m["score"] == exact_scores[m["id"]]


def test_a_file_whose_matrix_differs_from_sqlite_is_not_used(built: tuple[Store, dict[str, np.ndarray]]) -> None:
    st, model = built
    conn = st.conn()
    row = _row(conn, "fv")
    path = st.index_dir("fv") / row["ann_file"]
    # overwrite the matrix in place (same size, graph intact): every stored vector now differs
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(np.full(DIMS * 4, 0.5, dtype=np.float32).tobytes())
    ann._OPEN.clear()
    assert ann.open_file(path, row) is None  # it changed since its seal: not mapped at all
    q = model["v3"].tolist()
    got = LocalBackend(st).query("fv", vector=q, top_k=3, filter={"n": {"$lt": 40}})
    want = LocalBackend(st).query("fv", vector=q, top_k=3, filter={"n": {"$lt": 40}}, exact=True)
    assert got == want
    assert got["matches"][0]["id"] == "v3"


def test_an_uncounted_delete_never_surfaces(built: tuple[Store, dict[str, np.ndarray]]) -> None:
    st, model = built
    be = LocalBackend(st)
    q = model["v3"].tolist()
    assert be.query("fv", vector=q, top_k=5)["matches"][0]["id"] == "v3"
    be.delete_by_ids("fv", ["v3"])
    # simulate a merge that raced the delete: the catalog says the file has no dead keys
    with st.write() as conn:
        conn.execute("UPDATE indexes SET ann_dead = 0 WHERE name = 'fv'")
    got = be.query("fv", vector=q, top_k=5)
    ids = [m["id"] for m in got["matches"]]
    assert "v3" not in ids and len(ids) == 5
    want = be.query("fv", vector=q, top_k=5, exact=True)
    assert got["matches"] == want["matches"]


def test_a_cached_view_follows_the_catalogs_ef_search(built: tuple[Store, dict[str, np.ndarray]]) -> None:
    st, model = built
    be = LocalBackend(st)
    be.query("fv", vector=model["v3"].tolist(), top_k=3)  # maps the file, ef_search 64
    with st.write() as conn:
        conn.execute("UPDATE indexes SET expansion_search = 24 WHERE name = 'fv'")
    be.query("fv", vector=model["v3"].tolist(), top_k=3)
    conn = st.conn()
    row = _row(conn, "fv")
    opened = ann.open_file(st.index_dir("fv") / row["ann_file"], row)
    assert opened is not None and opened.view.expansion_search == 24


def test_ids_and_namespaces_from_memory_survive_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A resident backend answers ids, namespaces and values from the file; after a merge it
    carries them over to the new file and reads only the merged records."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    rng = np.random.default_rng(5)
    st = Store(tmp_path / "store")
    resident, one_shot = LocalBackend(st), LocalBackend(st, resident=False)
    resident.create_index("ns", dimensions=DIMS, metric="euclidean")
    vecs = rng.standard_normal((400, DIMS)).astype(np.float32)

    def batch(lo: int, hi: int) -> io.BytesIO:
        return io.BytesIO("".join(json.dumps({"id": f"r{i}", "values": vecs[i].tolist(),
                                              **({"namespace": f"n{i % 3}"} if i % 2 else {})}) + "\n"
                                  for i in range(lo, hi)).encode())

    def check() -> None:
        namespaces = set()
        for i in range(0, 400, 37):
            q = vecs[i].tolist()
            a = resident.query("ns", vector=q, top_k=8, return_values=True)
            assert a == one_shot.query("ns", vector=q, top_k=8, return_values=True)  # one_shot reads SQLite
            assert len(a["matches"]) == 8
            namespaces |= {m.get("namespace") for m in a["matches"]}
        assert {"n0", "n1", "n2"} <= namespaces

    resident.insert("ns", batch(0, 200))
    check()
    first = _row(st.conn(), "ns")["ann_file"]
    resident.insert("ns", batch(200, 400))
    resident.delete_by_ids("ns", [f"r{i}" for i in range(0, 400, 9)])
    assert _row(st.conn(), "ns")["ann_file"] != first  # merged into a new file
    check()
    row = _row(st.conn(), "ns")
    path = st.index_dir("ns") / row["ann_file"]
    opened = ann.open_file(path, row)
    assert opened is not None and opened.fv is not None and opened.fv.known is not None  # ids came into memory


def test_a_merge_adds_with_the_indexs_own_ef_construction(built: tuple[Store, dict[str, np.ndarray]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """usearch files do not store expansion_add; a merge must pass the catalog's, not usearch's 128."""
    from usearch.index import Index

    st, _ = built
    seen: list[int] = []
    real = Index.restore

    def spy(*a: object, **kw: object) -> object:
        idx = real(*a, **kw)  # type: ignore[arg-type]
        if idx is not None and not kw.get("view"):
            seen.append(idx.expansion_add)
        return idx

    monkeypatch.setattr(Index, "restore", staticmethod(spy))
    LocalBackend(st).upsert("fv", _lines({f"w{i}": np.full(DIMS, i + 1.0, dtype=np.float32) for i in range(60)}))
    assert seen and set(seen) == {_row(st.conn(), "fv")["expansion_add"]} == {64}


@pytest.mark.parametrize("n", [30, 50000])  # a short list binds each key; a long one goes as JSON
def test_dead_among_finds_exactly_the_dead_keys(n: int) -> None:
    from vzcli.search import dead_among

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE dead_keys (index_id INTEGER, key INTEGER, PRIMARY KEY (index_id, key)) WITHOUT ROWID")
    conn.executemany("INSERT INTO dead_keys VALUES (?, ?)", [(1, k) for k in range(0, 2 * n, 3)] + [(2, 1)])
    assert dead_among(conn, 1, list(range(n))) == set(range(0, n, 3))
    assert dead_among(conn, 2, list(range(n))) == {1}
    assert dead_among(conn, 1, []) == set()


def test_float16_fast_check_never_passes_a_row_the_full_check_refuses() -> None:
    """`published._surely_close` (a sufficient condition, to skip `close_rows`) against the full
    check, row by row, over random rows and rows at float16's edges: whenever it passes a row,
    the full check does too, and `as_f16` decides every matrix as the full check alone does."""
    rng = np.random.default_rng(3)
    dims = 64
    rows = [rng.standard_normal(dims) * s for s in 10.0 ** rng.uniform(-9, 5, 400)]
    edge = [np.full(dims, 65503.9), np.full(dims, 65504.0), np.full(dims, 65519.0), np.zeros(dims),
            np.r_[1.0, np.zeros(dims - 1)] * 1e-7, np.full(dims, 6e-5), np.full(dims, 2.0**-24), np.full(dims, 3e-8),
            np.full(dims, np.sqrt(2.0**-29)), np.full(dims, np.sqrt(2.0**-29) * 0.999), np.r_[np.nan, np.ones(dims - 1)],
            np.r_[np.inf, np.ones(dims - 1)]]
    for sub in (1e-5, 5e-6, 1e-6):  # a row whose norm sits just above the threshold, in float16's subnormals
        edge.append(np.where(np.arange(dims) % 2, sub, -sub))
    checked = 0
    for v in rows + edge:
        m = np.asarray(v, dtype=np.float32).reshape(1, dims)
        with np.errstate(over="ignore"):
            h = m.astype(np.float16)
        full = bool(published.close_rows(h, m).all())
        if published._surely_close(m):
            assert full, v
            checked += 1
        got = published.as_f16(m)
        assert (got is not None) == full and (got is None or np.array_equal(got, h, equal_nan=True))
    assert checked > 200  # the fast check decides most ordinary rows
