"""What holding an index resident buys a long-lived process, and what it costs (VZ_RESIDENT_MB).

Usage::

    .venv/bin/python bench/resident_budget.py --store S --index big [--budgets 1024,0] [--rounds 3]

For each budget, a child process opens `LocalBackend(resident=True)` (what `vz serve`'s workers
run) with ``VZ_RESIDENT_MB`` set to it, and measures: its first query (the open, and for a held
index reading the float32 copy and ids from SQLite), then ``--queries`` unfiltered top-10
queries (seeded random vectors, after 50 unmeasured ones) ``--passes`` times: wall and CPU per
query, the median pass. Then the process's RSS and its anonymous part (``RssAnon``: what is
private to it; the rest is file pages shared through the page cache with every other process).
Budgets run in turn, ``--rounds`` times; each figure is the median of the rounds. Ratios are to
the first budget's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, sys, time
import numpy as np
from vzcli.local import LocalBackend
from vzcli.store import Store
from vzcli import published

store, index, n, passes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
be = LocalBackend(Store(store), resident=True)
dims = be.info(index)["dimensions"]
qs = np.random.default_rng(17).standard_normal((n + 50, dims)).astype(np.float32).tolist()
t = time.perf_counter()
be.query(index, vector=qs[0], top_k=10)
first = time.perf_counter() - t
for q in qs[1:51]:
    be.query(index, vector=q, top_k=10)
runs = []
for _ in range(passes):
    t, c = time.perf_counter(), time.process_time()
    for q in qs[50:]:
        be.query(index, vector=q, top_k=10)
    runs.append(((time.perf_counter() - t) / n, (time.process_time() - c) / n))
wall, cpu = sorted(runs)[len(runs) // 2]
status = open("/proc/self/status").read()
kib = lambda f: int(status.split(f + ":")[1].split()[0])
print(json.dumps({"first": first, "wall": wall, "cpu": cpu, "rss": kib("VmRSS") / 1024, "anon": kib("RssAnon") / 1024,
                  "held": published.RESIDENT.used}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--budgets", default="1024,0", help="comma-separated VZ_RESIDENT_MB values (default 1024,0)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    budgets = [b.strip() for b in a.budgets.split(",") if b.strip()]
    got: dict[str, list[dict[str, float]]] = {b: [] for b in budgets}
    for r in range(a.rounds):
        for b in budgets:
            env = dict(os.environ, VZ_RESIDENT_MB=b, PYTHONPATH=str(ROOT))
            p = subprocess.run([sys.executable, "-c", CHILD, a.store, a.index, str(a.queries), str(a.passes)],
                               env=env, capture_output=True, text=True, cwd=ROOT)
            if p.returncode:
                raise SystemExit(p.stderr[-2000:])
            m = json.loads(p.stdout)
            got[b].append(m)
            print(f"round {r + 1} VZ_RESIDENT_MB={b}: first {m['first'] * 1e3:.0f} ms; {m['wall'] * 1e3:.3f} ms "
                  f"({m['cpu'] * 1e3:.3f} CPU) per query; RSS {m['rss']:,.0f} MiB, {m['anon']:,.0f} anonymous; "
                  f"held {m['held'] / 2**20:,.0f} MiB", flush=True)
    med = {b: {k: statistics.median(m[k] for m in ms) for k in ms[0]} for b, ms in got.items()}
    base = med[budgets[0]]
    print(f"\n{a.store} / {a.index}, {a.queries} queries x {a.passes} passes, median of {a.rounds} rounds\n")
    print("| VZ_RESIDENT_MB | held | first query | per query (CPU) | / first budget's | RSS | anonymous |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for b in budgets:
        m = med[b]
        print(f"| {b} | {m['held'] / 2**20:,.0f} MiB | {m['first'] * 1e3:,.0f} ms | {m['wall'] * 1e3:.3f} ms "
              f"({m['cpu'] * 1e3:.3f}) | {m['wall'] / base['wall']:.2f}x | {m['rss']:,.0f} MiB | {m['anon']:,.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
