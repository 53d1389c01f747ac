"""ANN files that store vectors as float16 (the default), and the float32 files they fall back to.

An f16 file holds each vector within `published.F16_EPS` of SQLite's float32 (the seal checks it).
Queries only shortlist from it: every score and every returned value comes from SQLite, so a query
answers exactly what `exact=True` answers, with one- or long-lived backends. Data float16 cannot
hold (values past 65,504, vectors float16 flushes to zero) gets an f32 file. Indexes here are
small and built with one thread (deterministic graphs).
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from vzcli import ann, published, search, usearch_file
from vzcli.envconf import ann_dtype
from vzcli.errors import UsageError
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 16


def _lines(items: dict[str, np.ndarray], meta: bool = True) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps({"id": k, "values": v.tolist(), **({"metadata": {"n": int(k[1:]) % 10}}
                                                                             if meta else {})}) + "\n"
                              for k, v in items.items()).encode())


def _row(st: Store, name: str = "f") -> dict:
    cur = st.conn().execute("SELECT * FROM indexes WHERE name = ?", (name,))
    return dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))


def _scalar(st: Store, name: str = "f") -> str:
    """The scalar type in the header of the index's ANN file, and the catalog's, which must agree."""
    row = _row(st, name)
    meta = usearch_file.header(st.index_dir(name) / row["ann_file"])
    assert meta is not None
    kind = str(meta["kind_scalar"]).rsplit(".", 1)[-1].split(":")[0].lower()
    assert kind == row["dtype"], (kind, row["dtype"])
    return kind


def _index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: dict[str, np.ndarray], metric: str = "cosine",
           *, resident: bool = False) -> tuple[Store, LocalBackend]:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    ann._OPEN.clear()
    st = Store(tmp_path / "store")
    be = LocalBackend(st, resident=resident)
    be.create_index("f", dimensions=DIMS, metric=metric)
    be.create_metadata_index("f", "n", "number")
    be.insert("f", _lines(model))
    assert _row(st)["ann_file"] is not None
    return st, be


def _model(n: int, seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"v{i}": (scale * rng.standard_normal(DIMS)).astype(np.float32) for i in range(n)}


def _same_as_exact(be: LocalBackend, queries: list[np.ndarray], **kw: object) -> None:
    for q in queries:
        got = be.query("f", vector=q.tolist(), top_k=5, return_values=True, **kw)  # type: ignore[arg-type]
        want = be.query("f", vector=q.tolist(), top_k=5, return_values=True, exact=True, **kw)  # type: ignore[arg-type]
        assert got == want


def test_fits_says_what_float16_can_hold() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 8)).astype(np.float32)
    assert published.fits(v, "f16") and published.fits(v * 1e3, "f16")
    assert published.fits(np.zeros((3, 8), np.float32), "f16")  # zero rows are exact in float16
    big = v.copy()
    big[7, 3] = 70_000.0  # past float16's largest finite value
    assert not published.fits(big, "f16") and published.fits(big, "f32")
    tiny = v.copy()
    tiny[4] *= 1e-9  # float16 would flush this row to (almost) zero
    assert not published.fits(tiny, "f16")
    assert not published.fits(v * 1e-6, "f16")  # subnormal in float16: relative error far past the bound


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
@pytest.mark.parametrize("resident", [False, True])
def test_an_f16_file_answers_exactly_and_returns_sqlites_values(tmp_path, monkeypatch, metric, resident) -> None:
    model = _model(600, 1)
    st, be = _index(tmp_path, monkeypatch, model, metric, resident=resident)
    assert _scalar(st) == "f16"
    path = st.index_dir("f") / _row(st)["ann_file"]
    layout = usearch_file.layout_of(usearch_file.header(path))
    assert layout is not None and usearch_file.parse(path, layout).bytes_per_vector == 2 * DIMS
    queries = [model[f"v{i}"] for i in range(0, 600, 60)]
    _same_as_exact(be, queries)
    _same_as_exact(be, queries, filter={"n": {"$in": [1, 2, 3]}})  # filtered: shortlisted from the file
    got = be.query("f", vector=model["v5"].tolist(), top_k=3, return_values=True)
    hit = got["matches"][0]
    assert hit["id"] == "v5" and np.array_equal(np.asarray(hit["values"], np.float32), model["v5"])


def test_near_ties_in_a_float16_shortlist_are_never_lost(tmp_path, monkeypatch) -> None:
    """300 vectors within float16's precision of one another: a shortlist by float16 distances
    alone would keep an arbitrary 2k of them; the bounded one keeps every one that can win."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal(DIMS).astype(np.float32)
    model = {f"v{i}": (base + 1e-4 * rng.standard_normal(DIMS)).astype(np.float32) for i in range(300)}
    model.update({f"v{i}": rng.standard_normal(DIMS).astype(np.float32) for i in range(300, 600)})
    st, be = _index(tmp_path, monkeypatch, model, "euclidean")
    assert _scalar(st) == "f16"
    q = base + np.float32(2e-4)
    for flt in ({"n": {"$in": [0, 1, 2, 3]}}, {"n": {"$lt": 4}}):  # 240 candidates: scored exactly, from the file
        got = be.query("f", vector=q.tolist(), top_k=10, filter=flt)
        assert got == be.query("f", vector=q.tolist(), top_k=10, filter=flt, exact=True)
        ids = {m["id"] for m in got["matches"]}
        assert len(ids) == 10 and all(int(i[1:]) < 300 and int(i[1:]) % 10 < 4 for i in ids)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_the_bounded_shortlist_holds_the_true_top_k(metric) -> None:
    rng = np.random.default_rng(11)
    for trial in range(30):
        centre = rng.standard_normal(DIMS)
        v = (centre + rng.choice([1e-5, 1e-3, 1.0]) * rng.standard_normal((400, DIMS))).astype(np.float32)
        h = v.astype(np.float16)
        q = (centre + 1e-3 * rng.standard_normal(DIMS)).astype(np.float32)
        keys = np.arange(400, dtype=np.int64)
        k = int(rng.integers(1, 20))
        kept = set(search._bounded(metric, q, k, keys, h).tolist())
        d = search.distances(metric, q, v)
        kth = np.sort(d)[k - 1]
        assert set(np.flatnonzero(d <= kth).tolist()) <= kept, (trial, metric)  # every key that can tie is kept


