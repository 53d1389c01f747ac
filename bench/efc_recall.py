"""recall@10 of a raw usearch graph against the ef_construction it was built with (issue 17).

Usage::

    .venv/bin/python bench/efc_recall.py --size 5000000x128 --efc 128 [--dtype f16] [--ef 128,256,512,1024]

Builds a usearch index (cosine, M=16, `--dtype`, all cores) over the cached clustered data of
`bench/datagen.py` (generated on first use, as bench_scale.py does), then searches it with each
ef for the 200 standard queries (`common.queries`), one query at a time, top-20 as vz asks, and
prints recall@10 against brute force and the CPU per query. This is what chose
`ann.ef_construction_for` (docs/ann.md): ef_search cannot lift a graph built at too low an
ef_construction past its cap.

`--blocks B` adds the rows B at a time, each block converted to `--dtype` by numpy first, as vz's
bulk-insert builder is fed (`annbuild`); `--one-thread-first K` adds the first K rows with one
thread, as the builder does while the parent parses. `--store S --index NAME` builds nothing and
searches that vz index's published ANN file instead (its keys mapped to row numbers through the
store's SQLite, so the index must hold the same data with ids that are row numbers, as
bench_scale.py inserts it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.bench_scale import SCALE, exact_truth  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=common.sizes, default=[(1_000_000, 128)], help="NxD (default 1000000x128)")
    ap.add_argument("--efc", type=int, default=128, help="ef_construction (default %(default)s)")
    ap.add_argument("--dtype", choices=("f16", "f32"), default="f16")
    ap.add_argument("--ef", default="128,256,512,1024", help="comma-separated ef_search values")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--blocks", type=int, default=0, help="add B rows at a time, converted by numpy (0: one call)")
    ap.add_argument("--one-thread-first", type=int, default=0, metavar="K", help="add the first K rows with one thread")
    ap.add_argument("--store", help="search this store's published ANN file instead of building one")
    ap.add_argument("--index", default="big", help="the index in --store (default %(default)s)")
    a = ap.parse_args(argv)
    from usearch.index import Index

    (n, dim), = a.size
    data = common.data(n, dim)
    qs = common.queries(a.queries, dim)
    SCALE.mkdir(parents=True, exist_ok=True)  # where the truth is cached
    truth = exact_truth(n, dim, qs)
    to_row: np.ndarray | None = None
    t, c = time.perf_counter(), time.process_time()
    if a.store:
        idx, to_row = _published(Path(a.store), a.index)
    else:
        idx = Index(ndim=dim, metric="cos", dtype=a.dtype, connectivity=16, expansion_add=a.efc)
        step = a.blocks or n
        for lo in range(0, n, step):
            blk = np.asarray(data[lo:lo + step])
            if a.blocks:
                blk = blk.astype(np.float16 if a.dtype == "f16" else np.float32)
            idx.add(np.arange(lo, lo + len(blk), dtype=np.uint64), blk, threads=1 if lo < a.one_thread_first else 0)
    out: dict[str, object] = {"n": n, "dim": dim, "efc": a.efc, "dtype": a.dtype, "blocks": a.blocks,
                              "one_thread_first": a.one_thread_first, "store": a.store,
                              "build_s": round(time.perf_counter() - t, 1), "build_cpu_s": round(time.process_time() - c, 1)}
    print(json.dumps(out), flush=True)
    for ef in (int(x) for x in a.ef.split(",")):
        idx.expansion_search = ef
        c = time.process_time()
        got = [idx.search(q, 20, threads=1).keys[:10] for q in qs]
        if to_row is not None:  # a key no live record has (deleted since the build) is no row
            got = [np.where(g < len(to_row), to_row[np.minimum(g, len(to_row) - 1)], -1) for g in got]
        got = [g.tolist() for g in got]
        cpu_ms = (time.process_time() - c) / len(qs) * 1e3
        recall = float(np.mean([len(set(g) & set(t.tolist())) / 10 for g, t in zip(got, truth, strict=True)]))
        print(json.dumps({"ef": ef, "recall@10": round(recall, 4), "cpu_ms_per_query": round(cpu_ms, 3)}), flush=True)
    return 0


def _published(store: Path, name: str) -> tuple[object, np.ndarray]:
    """The index's published file (a usearch view) and key -> row number (-1: no such key)."""
    import sqlite3

    from usearch.index import Index

    con = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        iid, file = con.execute("SELECT id, ann_file FROM indexes WHERE name = ?", (name,)).fetchone()
        pairs = con.execute("SELECT key, id FROM vectors WHERE index_id = ?", (iid,)).fetchall()
    finally:
        con.close()
    to_row = np.full(max(k for k, _ in pairs) + 1, -1, dtype=np.int64)
    for key, vid in pairs:
        if vid.isdigit():  # bench_scale's small upserts add other ids: they are no row
            to_row[key] = int(vid)
    return Index.restore(str(store / "indexes" / name / file), view=True), to_row


if __name__ == "__main__":
    raise SystemExit(main())
