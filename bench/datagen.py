"""Seeded "embedding-like" benchmark data for vz.

The generator is the one the usearch notes measured recall on
(shared/reference/usearch-notes.md, Appendix): a Gaussian mixture of
``n_centres`` centres in a 32-d latent space (sigma 0.5), randomly projected
to ``dim`` dimensions, plus 0.05 isotropic noise, L2-normalised. Real
sentence embeddings are clustered and anisotropic in the same way, so HNSW
recall on this data is far more honest than on uniform random vectors.

Library use::

    from bench.datagen import clustered_with_queries, exact_topk, write_ndjson
    data, qs = clustered_with_queries(100_000, 1_000, 768, seed=0)
    gt = exact_topk(data, qs, 10, metric="cosine")      # (1000, 10) row indices
    write_ndjson("/tmp/x.ndjson", data, metadata_fn=bench_metadata)

CLI::

    python bench/datagen.py --n 100000 --dim 768 --seed 0 --out /tmp/x.ndjson [--metadata]

Ids default to ``str(i)``, so row ``i`` of the array is the vector with id
``str(i)`` and ``exact_topk`` indices map straight onto ids.

Only numpy is required; orjson is used when installed (about 10x faster and
prints the shortest float32 representation, so files are also ~40% smaller).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

try:  # optional speed-up
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

LATENT_DIM = 32
SIGMA = 0.5
NOISE = 0.05
METRICS = ("cosine", "euclidean", "dot-product")

# Rows generated per block: bounds the float64 temporaries to ~100 MB at
# dim=768, so 1M x 768 needs ~3 GB (the float32 result) instead of ~12 GB.
_GEN_BLOCK = 16_384
# Queries scored per block in exact_topk: the score matrix is block x N.
_TOPK_BLOCK = 256


def _mixture(dim: int, rng: np.random.Generator, n_centres: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw the mixture's centres (latent) and its projection to ``dim``."""
    centres = rng.standard_normal((n_centres, LATENT_DIM))
    proj = rng.standard_normal((LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)
    return centres, proj


def _sample(n: int, rng: np.random.Generator, centres: np.ndarray, proj: np.ndarray) -> np.ndarray:
    """Draw ``n`` L2-normalised float32 points from the mixture (all of ``_sample_blocks``)."""
    out = np.empty((n, proj.shape[1]), dtype=np.float32)
    for start, block in _sample_blocks(n, rng, centres, proj):
        out[start:start + len(block)] = block
    return out


def _sample_blocks(n: int, rng: np.random.Generator, centres: np.ndarray,
                   proj: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, rows)`` blocks of ``n`` points, holding O(block) memory beyond the labels.

    Draws in the same order as the reference snippet (labels, latent noise for all ``n`` rows,
    then output noise row by row), so the values equal those of the one-shot
    ``rng.standard_normal((n, D))`` version whatever the block size. The latent noise comes from
    a copy of the generator taken after the labels, while ``rng`` skips past it in blocks: a
    normal variate consumes a variable amount of the bit stream, so it cannot be jumped over.
    """
    dim = proj.shape[1]
    labels = rng.integers(0, len(centres), n)
    latent = np.random.Generator(type(rng.bit_generator)())
    latent.bit_generator.state = rng.bit_generator.state
    for start in range(0, n, _GEN_BLOCK):
        rng.standard_normal((min(_GEN_BLOCK, n - start), LATENT_DIM))
    for start in range(0, n, _GEN_BLOCK):
        stop = min(start + _GEN_BLOCK, n)
        z = centres[labels[start:stop]] + SIGMA * latent.standard_normal((stop - start, LATENT_DIM))
        x = z @ proj + NOISE * rng.standard_normal((stop - start, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield start, x.astype(np.float32)


def clustered(n: int, dim: int, seed: int = 0, n_centres: int = 1000) -> np.ndarray:
    """Return ``n`` clustered, unit-length float32 vectors of ``dim`` dimensions.

    The same ``(n, dim, seed, n_centres)`` always gives the same array; a
    larger ``n`` with the same seed does *not* extend a smaller one (the
    labels are drawn first), so generate once and slice if you need prefixes.
    """
    rng = np.random.default_rng(seed)
    centres, proj = _mixture(dim, rng, n_centres)
    return _sample(n, rng, centres, proj)


def clustered_to(path: str | Path, n: int, dim: int, seed: int = 0, n_centres: int = 1000) -> None:
    """Write ``clustered(n, dim, seed)`` to the ``.npy`` file ``path`` block by block.

    Same values as ``clustered``; memory stays O(block) plus the labels (8 bytes a row), so
    5M x 128 does not need the 2.6 GB array plus its float64 temporaries in memory at once.
    """
    rng = np.random.default_rng(seed)
    centres, proj = _mixture(dim, rng, n_centres)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start, block in _sample_blocks(n, rng, centres, proj):
        out[start:start + len(block)] = block
    out.flush()
    del out


def queries(n: int, dim: int, seed: int = 1, data_seed: int = 0, n_centres: int = 1000) -> np.ndarray:
    """Return ``n`` query vectors from the *same* mixture as ``clustered(..., seed=data_seed)``.

    Centres and projection come from ``data_seed``; the points themselves are
    drawn from an independent stream keyed on ``(data_seed, seed)``, so
    queries are fresh samples, not copies of data rows, yet follow the data's
    distribution (as real queries follow a corpus).
    """
    centres, proj = _mixture(dim, np.random.default_rng(data_seed), n_centres)
    return _sample(n, np.random.default_rng((data_seed, seed)), centres, proj)


def clustered_with_queries(
    n: int,
    nq: int,
    dim: int,
    seed: int = 0,
    query_seed: int = 1,
    n_centres: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(data, queries)``: ``clustered(n, dim, seed)`` and matching queries."""
    return (
        clustered(n, dim, seed=seed, n_centres=n_centres),
        queries(nq, dim, seed=query_seed, data_seed=seed, n_centres=n_centres),
    )


def exact_topk(
    data: np.ndarray,
    queries: np.ndarray,
    k: int,
    metric: str = "cosine",
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` row indices of ``data`` for each query, best first.

    ``metric`` is a Vectorize metric: ``cosine`` (highest similarity first),
    ``euclidean`` (smallest distance first) or ``dot-product`` (highest dot
    first). Returns an int64 array of shape ``(len(queries), min(k, N))``;
    with ``return_scores`` also the matching scores (cosine similarity,
    euclidean distance, dot product), as float64. Scores come from one
    float32 matmul when the inputs are float32: fine for ranking, but a
    euclidean distance near 0 is only good to ~1e-3 (cancellation).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    data = np.asarray(data)
    q_all = np.atleast_2d(np.asarray(queries))
    if data.ndim != 2 or q_all.shape[1] != data.shape[1]:
        raise ValueError(f"shape mismatch: data {data.shape}, queries {q_all.shape}")
    n = data.shape[0]
    k = min(k, n)
    nq = q_all.shape[0]
    idx_out = np.empty((nq, k), dtype=np.int64)
    score_out = np.empty((nq, k), dtype=np.float64)
    if k == 0:
        return (idx_out, score_out) if return_scores else idx_out

    # Precompute per-row terms once; each block then costs one matmul.
    sq_norms = np.einsum("ij,ij->i", data, data, dtype=np.float64)
    if metric == "cosine":
        inv_norms = 1.0 / np.maximum(np.sqrt(sq_norms), 1e-30)

    for start in range(0, nq, _TOPK_BLOCK):
        q = q_all[start : start + _TOPK_BLOCK]
        dots = (q @ data.T).astype(np.float64, copy=False)
        if metric == "cosine":
            q_norm = np.linalg.norm(q.astype(np.float64), axis=1, keepdims=True)
            key = dots * inv_norms / np.maximum(q_norm, 1e-30)  # similarity
            score = key
        elif metric == "dot-product":
            key = score = dots
        else:  # euclidean: rank on -(|x|^2 - 2 q.x), |q|^2 is constant per row
            key = 2.0 * dots - sq_norms
            score = None
        if k < n:
            part = np.argpartition(-key, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n), (len(q), n))
        part_keys = np.take_along_axis(key, part, axis=1)
        # Sort best first; ties broken by row index for determinism.
        order = np.lexsort((part, -part_keys), axis=1)
        top = np.take_along_axis(part, order, axis=1)
        idx_out[start : start + len(q)] = top
        if return_scores:
            if score is None:
                q_sq = np.einsum("ij,ij->i", q, q, dtype=np.float64)[:, None]
                d2 = q_sq - np.take_along_axis(key, top, axis=1)
                score_out[start : start + len(q)] = np.sqrt(np.maximum(d2, 0.0))
            else:
                score_out[start : start + len(q)] = np.take_along_axis(score, top, axis=1)
    return (idx_out, score_out) if return_scores else idx_out


def bench_metadata(i: int) -> dict[str, Any]:
    """Metadata for filter benchmarks.

    ``cat`` takes 100 values, so ``{"cat": "c7"}`` selects 1 %; ``n`` is the
    row number, so ``{"n": {"$lt": N * s}}`` selects a fraction ``s``;
    ``flag`` is true on every 10th row (10 %).
    """
    return {"cat": f"c{i % 100}", "n": i, "flag": i % 10 == 0}


def _lines(
    data: np.ndarray,
    ids: list[str] | None,
    metadata_fn: Callable[[int], dict[str, Any] | None] | None,
    namespace_fn: Callable[[int], str | None] | None,
    decimals: int | None,
) -> Iterator[bytes]:
    """Yield one encoded NDJSON line per row."""
    for start in range(0, len(data), _GEN_BLOCK):
        block = np.asarray(data[start : start + _GEN_BLOCK])
        if orjson is None:
            # repr of a Python float round-trips exactly; rounding in float64
            # first keeps the text short when decimals is given.
            block = block.astype(np.float64)
        if decimals is not None:
            block = np.round(block, decimals)
        for j, row in enumerate(block):
            i = start + j
            rec: dict[str, Any] = {"id": ids[i] if ids is not None else str(i)}
            if orjson is not None:
                rec["values"] = row  # orjson prints float32 in shortest form
            if namespace_fn is not None:
                ns = namespace_fn(i)
                if ns is not None:
                    rec["namespace"] = ns
            if metadata_fn is not None:
                meta = metadata_fn(i)
                if meta is not None:
                    rec["metadata"] = meta
            if orjson is not None:
                yield orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
            else:
                # Splice the vector in by hand: json.dumps on a float list is
                # several times slower than joining reprs.
                head = json.dumps(rec, separators=(",", ":"))
                values = ",".join(map(repr, row.tolist()))
                yield (head[:-1] + ',"values":[' + values + "]}\n").encode()


def write_ndjson(
    path: str | Path | IO[bytes],
    data: np.ndarray,
    ids: list[str] | None = None,
    metadata_fn: Callable[[int], dict[str, Any] | None] | None = None,
    namespace_fn: Callable[[int], str | None] | None = None,
    decimals: int | None = None,
) -> int:
    """Write ``data`` as Vectorize NDJSON (``{"id","values","namespace"?,"metadata"?}``).

    ``ids`` defaults to ``str(i)``. ``metadata_fn(i)`` / ``namespace_fn(i)``
    return the row's metadata dict / namespace, or None to omit it. Values are
    written so they parse back to the same float32 unless ``decimals`` asks
    for rounding (then compute ground truth on ``np.round(data, decimals)``).
    ``path`` may be ``"-"`` for stdout or an open binary file. Returns the
    number of records written.
    """
    if ids is not None and len(ids) != len(data):
        raise ValueError(f"{len(ids)} ids for {len(data)} vectors")
    lines = _lines(data, ids, metadata_fn, namespace_fn, decimals)
    if isinstance(path, (str, Path)) and str(path) != "-":
        with open(path, "wb", buffering=1 << 20) as fh:
            fh.writelines(lines)
    else:
        out: IO[bytes] = sys.stdout.buffer if isinstance(path, (str, Path)) else path
        out.writelines(lines)
        out.flush()
    return len(data)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Write seeded clustered 'embedding-like' vectors as Vectorize NDJSON.",
    )
    p.add_argument("--n", type=int, required=True, help="number of vectors")
    p.add_argument("--dim", type=int, required=True, help="dimensions")
    p.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    p.add_argument("--centres", type=int, default=1000, help="mixture centres (default 1000)")
    p.add_argument("--out", default="-", help="output path, '-' for stdout (default)")
    p.add_argument(
        "--metadata",
        action="store_true",
        help='add {"cat": "c<i%%100>", "n": i, "flag": i%%10==0} to every record',
    )
    p.add_argument("--namespace", help="put every record in this namespace")
    p.add_argument("--decimals", type=int, help="round values to this many decimals")
    p.add_argument(
        "--queries",
        type=int,
        default=0,
        metavar="NQ",
        help="also write NQ matching queries (seed --query-seed) to --queries-out",
    )
    p.add_argument("--query-seed", type=int, default=1)
    p.add_argument(
        "--queries-out",
        help="where to write queries as a JSON list of vectors (default: OUT.queries.json)",
    )
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    data = clustered(args.n, args.dim, seed=args.seed, n_centres=args.centres)
    t1 = time.perf_counter()
    ns = args.namespace
    write_ndjson(
        args.out,
        data,
        metadata_fn=bench_metadata if args.metadata else None,
        namespace_fn=(lambda i: ns) if ns else None,
        decimals=args.decimals,
    )
    t2 = time.perf_counter()
    print(
        f"{args.n} x {args.dim} vectors: generated in {t1 - t0:.2f}s, "
        f"written in {t2 - t1:.2f}s -> {args.out}",
        file=sys.stderr,
    )
    if args.queries:
        qs = queries(
            args.queries,
            args.dim,
            seed=args.query_seed,
            data_seed=args.seed,
            n_centres=args.centres,
        )
        qpath = args.queries_out or (f"{args.out}.queries.json" if args.out != "-" else "queries.json")
        if orjson is not None:
            if args.decimals is not None:
                qs = np.round(qs, args.decimals)
            text = orjson.dumps(qs, option=orjson.OPT_SERIALIZE_NUMPY)
        else:
            qs64 = qs.astype(np.float64)
            if args.decimals is not None:
                qs64 = np.round(qs64, args.decimals)
            text = json.dumps(qs64.tolist()).encode()
        Path(qpath).write_bytes(text + b"\n")
        print(f"{args.queries} queries -> {qpath}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
