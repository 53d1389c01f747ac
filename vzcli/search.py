"""Query execution: exact search, HNSW search, and the planner that picks between them.

Scores follow Cloudflare's docs (reference/vectorize-api.md §3): cosine similarity (higher is
better), L2 distance (lower is better), negative dot product (lower is better). Every returned
score is recomputed exactly from the stored float32 values, whichever path found the match.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vzcli import ann
from vzcli.filters import Compiled


def distances(metric: str, q: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Lower is better for all metrics (cosine: -similarity), float64."""
    q64 = q.astype(np.float64)
    m64 = mat.astype(np.float64)
    # einsum, not `m64 @ q64`: BLAS blocks the product by batch, so a vector's score changed in the
    # last bit with the other rows scored beside it (an HNSW answer then differed from --exact).
    # einsum reduces each row on its own, and is no slower.
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", m64, m64)) * np.linalg.norm(q64)
        dots = np.einsum("ij,j->i", m64, q64)
        with np.errstate(divide="ignore", invalid="ignore"):
            sim = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
        return -np.clip(sim, -1.0, 1.0)
    if metric == "euclidean":
        diff = m64 - q64
        return np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return -np.einsum("ij,j->i", m64, q64)


def score_of(metric: str, dist: float) -> float:
    return -dist if metric == "cosine" else dist


@dataclass(slots=True)
class Plan:
    """What the planner decided, for `--explain`-style diagnostics and the benchmarks."""

    path: str  # "exact", "hnsw", "hnsw+exact-delta", "empty"
    candidates: int | None = None
    fetched: int = 0


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


def _rough(metric: str, q: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """float32 distances, only to shortlist candidates; the shortlist is then scored by `distances`.

    Values near float32's limits overflow here; then the chunk is ranked in float64 instead.
    """
    with np.errstate(all="ignore"):
        dots = mat @ q
        if metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", mat, mat)) * np.float32(np.linalg.norm(q))
            out = -dots / np.where(norms > 0, norms, np.float32(1.0))
        elif metric == "euclidean":
            out = np.einsum("ij,ij->i", mat, mat) - 2 * dots
        else:
            out = -dots
    return out if np.isfinite(out).all() else distances(metric, q, mat)


def _exact(conn: sqlite3.Connection, metric: str, q: np.ndarray, k: int, where: str, params: list[Any],
           dims: int) -> list[tuple[float, int]]:
    """Exhaustive top-k over the rows `where` selects: a float32 shortlist, then exact float64 scores."""
    cur = conn.execute(f"SELECT v.key, v.vec FROM vectors v WHERE {where}", params)
    keep = 2 * k + 16  # shortlist margin: float32 rounding can only swap near-ties
    best_keys = np.empty(0, dtype=np.int64)
    best_mat = np.empty((0, dims), dtype=np.float32)
    q32 = q.astype(np.float32)
    while True:
        rows = cur.fetchmany(16384)
        if not rows:
            break
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dims)
        if len(best_keys):
            keys = np.concatenate([best_keys, keys])
            mat = np.concatenate([best_mat, mat])
        if len(keys) > keep:
            part = np.argpartition(_rough(metric, q32, mat), keep - 1)[:keep]
            keys, mat = keys[part], mat[part]
        best_keys, best_mat = keys, mat
    if not len(best_keys):
        return []
    d = distances(metric, q, best_mat)
    out = sorted(zip(d.tolist(), best_keys.tolist(), strict=True))
    return out[:k]


def _live_matching(conn: sqlite3.Connection, keys: list[int], where: str, params: list[Any]) -> set[int]:
    if not keys:
        return set()
    sql = f"SELECT v.key FROM vectors v WHERE v.key IN (SELECT value FROM json_each(?)) AND {where}"
    return {k for (k,) in conn.execute(sql, ["[" + ",".join(map(str, keys)) + "]", *params])}


