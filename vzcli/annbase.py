"""What the ANN code needs that needs neither numpy nor SQLite: the settings a graph is built and
searched with, and publishing a built graph as a file.

The bulk insert's builder child (`vzcli.annchild`) imports only this module (with
`vzcli.errors` and `vzcli.outfile`) and the standard library: every MiB it imports is a MiB of
the insert's peak (docs/write-path.md, "Session 9"). `vzcli.ann` re-exports the names its
callers use.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from vzcli.errors import StoreError
from vzcli.outfile import fsync_dir

USEARCH_METRIC = {"cosine": "cos", "euclidean": "l2sq", "dot-product": "ip"}
METRIC_KIND = {"cosine": "Cos", "euclidean": "L2sq", "dot-product": "IP"}  # usearch's MetricKind names
SMALL_GRAPH = 4096  # graphs smaller than this are built with one thread (deterministic, whole)


EF_BASE, EF_BASE_NODES, EF_GROWTH, EF_MAX = 64, 100_000, 0.30, 1024
EF_1M, EF_GROWTH_PAST_1M = 128, 0.86


def ef_search_for(nodes: int) -> int:
    """The ef_search (usearch `expansion_search`) of a graph of `nodes` nodes, stored in the
    catalog when its file is published. Recall at a fixed ef falls as the graph grows: 64 up to
    100k nodes, then growing as nodes ** 0.30 (x2 per 10x) to 128 at 1M (recall@10 0.986-0.994
    on clustered embedding-like data), then faster, as nodes ** 0.86, to 512 at 5M: there recall
    was 0.923 at ef 208 and 0.953 at ef 512, at 1.5x the CPU per query (docs/ann.md). Queries
    search with max(this, 2 * top-k) (`search.search`)."""
    if nodes <= EF_BASE_NODES:
        return EF_BASE
    if nodes <= 1_000_000:
        ef = EF_BASE * (nodes / EF_BASE_NODES) ** EF_GROWTH
    else:
        ef = EF_1M * (nodes / 1_000_000) ** EF_GROWTH_PAST_1M
    return min(EF_MAX, 8 * math.ceil(ef / 8))


EFC_BASE_NODES, EFC_GROWTH, EFC_MAX = 1_000_000, 0.43, 256


def ef_construction_for(nodes: int, base: int) -> int:
    """The ef_construction (usearch `expansion_add`) to add nodes to a graph of `nodes` nodes with,
    for an index whose catalog says `base` (64 by default). A graph built at 64 stops improving
    with ef_search past 1M nodes: at 5M x 128 recall@10 capped at ~0.96 whatever the ef (0.953
    at ef 512), while a build at 128 gave 0.980 / 0.986 / 0.996 at ef 128 / 256 / 512 (raw usearch,
    docs/ann.md). So `base` up to 1M nodes, then growing as nodes ** 0.43 (x2 at 5M), capped.
    Rounded to the nearest multiple of 8, not up: a bulk insert's builder adds nodes at the size it
    estimates the input will reach (`annchild`), and an estimate a hair above 1M must not build a
    heavier graph than 1M does (rounding up gave 72 for 1,000,001)."""
    if nodes <= EFC_BASE_NODES:
        return base
    grown = max(base, 8 * round(base * (nodes / EFC_BASE_NODES) ** EFC_GROWTH / 8))
    return min(max(base, EFC_MAX), grown)


def publish(idx: Any, d: Path, seq: int) -> str:
    """Save `idx` under a fresh name in `d` and return that name (not yet referenced by the catalog)."""
    d.mkdir(parents=True, exist_ok=True)
    name = f"ann-{seq:012d}-{os.getpid()}-{os.urandom(3).hex()}.usearch"
    tmp = d / f".tmp-{os.getpid()}-{name}"
    try:
        idx.save(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, d / name)
    except (OSError, RuntimeError) as e:
        # usearch says only "Failed to serialize into stream" when the disk is full or a file size
        # limit is hit; never leave the partial file taking up the space that ran out
        tmp.unlink(missing_ok=True)
        detail = getattr(e, "strerror", None) or str(e)
        raise StoreError(f"Cannot save an ANN file in {d}: {detail} (is the disk full or read-only?)") from None
    fsync_dir(d)
    return name

