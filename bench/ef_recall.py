"""recall@k of vz's HNSW path against ef_search, on a built store (the measurements behind the
ef_search policy in `vzcli/search.py`, recorded in docs/ann.md).

Usage::

    .venv/bin/python bench/ef_recall.py --store STORE --index NAME --n N --dim D \\
        [--efs 32,48,64,96,128,192] [--queries 200] [--k 10]

The store must hold `bench/common.data(N, D)` with ids `str(i)` (as `common.build_store` makes
it). For each ef it sets the index's ef_search in the catalog and runs the queries through a
resident `LocalBackend` (the path `vz serve` takes: HNSW candidates, exact rescoring), then
compares the ids with numpy's exact top-k. Prints a markdown table; restores the catalog's ef.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common, datagen  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--index", default="big")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--efs", default="32,48,64,96,128,192")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args(argv)

    import numpy as np

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    data = np.asarray(common.data(a.n, a.dim))
    qs = common.queries(a.queries, a.dim)
    truth = datagen.exact_topk(data, qs, a.k, metric="cosine")
    del data
    st = Store(a.store)
    be = LocalBackend(st, resident=True)
    with st.read() as conn:
        assert conn is not None
        old = conn.execute("SELECT expansion_search FROM indexes WHERE name = ?", (a.index,)).fetchone()[0]
    print(f"| N x D | ef_search | recall@{a.k} | ms per query |\n|---|---:|---:|---:|")
    try:
        for ef in [int(x) for x in a.efs.split(",")]:
            with st.write() as conn:
                conn.execute("UPDATE indexes SET expansion_search = ? WHERE name = ?", (ef, a.index))
            be.query(a.index, vector=qs[0].astype(float).tolist(), top_k=a.k)  # warm: map, verify, load ids
            found = []
            t = time.perf_counter()
            for q in qs:
                res = be.query(a.index, vector=q.astype(float).tolist(), top_k=a.k)
                found.append([int(m["id"]) for m in res["matches"]])
            per = (time.perf_counter() - t) / len(qs) * 1000
            print(f"| {a.n}x{a.dim} | {ef} | {common.recall_at_k(found, truth, a.k):.4f} | {per:.2f} |", flush=True)
    finally:
        with st.write() as conn:
            conn.execute("UPDATE indexes SET expansion_search = ? WHERE name = ?", (old, a.index))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