def search(conn: sqlite3.Connection, row: dict[str, Any], index_dir: Path, q: np.ndarray, k: int,
           namespace: str | None, comp: Compiled | None, *, exact: bool = False,
           recheck: bool = False) -> tuple[list[tuple[float, int]], Plan]:
    """Top-k (distance, key) pairs, best first, using the cheapest path that meets the recall goal."""
    metric, dims, index_id = row["metric"], row["dimensions"], row["id"]
    if comp is not None and comp.never:
        return [], Plan("empty", 0)
    live = row["vector_count"]
    if live == 0:
        return [], Plan("empty", 0)
    view = None
    if not exact and row["ann_file"] is not None:
        view = ann.open_view(index_dir / row["ann_file"], row)
    restricted = namespace is not None or comp is not None
    if view is None:
        where, params = _cond(index_id, namespace, comp, drive=True)
        return _exact(conn, metric, q, k, where, params, dims), Plan("exact")

    max_key = row["ann_max_key"]
    # Records newer than the file (the delta) are always searched exactly.
    dwhere, dparams = _cond(index_id, namespace, comp, drive=False, by_key=True)
    delta = _exact(conn, metric, q, k, f"v.key > ? AND {dwhere}", [max_key, *dparams], dims)

    plan = Plan("hnsw")
    pwhere, pparams = _cond(index_id, namespace, comp, drive=False, by_key=True)
    if restricted:
        cap = max(256, int(2 * math.sqrt(k * max(live, 1))))
        cwhere, cparams = _cond(index_id, namespace, comp, drive=True)
        if namespace is None and comp is not None and comp.driver_only:
            # one clause: count straight off the metadata index, no row lookups
            n_c = conn.execute(f"SELECT count(*) FROM ({comp.driver} LIMIT ?)",
                               [*comp.driver_params, cap + 1]).fetchone()[0]
        else:
            n_c = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM vectors v WHERE {cwhere} LIMIT ?)",
                               [*cparams, cap + 1]).fetchone()[0]
        plan.candidates = n_c
        if n_c <= cap:
            plan.path = "exact"
            return _exact(conn, metric, q, k, cwhere, cparams, dims), plan
    nodes = max(row["ann_nodes"], 1)
    alive_frac = max(nodes - row["ann_dead"], 1) / nodes
    # restricted: N_c > cap, so start wide enough that ~k matches usually come back in one pass
    count = max(12 * k, 128) if restricted else int(math.ceil(k / alive_frac)) + 8
    # With no deletes since the file was built and no filter, every HNSW key is live: skip the
    # check (rescore verifies; a miss falls back to checking).
    trust = not restricted and row["ann_dead"] == 0 and not recheck
    found: list[tuple[float, int]] = []
    while True:
        # usearch searches with ef = max(expansion_search, count): no need to mutate the shared view
        m = view.search(q, count, threads=1)
        keys = [int(x) for x in m.keys]
        plan.fetched = len(keys)
        if trust:
            ok = set(keys)
        elif namespace is None and comp is not None and comp.driver_only:
            # one positive clause: its metadata-index rows exist only for live vectors of this index
            ok = {key for (key,) in conn.execute(
                f"{comp.driver} AND m.key IN (SELECT value FROM json_each(?))",
                [*comp.driver_params, "[" + ",".join(map(str, keys)) + "]"])}
        else:
            ok = _live_matching(conn, keys, pwhere, pparams)
        found = [(float(d), key) for d, key in zip(m.distances.tolist(), keys, strict=True) if key in ok]
        if len(found) >= k or len(keys) < count or count >= nodes:
            break
        if restricted:
            frac = max(len(found) / max(len(keys), 1), 1.0 / nodes)
            nxt = int(math.ceil(2 * k / frac))
            count = max(count * 4, nxt)
            if count > nodes // 2:
                plan.path = "exact"
                cwhere, cparams = _cond(index_id, namespace, comp, drive=True)
                return _exact(conn, metric, q, k, cwhere, cparams, dims), plan
        else:
            count *= 4
    if delta:
        plan.path = "hnsw+exact-delta"
    # usearch distances are only used to pick candidates; scores are recomputed exactly later.
    merged = {key: d for d, key in found[: k * 2]}
    for d, key in delta:
        merged[key] = d
    cand = list(merged)
    result = rescore(conn, row, q, cand, k)
    if trust and len(result) < min(k, len(cand)):
        # a key in the file was deleted without being counted (a merge raced a delete): check keys
        return search(conn, row, index_dir, q, k, namespace, comp, exact=exact, recheck=True)
    return result, plan


def rescore(conn: sqlite3.Connection, row: dict[str, Any], q: np.ndarray, keys: list[int], k: int) -> list[tuple[float, int]]:
    if not keys:
        return []
    rows = conn.execute("SELECT key, vec FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                        ["[" + ",".join(map(str, keys)) + "]"]).fetchall()
    if not rows:
        return []
    mat = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), row["dimensions"])
    d = distances(row["metric"], q, mat)
    out = sorted(zip(d.tolist(), [r[0] for r in rows], strict=True))
    return out[:k]