def test_data_float16_cannot_hold_gets_an_f32_file(tmp_path, monkeypatch) -> None:
    model = _model(600, 2, scale=1e5)  # values past 65,504
    st, be = _index(tmp_path, monkeypatch, model, "euclidean")
    assert _scalar(st) == "f32"
    _same_as_exact(be, [model[f"v{i}"] for i in range(0, 600, 100)])


def test_a_merge_that_float16_cannot_hold_rebuilds_as_f32(tmp_path, monkeypatch) -> None:
    model = _model(600, 3)
    st, be = _index(tmp_path, monkeypatch, model, "euclidean")
    assert _scalar(st) == "f16"
    extra = {k: v for k, v in _model(700, 4).items() if int(k[1:]) >= 600}
    extra["v650"][3] = 70_000.0  # one value past float16's range
    be.insert("f", _lines(extra))
    row = _row(st)
    assert row["ann_max_key"] == 700 and _scalar(st) == "f32"  # merged in by a rebuild as f32
    model.update(extra)
    _same_as_exact(be, [model[f"v{i}"] for i in range(0, 700, 70)])


def test_vz_ann_dtype_f32_and_optimize_back_to_f16(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VZ_ANN_DTYPE", "f32")
    model = _model(600, 6)
    st, be = _index(tmp_path, monkeypatch, model)
    assert _scalar(st) == "f32"
    monkeypatch.delenv("VZ_ANN_DTYPE")
    extra = {k: v for k, v in _model(750, 7).items() if int(k[1:]) >= 600}
    be.insert("f", _lines(extra))
    assert _scalar(st) == "f32"  # a merge keeps its file's type
    assert be.optimize("f")["action"] == "rebuild"
    assert _scalar(st) == "f16"
    model.update(extra)
    _same_as_exact(be, [model[f"v{i}"] for i in range(0, 750, 75)])


def test_vz_ann_dtype_is_validated() -> None:
    assert ann_dtype({}) == "f16" and ann_dtype({"VZ_ANN_DTYPE": " F32 "}) == "f32"
    with pytest.raises(UsageError, match="VZ_ANN_DTYPE='f64' is invalid: expected f16 or f32"):
        ann_dtype({"VZ_ANN_DTYPE": "f64"})


def test_the_seal_refuses_a_float16_vector_off_by_more_than_the_bound(tmp_path, monkeypatch) -> None:
    model = _model(600, 8)
    st, _ = _index(tmp_path, monkeypatch, model)
    row = _row(st)
    path = st.index_dir("f") / row["ann_file"]
    s = published.read_seal(path, path.stat(), row)
    assert isinstance(s, published.Seal) and s.head["dtype"] == "f16"
    conn = sqlite3.connect(st.path / "catalog.sqlite3")
    published.seal(path, row, conn, max_key=row["ann_max_key"], seq=row["ann_seq"])  # as published: fine
    slot = int(s.slots[0])
    at = int(s.head["matrix_offset"]) + slot * 2 * DIMS
    with open(path, "r+b") as f:
        f.seek(at)
        h = np.frombuffer(f.read(2), np.float16)
        f.seek(at)
        f.write((h * np.float16(1.01)).tobytes())  # 1%: far past F16_EPS, as bit rot or a foreign writer
    with pytest.raises(published.SealError, match="not SQLite's within float16's precision"):
        published.seal(path, row, conn, max_key=row["ann_max_key"], seq=row["ann_seq"])


def test_a_streamed_build_float16_cannot_hold_ends_as_f32(tmp_path, monkeypatch) -> None:
    """A bulk insert streams its records to a builder process in float16; the block it cannot
    hold stops that builder, and the merge after the commit builds an f32 file instead."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("f", dimensions=DIMS, metric="cosine")
    model = _model(3000, 9)
    model["v2999"] *= np.float32(1e-9)  # the last block holds one vector float16 would flush to zero
    be.insert("f", _lines(model, meta=False))
    assert _row(st)["ann_nodes"] == 3000 and _scalar(st) == "f32"
    _same_as_exact(be, [model[f"v{i}"] for i in range(0, 3000, 500)])


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_exact_search_keeps_every_near_tie(tmp_path, monkeypatch, metric) -> None:
    """A float32 shortlist cut at 2k + 16 rows lost true matches among 300 vectors 1e-4 apart: at
    |v|^2 ~ 16, float32's rounding of |v|^2 - 2 v.q is larger than their differences. The bounded
    shortlist keeps them all, and exact search equals a float64 brute force."""
    from corehelp import ref_topk

    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")  # no ANN file: the exact path alone
    rng = np.random.default_rng(21)
    base = (4 * rng.standard_normal(DIMS)).astype(np.float32)
    model = {f"v{i}": (base + 1e-4 * rng.standard_normal(DIMS)).astype(np.float32) for i in range(300)}
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("f", dimensions=DIMS, metric=metric)
    be.insert("f", _lines(model, meta=False))
    ids, vecs = list(model), np.stack(list(model.values()))
    for shift in (2e-4, 1e-3, 0.5):
        q = base + np.float32(shift)
        got = be.query("f", vector=q.tolist(), top_k=10, exact=True)
        want = ref_topk(metric, q.tolist(), ids, vecs, 10)
        assert [(m["id"], m["score"]) for m in got["matches"]] == [(i, pytest.approx(s, rel=1e-12, abs=1e-15))
                                                                   for i, s in want]


def test_exact_search_over_thousands_of_identical_vectors_stays_small_and_ordered(tmp_path, monkeypatch) -> None:
    """6,000 copies of one vector all tie: the shortlist settles them exactly (distance, then the
    order they were written) instead of carrying them all, and the answer is deterministic."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    v = np.random.default_rng(4).standard_normal(DIMS).astype(np.float32)
    model = {f"v{i}": v for i in range(6000)}
    model["v6000"] = (v + np.float32(0.5)).astype(np.float32)
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("f", dimensions=DIMS, metric="euclidean")
    be.insert("f", _lines(model, meta=False))
    got = be.query("f", vector=v.tolist(), top_k=5, exact=True)
    assert [(m["id"], m["score"]) for m in got["matches"]] == [(f"v{i}", 0.0) for i in range(5)]
    far = be.query("f", vector=(v + np.float32(0.5)).tolist(), top_k=2, exact=True)
    assert [m["id"] for m in far["matches"]] == ["v6000", "v0"]


def test_a_resident_f16_index_scores_from_its_float32_copy(tmp_path, monkeypatch) -> None:
    """A long-lived backend reads the records of an f16 file from SQLite once; queries then score
    and return values from that copy, and the records written or deleted since (the delta, dead
    keys) are still answered from SQLite, exactly."""
    model = _model(600, 12)
    st, be = _index(tmp_path, monkeypatch, model, "euclidean", resident=True)
    be.query("f", vector=model["v1"].tolist(), top_k=3)
    (opened,) = [o for o in ann._OPEN.values() if o.fv is not None and o.fv.path.parent == st.index_dir("f")]
    fv = opened.fv
    assert fv.resident and fv.exact and fv.mat.dtype == np.float16 and fv.mat32 is not None
    hit, mat = fv.split(np.asarray(fv.keys[:50]))
    conn = sqlite3.connect(st.path / "catalog.sqlite3")
    stored = dict(conn.execute("SELECT key, vec FROM vectors"))
    assert hit.all() and [m.tobytes() for m in mat] == [stored[int(k)] for k in fv.keys[:50]]
    gone = ["v3", "v30", "v300"]
    be.delete_by_ids("f", gone)
    fresh = {k: v for k, v in _model(608, 13).items() if int(k[1:]) >= 600}
    be.upsert("f", _lines(fresh))
    for g in gone:
        del model[g]
    model.update(fresh)
    _same_as_exact(be, [model[k] for k in ("v1", "v4", "v601", "v607")] + [model["v2"] + 0.01])
    got = be.query("f", vector=_model(301, 12)["v300"].tolist(), top_k=5)
    assert "v300" not in {m["id"] for m in got["matches"]}


@pytest.mark.parametrize("spread", [1, 3, 50])
def test_key_lookup_with_and_without_the_direct_table(spread) -> None:
    rng = np.random.default_rng(spread)
    keys = np.unique(rng.integers(1, 1000 * spread, 1000)).astype(np.int64)
    fv = published.FileVectors(Path("x"), keys, np.arange(len(keys), dtype=np.int64),
                               np.zeros((len(keys), 2), np.float32))
    probe = np.concatenate([keys[::7], rng.integers(-5, 1000 * spread + 5, 300)]).astype(np.int64)
    want_hit = np.isin(probe, keys)
    pos, hit = fv.find(probe)
    fv._index_keys()
    assert (fv._table is not None) == (spread < published.DENSE_SPAN)
    pos2, hit2 = fv.find(probe)
    assert np.array_equal(hit, want_hit) and np.array_equal(hit2, want_hit)
    assert np.array_equal(pos[hit], pos2[hit2]) and np.array_equal(keys[pos2[hit2]], probe[hit2])
