"""Query execution: exact search, HNSW search, and the planner that picks between them.

Scores follow Cloudflare's docs (reference/vectorize-api.md §3): cosine similarity (higher is
better), L2 distance (lower is better), negative dot product (lower is better). Every returned
score is recomputed exactly from the stored float32 values, whichever path found the match.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vzcli import ann, published, walk
from vzcli.filters import Compiled
from vzcli.store import json_keys

CHUNK = 16384
SHORTLIST_MAX = 4096  # rows an exhaustive search carries between chunks before scoring them exactly
SMALL_EXACT = 512  # up to this many rows, scoring them all exactly costs less than shortlisting first


def distances(metric: str, q: np.ndarray, mat: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    """Lower is better for all metrics (cosine: -similarity), float64. `norms` (cosine): the rows'
    `row_norms`, computed ahead (a resident file's, `FileVectors.norms`); a fresh array, used up."""
    q64 = np.ascontiguousarray(q, dtype=np.float64)
    m64 = mat.astype(np.float64)  # a contiguous copy: BLAS takes every row whole
    # np.vecdot, not `m64 @ q64`: BLAS blocks a matrix product by batch, so a vector's score changed
    # in the last bit with the other rows scored beside it (an HNSW answer then differed from
    # --exact). vecdot makes one dot product (BLAS ddot, never threaded at these lengths) per
    # contiguous row, whatever rows are beside it (tests/test_lean_query.py checks it), and costs
    # a third of einsum's per-row reduction.
    if metric == "cosine":
        norms = row_norms(m64) if norms is None else norms
        norms *= math.sqrt(q64.dot(q64))
        sim = np.vecdot(m64, q64)
        if norms.all():
            sim /= norms
        else:  # a zero vector (or a zero query) has similarity 0 with everything
            with np.errstate(divide="ignore", invalid="ignore"):
                sim = np.where(norms > 0, sim / np.where(norms > 0, norms, 1.0), 0.0)
        np.maximum(sim, -1.0, out=sim)
        np.minimum(sim, 1.0, out=sim)
        return np.negative(sim, out=sim)
    if metric == "euclidean":
        diff = m64 - q64
        return np.sqrt(np.vecdot(diff, diff))
    return -np.vecdot(m64, q64)


def row_norms(m64: np.ndarray) -> np.ndarray:
    """The Euclidean norm of each row of a float64 matrix, as `distances` computes it."""
    return np.sqrt(np.vecdot(m64, m64))


def score_of(metric: str, dist: float) -> float:
    return -dist if metric == "cosine" else dist


@dataclass(slots=True)
class Plan:
    """What the planner decided, for `--explain`-style diagnostics and the benchmarks."""

    path: str  # "exact", "hnsw", "hnsw+exact-delta", "empty"
    candidates: int | None = None
    fetched: int = 0
    trusted: bool = False  # HNSW keys used without a liveness check (see `search`)
    fv: ann.FileVectors | None = None  # the ANN file's vectors, when the query used them


def _cond(index_id: int, namespace: str | None, comp: Compiled | None, *, drive: bool,
          by_key: bool = False) -> tuple[str, list[Any]]:
    """WHERE conditions on `vectors v`.

    `by_key`: the caller restricts `v.key` itself (a range or a key list), so the unary `+` keeps
    SQLite from scanning the (index_id, namespace) index instead: that would cost O(index size).
    With a metadata driver (`v.key IN (SELECT ... FROM mvals)`) the same holds.
    """
    plain = not by_key and not (drive and comp is not None and comp.driver)
    plus = "" if plain else "+"
    parts: list[str] = [f"{plus}v.index_id = ?"]
    params: list[Any] = [index_id]
    if namespace is not None:
        parts.append(f"{plus}v.namespace = ?")
        params.append(namespace)
    if comp is not None:
        w, p = comp.where(drive=drive)
        parts.append(w)
        params.extend(p)
    return " AND ".join(parts), params


def _rough(metric: str, q: np.ndarray, mat: np.ndarray, eps: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Distances to shortlist candidates by, and a bound on each one's error: the exact distance
    of row i (or, plus a constant, its square for euclidean) lies within d[i] +- b[i].

    Computed in float32 (the rows' own type or wider); b covers float32's rounding (dot products
    err by at most ~dims * 2^-24 of |m| |q|; this allows twice that) and, with `eps` > 0, rows
    that stand for true vectors v within eps * |v| of them (a float16 file): euclidean
    | |v-q| - |m-q| | <= |v-m| <= e|m|; dot |v.q - m.q| <= e|m||q|; cosine: the unit vectors of v
    and m differ by at most 2 eps, so their cosines with q do too (e = eps / (1 - eps)). Where
    float32 would overflow or flush a norm, the same is done in float64.
    """
    dims = mat.shape[1]
    e = eps / (1 - eps)
    d: Any = None
    ftype: Any
    for ftype, unit in ((np.float32, 2.0 ** -24), (np.float64, 2.0 ** -53)):
        g = 2.0 * (dims + 2) * unit
        m: Any = mat.astype(ftype, copy=False)
        qq: Any = q.astype(ftype, copy=False)
        flushed: Any
        with np.errstate(all="ignore"):
            dots = m @ qq
            mn = np.sqrt(np.einsum("ij,ij->i", m, m))
            qn = ftype(math.sqrt(float(q.astype(np.float64) @ q.astype(np.float64))))
            if metric == "cosine":
                den = mn * qn
                d = -dots / np.where(den > 0, den, ftype(1.0))
                b = np.full(len(d), 4 * g + 2 * e, dtype=ftype)
                small = mn < 1e-18  # float32 squares flush below this: a nonzero row would score as zero
                flushed = bool(small.any() and (mat[small] != 0).any()) or bool(0 < qn < 1e-18)
            elif metric == "euclidean":
                d = mn * mn - 2 * dots  # |m - q|^2 - |q|^2: the constant does not change the order
                b = g * (mn * mn + 2 * mn * qn)
                if e:
                    dm = np.sqrt(np.maximum(d + qn * qn, 0))
                    b = b + e * mn * (2 * dm + e * mn)
                flushed = False
            else:
                d = -dots
                b = (g + e) * mn * qn
                flushed = False
        if not flushed and np.isfinite(d).all() and np.isfinite(b).all():
            return d, b
    return d, np.full(len(d), np.inf)  # beyond float64 too: keep every row, the exact scores decide


def _within(d: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Mask of the rows that can be among the k best: those whose lowest possible distance does
    not exceed the k-th smallest highest possible one (however many tie)."""
    if len(d) <= k:
        return np.ones(len(d), dtype=bool)
    worst = np.partition(d + b, k - 1)[k - 1]
    return (d - b) <= worst


def _topk(metric: str, q: np.ndarray, k: int, chunks: Iterator[tuple[np.ndarray, np.ndarray]],
          dims: int) -> list[tuple[float, int]]:
    """Exhaustive top-k over (keys, float32 matrix) chunks: a bounded float32 shortlist (`_rough`),
    then exact float64 scores. The shortlist keeps every row that can be in the top k: a cluster
    of near-ties stays whole instead of being cut at an arbitrary margin."""
    best_keys = np.empty(0, dtype=np.int64)
    best_mat = np.empty((0, dims), dtype=np.float32)
    q32 = q.astype(np.float32)
    for keys, mat in chunks:
        if len(best_keys):
            keys = np.concatenate([best_keys, keys])
            mat = np.concatenate([best_mat, mat])
        if len(keys) > max(k, SMALL_EXACT):
            keep = _within(*_rough(metric, q32, mat), k)
            keys, mat = keys[keep], mat[keep]
        if len(keys) > SHORTLIST_MAX:  # that many near-ties (duplicates): settle them exactly now
            order = np.lexsort((keys, distances(metric, q, mat)))[:k]  # the final order: distance, then key
            keys, mat = keys[order], mat[order]
        best_keys, best_mat = keys, mat
    if not len(best_keys):
        return []
    d = distances(metric, q, best_mat)
    order = np.lexsort((best_keys, d))[:k]  # by distance, then key: `sorted` of the pairs, in C
    return list(zip(d[order].tolist(), best_keys[order].tolist(), strict=True))


def _sql_chunks(cur: sqlite3.Cursor, dims: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, matrix) chunks from a cursor over (key, vec) rows."""
    while True:
        rows = cur.fetchmany(CHUNK)
        if not rows:
            return
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        yield keys, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)


def _by_keys(conn: sqlite3.Connection, keys: list[int], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of `keys` from SQLite (missing keys are left out)."""
    rows = conn.execute("SELECT key, vec FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                        (json_keys(keys),)).fetchall()
    ks = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    return ks, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)


def _file_chunks(conn: sqlite3.Connection, fv: ann.FileVectors, cur: sqlite3.Cursor, dims: int,
                 metric: str, q: np.ndarray, k: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(keys, float32 matrix) chunks for a cursor over candidate keys: vectors from the ANN file,
    the rest (the delta, written after the file) from SQLite. From a float16 file, only the keys
    that can be among the top `k` (`_bounded`) are yielded, with SQLite's vectors."""
    while True:
        rows = cur.fetchmany(CHUNK)
        if not rows:
            return
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        hit, mat = fv.split(keys)
        if len(mat):
            if fv.exact:
                yield keys[hit], mat
            else:
                yield _by_keys(conn, _bounded(metric, q, k, keys[hit], mat).tolist(), dims)
        if not hit.all():
            yield _by_keys(conn, keys[~hit].tolist(), dims)


def _bounded(metric: str, q: np.ndarray, k: int, keys: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The `keys` that can be among the top `k` of these candidates, given their float16 vectors
    `h`, each within F16_EPS of its float32 vector (the seal proved it)."""
    if len(keys) <= k:
        return keys
    return keys[_within(*_rough(metric, q.astype(np.float32), h, published.F16_EPS), k)]


def _exact(conn: sqlite3.Connection, metric: str, q: np.ndarray, k: int, where: str, params: list[Any],
           dims: int, fv: ann.FileVectors | None = None, keys_sql: tuple[str, list[Any]] | None = None,
           ) -> list[tuple[float, int]]:
    """Exhaustive top-k over the rows `where` selects (or the keys `keys_sql` lists).

    With the index's file vectors (`fv`), only keys are read from SQLite; the vectors of keys in
    the file come from its mapping, which costs a fraction of reading each row's BLOB.
    """
    if fv is None:
        cur = conn.execute(f"SELECT v.key, v.vec FROM vectors v WHERE {where}", params)
        return _topk(metric, q, k, _sql_chunks(cur, dims), dims)
    sql, sparams = keys_sql if keys_sql is not None else (f"SELECT v.key FROM vectors v WHERE {where}", params)
    return _topk(metric, q, k, _file_chunks(conn, fv, conn.execute(sql, sparams), dims, metric, q, k), dims)


def dead_among(conn: sqlite3.Connection, index_id: int, keys: list[int]) -> set[int]:
    """The `keys` deleted since the index's ANN file was built (they may still be in the file)."""
    if not keys:
        return set()
    return {k for (k,) in conn.execute("SELECT key FROM dead_keys WHERE index_id = ? AND key IN "
                                       "(SELECT value FROM json_each(?))", (index_id, json_keys(keys)))}


def _live_matching(conn: sqlite3.Connection, keys: list[int], where: str, params: list[Any]) -> set[int]:
    if not keys:
        return set()
    sql = f"SELECT v.key FROM vectors v WHERE v.key IN (SELECT value FROM json_each(?)) AND {where}"
    return {k for (k,) in conn.execute(sql, [json_keys(keys), *params])}


def exact_cap(k: int, live: int) -> int:
    """Up to this many candidates, exact search costs about what HNSW does (usearch-notes §6)."""
    return max(256, int(2 * math.sqrt(k * max(live, 1))))


def hnsw_pays(k: int, live: int) -> bool:
    """Whether an unfiltered top-`k` over `live` records should search the HNSW file at all."""
    return live > exact_cap(k, live)


def open_for_query(conn: sqlite3.Connection, row: dict[str, Any], index_dir: Path, *,
                   resident: bool) -> ann.Opened | None:
    """The index's published file, ready to search (made resident for a long-lived process);
    None when it must not be used: the query then searches SQLite exactly."""
    opened = ann.open_file(ann.file_path(index_dir, row["ann_file"]), row,
                           walk=not resident and ann.walk_pays(row["ann_nodes"], row["expansion_search"]))
    if opened is not None and resident and opened.fv is not None:
        if not opened.fv.make_resident(conn, row, ann.info_donor(opened.fv)):
            return None  # the file changed since it was sealed: neither score from it nor search it
        ann.in_memory(opened, row)
    return opened


def resident_top(opened: ann.Opened, row: dict[str, Any], q: np.ndarray, k: int,
                 held: tuple[np.ndarray, np.ndarray] | None) -> list[tuple[float, int, int]] | None:
    """`search` of an unfiltered query, cut to what a resident process needs when no key of the
    file was deleted since it was built (the caller checks): the top-k (distance, key, position in
    the file; -1 - i for row i of the `held` records newer than it), best first. The same candidates (2k from
    usearch at the same count) scored by the same `distances` as `search`, without its planning,
    liveness checks or key lookups per step: the per-query path of `vz serve` and the library.
    None when the file cannot answer so (not resident, or a key it does not hold): use `search`."""
    fv = opened.fv
    if fv is None or not fv.resident or isinstance(opened.view, walk.Walker):
        return None
    count = max(k + 8, 2 * k)  # `search`'s count with every node alive
    with opened.lock:
        m = opened.view.search(q, count, threads=1)
    keys = m.keys[: 2 * k].astype(np.int64)
    pos = fv.lookup(keys)
    if pos is None:
        return None
    mat = fv.mat32.take(pos, axis=0) if fv.mat32 is not None else fv.mat[fv.slots[pos]]
    norms = None
    if held is not None:
        keys, mat = np.concatenate([keys, held[0]]), np.concatenate([mat, held[1]])
        pos = np.concatenate([pos, -1 - np.arange(len(held[0]), dtype=pos.dtype)])
    elif row["metric"] == "cosine":
        norms = fv.norms(row_norms).take(pos)
    d = distances(row["metric"], q, mat, norms)
    return sorted(zip(d.tolist(), keys.tolist(), pos.tolist(), strict=True))[:k]


def all_delta(row: dict[str, Any]) -> bool:
    """No ANN file and nothing ever in one: every record of the index is newer than "the file"
    (`Snapshot.delta` then holds the whole index)."""
    return row["ann_file"] is None and row["ann_max_key"] == 0


def held_top(row: dict[str, Any], q: np.ndarray, k: int,
             held: tuple[np.ndarray, np.ndarray]) -> list[tuple[float, int, int]]:
    """The top-k of an index without a file from every record a resident reader holds (keys in
    ascending order): (distance, key, -1 - row), best first, as `resident_top` gives them; the
    same `_topk` as `search`'s answer from the same rows."""
    top = _topk(row["metric"], q, k, iter([held]), row["dimensions"])
    rows = np.searchsorted(held[0], np.asarray([key for _, key in top], dtype=np.int64)).tolist()
    return [(d, key, -1 - r) for (d, key), r in zip(top, rows, strict=True)]


def search(conn: sqlite3.Connection, row: dict[str, Any], index_dir: Path, q: np.ndarray, k: int,
           namespace: str | None, comp: Compiled | None, *, exact: bool = False,
           recheck: bool = False, resident: bool = False, no_delta: bool = False,
           delta_rows: tuple[np.ndarray, np.ndarray] | None = None,
           opener: Callable[[], ann.Opened | None] | None = None,
           ) -> tuple[list[tuple[float, int]], Plan]:
    """Top-k (distance, key) pairs, best first, using the cheapest path that meets the recall goal.

    When `plan.trusted` is set, the keys were taken from the HNSW file without asking SQLite
    whether they are still live (no deletes since the file was built): a caller that then finds
    a key missing must search again with `recheck=True`. `no_delta`: the caller knows that no
    record is newer than the file (see `snapshot.Snapshot`), so the delta's exact search is skipped;
    `delta_rows`: the caller holds those records' (keys, vectors) (an unfiltered query only): all
    of the index's when it has no file (`ann_max_key` 0);
    `opener`: what gives the index's file (`open_for_query`, kept by a resident caller).
    """
    metric, dims, index_id = row["metric"], row["dimensions"], row["id"]
    if comp is not None and comp.never:
        return [], Plan("empty", 0)
    live = row["vector_count"]
    if live == 0:
        return [], Plan("empty", 0)
    restricted = namespace is not None or comp is not None
    opened = None
    # below the size where HNSW pays (the planner's own cap), exact is as cheap and never misses
    if not exact and row["ann_file"] is not None and (restricted or hnsw_pays(k, live)):
        opened = opener() if opener is not None else open_for_query(conn, row, index_dir, resident=resident)

    def exact_answer() -> tuple[list[tuple[float, int]], Plan]:
        where, params = _cond(index_id, namespace, comp, drive=True)
        return _exact(conn, metric, q, k, where, params, dims), Plan("exact")

    if opened is None:
        if all_delta(row) and delta_rows is not None and not restricted:
            return _topk(metric, q, k, iter([delta_rows]), dims), Plan("exact")  # the caller holds every record
        return exact_answer()
    view, fv = opened.view, opened.fv
    max_key = row["ann_max_key"]
    pwhere, pparams = _cond(index_id, namespace, comp, drive=False, by_key=True)
    # Records newer than the file (the delta) are always searched exactly.
    # (plain `v.index_id = ?` first: index vectors_key walks this index's delta only, never the keys
    # of indexes created later)
    held = None  # a small held delta, scored below in one pass with the search's candidates
    if no_delta:
        delta: list[tuple[float, int]] = []
    elif delta_rows is not None and not restricted:
        if fv is not None and fv.resident and fv.exact and 0 < len(delta_rows[0]) <= SMALL_EXACT:
            delta, held = [], delta_rows
        else:
            delta = _topk(metric, q, k, iter([delta_rows]), dims) if len(delta_rows[0]) else []
    else:
        delta = _exact(conn, metric, q, k, f"v.index_id = ? AND v.key > ? AND {pwhere}",
                       [index_id, max_key, *pparams], dims)

    plan = Plan("hnsw", fv=fv)
    # one positive clause and no namespace: the metadata index alone lists the (live) candidates
    by_driver = namespace is None and comp is not None and comp.driver_only
    if restricted:
        cap = exact_cap(k, live)
        cwhere, cparams = _cond(index_id, namespace, comp, drive=True)
        if by_driver:
            assert comp is not None and comp.driver is not None
            n_c = conn.execute(f"SELECT count(*) FROM ({comp.driver} LIMIT ?)",
                               [*comp.driver_params, cap + 1]).fetchone()[0]
        else:
            n_c = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM vectors v WHERE {cwhere} LIMIT ?)",
                               [*cparams, cap + 1]).fetchone()[0]
        plan.candidates = n_c
        if n_c <= cap:
            plan.path = "exact"
            return _exact_candidates(conn, metric, q, k, comp, cwhere, cparams, dims, fv, by_driver), plan
    nodes = max(row["ann_nodes"], 1)
    alive_frac = max(nodes - row["ann_dead"], 1) / nodes
    # restricted: N_c > cap, so start wide enough that ~k matches usually come back in one pass
    # usearch searches with ef = max(expansion_search, count): at least 2k follows a large top-k
    count = max(12 * k, 128) if restricted else max(int(math.ceil(k / alive_frac)) + 8, 2 * k)
    # With no deletes since the file was built and no filter, every HNSW key is live: skip the check.
    plan.trusted = not restricted and row["ann_dead"] == 0 and not recheck
    found: list[tuple[float, int]] = []
    while True:
        # usearch searches with ef = max(expansion_search, count): no need to mutate the shared view
        if isinstance(view, walk.Walker) and not ann.walk_pays(nodes, max(view.expansion_search, count)):
            # a wide search (a selective filter): usearch's open plus its search now cost less
            opened = ann.open_file(ann.file_path(index_dir, row["ann_file"]), row)
            if opened is None:
                return exact_answer()
            view = opened.view
        try:
            with opened.lock:
                m = view.search(q, count, threads=1)
        except walk.Unusable:  # the file's graph is not what its seal says: answer from SQLite
            return exact_answer()
        keys = m.keys.tolist()
        plan.fetched = len(keys)
        if plan.trusted:
            found = list(zip(m.distances.tolist(), keys, strict=True))
        else:
            if not restricted:
                # a key of the file is live unless it is listed dead (deleted since the file was built)
                ok = set(keys) - dead_among(conn, index_id, keys)
            elif by_driver:
                assert comp is not None
                ok = {key for (key,) in conn.execute(
                    f"{comp.driver} AND m.key IN (SELECT value FROM json_each(?))",
                    [*comp.driver_params, json_keys(keys)])}
            else:
                ok = _live_matching(conn, keys, pwhere, pparams)
            found = [(d, key) for d, key in zip(m.distances.tolist(), keys, strict=True) if key in ok]
        if len(found) >= k or len(keys) < count or count >= nodes:
            break
        if restricted:
            frac = max(len(found) / max(len(keys), 1), 1.0 / nodes)
            nxt = int(math.ceil(2 * k / frac))
            count = max(count * 4, nxt)
            if count > nodes // 2:
                plan.path = "exact"
                cwhere, cparams = _cond(index_id, namespace, comp, drive=True)
                return _exact_candidates(conn, metric, q, k, comp, cwhere, cparams, dims, fv, by_driver), plan
        else:
            count *= 4
    if delta or held is not None:
        plan.path = "hnsw+exact-delta"
    # usearch distances only pick candidates: their scores are recomputed exactly here. Delta
    # records already carry exact scores.
    cand = [key for _, key in found[: k * 2]]
    result = rescore(conn, row, q, cand, fv if fv is not None and fv.resident and fv.exact else None, held)
    delta_keys = {key for _, key in delta}
    merged = sorted([h for h in result if h[1] not in delta_keys] + delta)
    return merged[:k], plan


def _exact_candidates(conn: sqlite3.Connection, metric: str, q: np.ndarray, k: int, comp: Compiled | None,
                      cwhere: str, cparams: list[Any], dims: int, fv: ann.FileVectors | None,
                      by_driver: bool) -> list[tuple[float, int]]:
    keys_sql = None
    if by_driver and fv is not None:
        assert comp is not None and comp.driver is not None
        keys_sql = (comp.driver, list(comp.driver_params))
    return _exact(conn, metric, q, k, cwhere, cparams, dims, fv, keys_sql)


def rescore(conn: sqlite3.Connection, row: dict[str, Any], q: np.ndarray, keys: list[int],
            fv: ann.FileVectors | None = None,
            more: tuple[np.ndarray, np.ndarray] | None = None) -> list[tuple[float, int]]:
    """Exact (distance, key) of `keys`, best first: from the file's vectors when given (exact
    ones: `fv.exact`), else SQLite; with the (keys, vectors) `more` scored in the same pass."""
    if not keys and more is None:
        return []
    arr = np.asarray(keys, dtype=np.int64)
    if fv is not None:
        hit, mat = fv.split(arr)
        if not hit.all():  # not in this file (cannot happen for its own search results): use SQLite
            ks, extra = _by_keys(conn, arr[~hit].tolist(), row["dimensions"])
            arr, mat = np.concatenate([arr[hit], ks]), np.concatenate([mat, extra])
    else:
        arr, mat = _by_keys(conn, keys, row["dimensions"])
    if more is not None:
        arr, mat = np.concatenate([arr, more[0]]), np.concatenate([mat, more[1]])
    if not len(arr):
        return []
    d = distances(row["metric"], q, mat)
    return sorted(zip(d.tolist(), arr.tolist(), strict=True))
