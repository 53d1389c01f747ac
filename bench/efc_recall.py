"""recall@10 of a raw usearch graph against the ef_construction it was built with (issue 17).

Usage::

    .venv/bin/python bench/efc_recall.py --size 5000000x128 --efc 128 [--dtype f16] [--ef 128,256,512,1024]

Builds a usearch index (cosine, M=16, `--dtype`, all cores) over the cached clustered data of
`bench/datagen.py` (generated on first use, as bench_scale.py does), then searches it with each
ef for the 200 standard queries (`common.queries`), one query at a time, top-20 as vz asks, and
prints recall@10 against brute force and the CPU per query. This is what chose
`ann.ef_construction_for` (docs/ann.md): ef_search cannot lift a graph built at too low an
ef_construction past its cap.
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
    a = ap.parse_args(argv)
    from usearch.index import Index

    (n, dim), = a.size
    data = common.data(n, dim)
    qs = common.queries(a.queries, dim)
    SCALE.mkdir(parents=True, exist_ok=True)  # where the truth is cached
    truth = exact_truth(n, dim, qs)
    idx = Index(ndim=dim, metric="cos", dtype=a.dtype, connectivity=16, expansion_add=a.efc)
    t, c = time.perf_counter(), time.process_time()
    idx.add(np.arange(n, dtype=np.uint64), np.asarray(data), threads=0)
    out: dict[str, object] = {"n": n, "dim": dim, "efc": a.efc, "dtype": a.dtype,
                              "build_s": round(time.perf_counter() - t, 1), "build_cpu_s": round(time.process_time() - c, 1)}
    print(json.dumps(out), flush=True)
    for ef in (int(x) for x in a.ef.split(",")):
        idx.expansion_search = ef
        c = time.process_time()
        got = [idx.search(q, 20, threads=1).keys[:10].tolist() for q in qs]
        cpu_ms = (time.process_time() - c) / len(qs) * 1e3
        recall = float(np.mean([len(set(g) & set(t.tolist())) / 10 for g, t in zip(got, truth, strict=True)]))
        print(json.dumps({"ef": ef, "recall@10": round(recall, 4), "cpu_ms_per_query": round(cpu_ms, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
