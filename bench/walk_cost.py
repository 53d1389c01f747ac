"""What a one-shot query's graph search costs: vz's own walk (`vzcli.walk`) against usearch's open + search.

Usage::

    .venv/bin/python bench/walk_cost.py --store STORE --index NAME [--queries 20] [--efs 64,128,256,512]

For the index's sealed ANN file: the time usearch's `Index.restore(view=True)` takes to open it
(O(n): it reads every node's key), then, at each ef, the CPU per top-10 search of `walk.Walker`
and of usearch's `search` on that view, on the same queries (fresh points of bench/datagen.py's
mixture at the index's dimensions, the data every bench store is built from). These figures set
`ann.walk_pays` (docs/ann.md). Prints one markdown table.
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
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--efs", default="64,128,256,512")
    a = ap.parse_args(argv)

    from usearch.index import Index

    from vzcli import ann, walk
    from vzcli.store import Store

    st = Store(Path(a.store))
    with st.read() as conn:
        assert conn is not None, f"no store at {a.store}"
        row = ann._row(conn, a.index)
    assert row is not None and row["ann_file"], f"index {a.index!r} has no ANN file"
    path = st.index_dir(a.index) / row["ann_file"]
    opened = ann.open_file(path, row, walk=True)
    assert opened is not None and isinstance(opened.view, walk.Walker), "the file has no seal with graph offsets"
    walker = opened.view
    qs = common.queries(a.queries, row["dimensions"])
    t = time.perf_counter()
    view = Index.restore(str(path), view=True, enable_key_lookups=False)
    open_ms = (time.perf_counter() - t) * 1000
    print(f"{a.index}: {row['ann_nodes']:,} nodes x {row['dimensions']}; usearch open {open_ms:.1f} ms (wall)")
    print("| ef | walk CPU ms | usearch search CPU ms | walk / usearch |")
    print("|---:|---:|---:|---:|")
    for ef in (int(x) for x in a.efs.split(",")):
        walker.expansion_search = view.expansion_search = ef
        t = time.thread_time()
        for q in qs:
            walker.search(q, 10)
        tw = (time.thread_time() - t) / len(qs)
        t = time.thread_time()
        for q in qs:
            view.search(q, 10, threads=1)
        tu = (time.thread_time() - t) / len(qs)
        print(f"| {ef} | {tw * 1000:.1f} | {tu * 1000:.2f} | {tw / tu:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
