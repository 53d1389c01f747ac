"""Where a vz query's time goes, next to raw usearch searching the same file (issue 9's "why").

Usage::

    .venv/bin/python bench/query_breakdown.py                  # 100000x384 and 100000x768
    .venv/bin/python bench/query_breakdown.py --sizes 20000x384 --queries 100

For each size: builds (or reuses, under bench/out/) a cosine index of the clustered data, then
in one process, alternating query by query, runs `LocalBackend.query` (a resident library
backend, top-k 10) and raw usearch `search` on its own view of the same ANN file, both at the
index's ef_search. vz's phases are timed by wrapping the functions that implement them, so the
table shows what each costs per query (wrapping adds ~1 us per call, itself included). Phases
are not exclusive: the liveness check runs inside the hits' details (or the search), and the
rest of `query` (the read transaction, the planner, building the result) is the remainder.
Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.common import OUT  # noqa: E402

PHASES = [  # (module, attribute, label)
    ("records", "check_vector", "validate the query vector (list of floats -> float32)"),
    ("reads", "_row", "read the index's catalog row"),
    ("ann", "open_file", "find the mapped HNSW view and its vectors (stat + cache)"),
    ("search", "_exact", "exact search of the delta (records newer than the file)"),
    ("usearch", "search", "usearch HNSW search (k+8 candidates)"),
    ("search", "rescore", "exact float64 rescoring of 2k candidates"),
    ("search", "dead_among", "liveness check in dead_keys"),
    ("reads.Reads", "_match_details", "ids / namespaces / metadata of the hits"),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=common.sizes, default="100000x384,100000x768",
                    help="comma-separated NxD (default %(default)s)")
    ap.add_argument("--queries", type=int, default=400)
    a = ap.parse_args(argv)

    from usearch.index import Index

    from vzcli import ann, local, reads, records, search
    from vzcli.store import Store

    mods: dict[str, Any] = {"records": records, "reads": reads, "ann": ann, "search": search,
                            "usearch": Index, "reads.Reads": reads.Reads}
    acc: dict[str, int] = {}

    def wrap(owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            t = time.perf_counter_ns()
            try:
                return fn(*args, **kw)
            finally:
                acc[label] = acc.get(label, 0) + time.perf_counter_ns() - t

        setattr(owner, attr, timed)

    print("| size | phase | us per query |\n|---|---|---:|")
    for n, dim in a.sizes:
        size = f"{n}x{dim}"
        store = OUT / f"breakdown-{size}"
        if not (store / "catalog.sqlite3").exists():
            common.build_store(store, "b", n, dim)
        be = local.LocalBackend(Store(store))
        qs = common.queries(a.queries, dim)
        qls = [q.astype(float).tolist() for q in qs]
        conn = be.store.conn()
        if reads._row(conn, "b")["ann_file"] is None:
            be.optimize("b")  # below the merge threshold there is no HNSW file: build it, it is what is measured
        be.query("b", vector=qls[0], top_k=10)  # map the file, fault its vectors in, load ids
        row = reads._row(conn, "b")
        raw = Index.restore(str(be.store.index_dir("b") / row["ann_file"]), view=False)  # loaded, as vz's resident copy is
        raw.expansion_search = row["expansion_search"]
        if not acc:
            for mod, attr, label in PHASES:
                wrap(mods[mod], attr, label)
        acc.clear()
        vz_ns = raw_ns = 0
        search_fn: Callable[..., Any] = raw.search
        for q, ql in zip(qs, qls, strict=True):
            t = time.perf_counter_ns()
            be.query("b", vector=ql, top_k=10)
            vz_ns += time.perf_counter_ns() - t
            before = acc.get(PHASES[5][2], 0)
            t = time.perf_counter_ns()
            search_fn(q, 10, threads=1)
            raw_ns += time.perf_counter_ns() - t
            acc[PHASES[5][2]] = before  # the raw search also went through the wrapper: not vz's
        nq = len(qs)
        for _, _, label in PHASES:
            print(f"| {size} | {label} | {acc.get(label, 0) / nq / 1000:.1f} |")
        print(f"| {size} | **whole `LocalBackend.query`** | **{vz_ns / nq / 1000:.1f}** |")
        print(f"| {size} | raw usearch `search` (k=10), same file and ef | {raw_ns / nq / 1000:.1f} |")
        print(f"| {size} | ratio vz / raw usearch | {vz_ns / max(raw_ns, 1):.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
