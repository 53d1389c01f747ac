"""The query planner against brute force, for random filters of random selectivity.

One index of 630 vectors (8 dims) with five metadata indexes, built with a small merge threshold so
that it has an HNSW file, dead nodes (upserts, deletes) and a delta; one metadata index is created
halfway, so half the vectors are not covered by it. Every query runs through `LocalBackend.query`
and is compared with numpy distances over the vectors for which `vzcli.filters.evaluate` holds:
exact on the exact path (and with `exact=True`), recall >= 0.9 on the HNSW path, and fewer than
top-k results only when fewer vectors match. VZ_HYPOTHESIS_EXAMPLES=2000 makes it a soak test.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vzcli import search
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.filters import compile_filter, evaluate, extract, parse_filter, to_index_value
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 8
CATS = ["a", "b", "c", "d", "e"]
TYPES = {"cat": "string", "num": "number", "flag": "boolean", "nest.v": "number"}
LATE = ("tag", "string")  # created after the first 300 vectors, without --backfill


@dataclass
class Model:
    metric: str
    backend: LocalBackend
    vecs: dict[str, np.ndarray] = field(default_factory=dict)
    ns: dict[str, str | None] = field(default_factory=dict)
    indexed: dict[str, dict[str, Any]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)


def _metadata(rng: np.random.Generator) -> dict[str, Any]:
    md: dict[str, Any] = {}
    r = rng.random()
    if r < 0.85:  # skewed: "a" is common, "e" rare
        md["cat"] = CATS[min(int(rng.exponential(1.2)), 4)]
    elif r < 0.9:
        md["cat"] = 7  # wrong type: never indexed
    n = rng.random()
    if n < 0.8:
        md["num"] = int(rng.integers(0, 100)) if rng.random() < 0.7 else round(float(rng.uniform(0, 100)), 2)
    elif n < 0.85:
        md["num"] = "12"
    if rng.random() < 0.7:
        md["flag"] = bool(rng.random() < 0.6)
    md["tag"] = f"t{int(rng.integers(0, 200)):03d}"
    if rng.random() < 0.5:
        md["nest"] = {"v": float(rng.normal())}
    return md


def _write(m: Model, rng: np.random.Generator, ids: list[str], *, upsert: bool) -> None:
    lines = []
    for vid in ids:
        vec = rng.normal(size=DIMS).astype(np.float32)
        ns = "ns1" if rng.random() < 0.7 else ("ns2" if rng.random() < 0.7 else None)
        md = _metadata(rng)
        rec: dict[str, Any] = {"id": vid, "values": vec.tolist(), "metadata": md}
        if ns:
            rec["namespace"] = ns
        lines.append(json.dumps(rec))
        if upsert or vid not in m.vecs:
            m.vecs[vid], m.ns[vid] = vec, ns
            m.indexed[vid] = {p: iv for p, t in m.types.items()
                              if (iv := to_index_value(extract(md, p), t)) is not None}
    data = io.BytesIO(("\n".join(lines) + "\n").encode())
    (m.backend.upsert if upsert else m.backend.insert)("h", data)


def _build(root, metric: str) -> Model:
    rng = np.random.default_rng(2024)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VZ_MERGE_THRESHOLD", "100")
        b = LocalBackend(Store(root))
        b.create_index("h", dimensions=DIMS, metric=metric)
        m = Model(metric, b)
        for p, t in TYPES.items():
            b.create_metadata_index("h", p, t)
            m.types[p] = t
        _write(m, rng, [f"v{i:04d}" for i in range(300)], upsert=False)
        b.create_metadata_index("h", *LATE)
        m.types[LATE[0]] = LATE[1]
        _write(m, rng, [f"v{i:04d}" for i in range(300, 600)], upsert=False)
        _write(m, rng, [f"v{i:04d}" for i in rng.choice(600, 60, replace=False)], upsert=True)
        gone = [f"v{i:04d}" for i in rng.choice(600, 40, replace=False)]
        b.delete_by_ids("h", gone)
        for vid in gone:
            for d in (m.vecs, m.ns, m.indexed):
                d.pop(vid, None)
        _write(m, rng, [f"w{i:04d}" for i in range(30)], upsert=False)  # below the threshold: the delta
    with b.store.read() as conn:
        row = dict(zip([c[0] for c in conn.execute("SELECT * FROM indexes").description],
                       conn.execute("SELECT * FROM indexes").fetchone(), strict=True))
        max_key = conn.execute("SELECT max(key) FROM vectors").fetchone()[0]
    assert row["ann_file"] is not None and row["ann_max_key"] < max_key and row["vector_count"] == len(m.vecs)
    return m


@pytest.fixture(scope="module", params=["cosine", "euclidean"])
def model(request, tmp_path_factory) -> Model:
    return _build(tmp_path_factory.mktemp("planner") / "s", request.param)


# --- random filters -------------------------------------------------------------------------------

OTHER = st.sampled_from([True, False, 7, "x", 12.0])
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "cat": st.sampled_from(CATS + ["zz"]),
    "num": st.one_of(st.integers(-5, 105), st.floats(-5, 105, allow_nan=False).map(lambda x: round(x, 1))),
    "flag": st.booleans(),
    "tag": st.integers(0, 210).map(lambda i: f"t{i:03d}"),
    "nest.v": st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 2)),
    "zzz": st.integers(0, 3),  # no metadata index: matches nothing
}
RANGE: dict[str, st.SearchStrategy[Any]] = {
    "cat": st.sampled_from(["a", "b", "bz", "c", "d", "e", "f", ""]),
    "num": VALUES["num"],
    "flag": st.sampled_from([0, 1, "a"]),
    "tag": VALUES["tag"],
    "nest.v": VALUES["nest.v"],
    "zzz": st.integers(0, 3),
}


def _clause(prop: str) -> st.SearchStrategy[Any]:
    scalar = st.one_of(VALUES[prop], VALUES[prop], st.none(), OTHER)
    lower = st.tuples(st.sampled_from(["$gt", "$gte"]), RANGE[prop])
    upper = st.tuples(st.sampled_from(["$lt", "$lte"]), RANGE[prop])
    ranges = st.one_of(
        lower.map(lambda t: {t[0]: t[1]}), upper.map(lambda t: {t[0]: t[1]}),
        st.tuples(lower, upper).map(lambda t: {t[0][0]: t[0][1], t[1][0]: t[1][1]}))
    return st.one_of(
        scalar, scalar.map(lambda v: {"$eq": v}), scalar.map(lambda v: {"$ne": v}),
        st.lists(scalar, max_size=5).map(lambda xs: {"$in": xs}),
        st.lists(scalar, max_size=5).map(lambda xs: {"$nin": xs}), ranges)


PROPS = st.lists(st.sampled_from(["cat", "cat", "num", "num", "flag", "tag", "nest.v", "zzz"]),
                 min_size=1, max_size=3, unique=True)
RANDOM = PROPS.flatmap(lambda ps: st.fixed_dictionaries({p: _clause(p) for p in ps}))
# Random clauses are mostly selective; these match most vectors, so the planner takes HNSW with a
# post-filter (more candidates than 2*sqrt(k*N)), alone or narrowed by a random clause.
BROAD = st.one_of(
    st.sampled_from(CATS).map(lambda c: {"cat": {"$ne": c}}),
    st.lists(st.sampled_from(CATS), max_size=2).map(lambda cs: {"cat": {"$nin": cs}}),
    st.integers(0, 30).map(lambda lo: {"num": {"$gte": lo}}),
    st.integers(60, 101).map(lambda hi: {"num": {"$lt": hi}}),
    st.just({"flag": {"$in": [True, False]}}),
    st.just({"flag": {"$ne": None}}),
    st.just({"tag": {"$gte": "t000"}}),
)
FILTERS = st.one_of(RANDOM, BROAD, st.tuples(BROAD, RANDOM).map(lambda t: {**t[1], **t[0]}))


def _brute(m: Model, q: np.ndarray, raw: dict[str, Any] | None, ns: str | None, k: int) -> tuple[list[str], list[float], int]:
    flt = parse_filter(raw) if raw is not None else None
    ids = [v for v in sorted(m.vecs) if (ns is None or m.ns[v] == ns)
           and (flt is None or evaluate(flt, m.indexed[v], m.types))]
    if not ids:
        return [], [], 0
    mat = np.stack([m.vecs[v] for v in ids]).astype(np.float64)
    d = search.distances(m.metric, q, mat)
    order = np.argsort(d, kind="stable")[:k]
    return [ids[i] for i in order], [float(d[i]) for i in order], len(ids)


def _plan_path(m: Model, q: np.ndarray, raw: dict[str, Any] | None, ns: str | None, k: int) -> str:
    store = m.backend.store
    with store.read() as conn:
        cur = conn.execute("SELECT * FROM indexes WHERE name = 'h'")
        row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
        comp = compile_filter(parse_filter(raw), _meta_indexes(conn, row["id"])) if raw is not None else None
        _, plan = search.search(conn, row, store.index_dir("h"), q.astype(np.float32), k, ns, comp)
    return plan.path


def test_planner_matches_brute_force(model: Model) -> None:
    stats = {"paths": set(), "hits": 0, "total": 0}

    @settings(max_examples=int(os.environ.get("VZ_HYPOTHESIS_EXAMPLES", "70")), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(seed=st.integers(0, 2**32 - 1), raw=st.one_of(st.none(), FILTERS, FILTERS, FILTERS),
           ns=st.sampled_from([None, None, "ns1", "ns2", "ns3"]), k=st.sampled_from([1, 3, 10, 20, 50]))
    def check(seed: int, raw: dict[str, Any] | None, ns: str | None, k: int) -> None:
        q = np.random.default_rng(seed).normal(size=DIMS).astype(np.float32)
        exp_ids, exp_d, n_match = _brute(model, q, raw, ns, k)
        path = _plan_path(model, q, raw, ns, k)
        stats["paths"].add((path, raw is not None))
        warnings: list[str] = []
        for exact in (True, False):
            res = model.backend.query("h", vector=q.tolist(), top_k=k, namespace=ns, filter=raw, exact=exact,
                                      warn=warnings.append)
            got = [mm["id"] for mm in res["matches"]]
            assert res["count"] == len(got)
            # fewer than top-k only when fewer vectors match
            assert len(got) == min(k, n_match), (path, exact, len(got), n_match)
            # everything returned is live, in the namespace, and passes the filter
            for vid in got:
                assert vid in model.vecs
                assert ns is None or model.ns[vid] == ns
                if raw is not None:
                    assert evaluate(parse_filter(raw), model.indexed[vid], model.types)
            if exact or path == "exact":
                assert got == exp_ids, (path, exact)
            elif got:
                stats["hits"] += len(set(got) & set(exp_ids))
                stats["total"] += len(exp_ids)
                # an ANN miss can only make the answer worse, never better, at any rank
                dist = search.distances(model.metric, q, np.stack([model.vecs[v] for v in got]))
                assert all(dist[i] >= exp_d[i] - 1e-12 for i in range(len(got)))
        if raw is not None and "zzz" in raw:
            assert any("'zzz' has no metadata index" in w for w in warnings)

    check()
    # both the exact path and HNSW + post-filter ran on filtered queries
    assert ("exact", True) in stats["paths"], stats["paths"]
    assert stats["paths"] & {("hnsw", True), ("hnsw+exact-delta", True)}, stats["paths"]
    if stats["total"]:
        assert stats["hits"] / stats["total"] >= 0.9, stats
