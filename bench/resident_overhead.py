"""Per-query cost of a resident `LocalBackend.query` against raw usearch `search` on the same file.

Usage::

    .venv/bin/python bench/resident_overhead.py --store STORE --index NAME [--queries 1000] [--rounds 3]

Both run in this process, alternating query by query (and which goes first; `--blocks`: all of
vz's queries, then all of usearch's), on the same queries (`bench/common.queries`
at the index's dimensions), top-k 10. Raw usearch searches its own copy of the index's ANN file,
loaded into memory (`--raw-view`: a mapping of the file instead), at the same ef_search and count
as vz (usearch's ef is max(ef_search, count)). Like with like: vz searches an f16 file (the
default) through its mapping, its resident copy being SQLite's float32 values (`make_resident`),
so `--raw-view` for f16; an f32 file's resident copy is the file, searched in memory. Cost is measured
as this thread's CPU time (`time.thread_time_ns`), which a loaded machine disturbs far less than
wall time; wall time is printed too. One unmeasured pass of every query through both comes first. Prints one
markdown row per round.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--index", default="big")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--raw-view", action="store_true", help="raw usearch searches a mapping of the file, not a loaded copy")
    ap.add_argument("--blocks", action="store_true", help="each round runs every query through vz, then every query "
                    "through raw usearch, instead of alternating query by query")
    a = ap.parse_args(argv)

    from usearch.index import Index

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    be = LocalBackend(Store(a.store), resident=True)
    with be.store.read() as conn:
        assert conn is not None
        file, ef, dims, nodes = conn.execute(
            "SELECT ann_file, expansion_search, dimensions, ann_nodes FROM indexes WHERE name = ?",
            (a.index,)).fetchone()
    qs = common.queries(a.queries, dims)
    qls = [q.astype(float).tolist() for q in qs]
    be.query(a.index, vector=qls[0], top_k=10)  # map, verify and copy the matrix, load ids
    # like with like: a resident vz searches the file's verified copy in its own memory
    # (`ann.in_memory`), so raw usearch searches the file loaded into memory too (`--raw-view`:
    # through a mapping of the file, as vz did before)
    raw = Index.restore(str(be.store.index_dir(a.index) / file), view=a.raw_view, expansion_search=ef)
    count = 2 * 10  # what vz asks usearch for at top-k 10 with no deletes
    # one unmeasured pass of every query through both, so that neither side's first round pays
    # for faulting in what the other has already touched
    for q, ql in zip(qs, qls, strict=True):
        raw.search(q, count, threads=1)
        be.query(a.index, vector=ql, top_k=10)
    print(f"{a.index}: {nodes} nodes x {dims}, ef_search {ef}; raw usearch {'maps' if a.raw_view else 'loads'} the file")
    print("| round | vz CPU us | raw usearch CPU us | CPU ratio | vz wall us | raw wall us | wall ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in range(a.rounds):
        vz_cpu = raw_cpu = vz_wall = raw_wall = 0
        pairs = list(enumerate(zip(qs, qls, strict=True)))
        # interleaved: whichever runs second finds the query's graph nodes in cache, so alternate
        # the order; in blocks, each side keeps its own memory warm for the next query
        steps = [(i, q, ql, who) for i, (q, ql) in pairs for who in ((0, 1) if i % 2 else (1, 0))]
        if a.blocks:
            steps = [s for who in (0, 1) for s in steps if s[3] == who]
        for _, q, ql, who in steps:
            w, c = time.perf_counter_ns(), time.thread_time_ns()
            if who == 0:
                be.query(a.index, vector=ql, top_k=10)
                vz_cpu += time.thread_time_ns() - c
                vz_wall += time.perf_counter_ns() - w
            else:
                raw.search(q, count, threads=1)
                raw_cpu += time.thread_time_ns() - c
                raw_wall += time.perf_counter_ns() - w
        n = len(qs) * 1000
        print(f"| {r + 1} | {vz_cpu / n:.0f} | {raw_cpu / n:.0f} | {vz_cpu / raw_cpu:.2f}x | {vz_wall / n:.0f} | "
              f"{raw_wall / n:.0f} | {vz_wall / raw_wall:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
