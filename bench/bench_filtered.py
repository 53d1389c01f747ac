"""Issue 4 benchmark: filtered query latency and recall across selectivities.

Usage::

    .venv/bin/python bench/bench_filtered.py               # 100k x 384, as in the brief
    .venv/bin/python bench/bench_filtered.py --quick       # 10k x 384 smoke run

Builds a cosine index with metadata indexes on ``n`` (number), ``cat`` (string) and ``flag``
(boolean) created BEFORE inserting ``datagen.bench_metadata`` records (``n`` = row number, so
``{"n": {"$lt": N*s}}`` selects a fraction ``s``; rows are in random cluster order, so the filter
is uncorrelated with the vectors). Then, in-process through
``LocalBackend(Store(path)).query(...)``: latency (median, p99) and recall@10 against brute force
over the filtered rows, for each filter and for the unfiltered query; plus the whole-process
``vz query --filter`` latency. Replaces the ``b`` section of bench/RESULTS.md.
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
from bench.common import OUT, VZ, interleaved, med, ms, wall  # noqa: E402
from bench.results import update_section  # noqa: E402

SELECTIVITIES = (0.0001, 0.001, 0.01, 0.1, 0.5)
PROPS = (("n", "number"), ("cat", "string"), ("flag", "boolean"))


def filters(n: int) -> list[tuple[str, dict | None, np.ndarray]]:
    """(label, filter, matching row indices); the first is the unfiltered query."""
    rows = np.arange(n)
    out: list[tuple[str, dict | None, np.ndarray]] = [("none (unfiltered)", None, rows)]
    for s in SELECTIVITIES:
        lim = max(1, round(n * s))
        out.append((f"{s:.2%} `n < {lim}`", {"n": {"$lt": lim}}, rows[:lim]))
    out.append(("1% `cat = c7`", {"cat": "c7"}, rows[rows % 100 == 7]))
    out.append(("10% `flag = true`", {"flag": True}, rows[rows % 10 == 0]))
    return out


def plan_of(store: Path, name: str, q: np.ndarray, flt: dict | None) -> str:
    """The planner's choice for one query (path, candidate count, HNSW hits fetched)."""
    from vzcli import search
    from vzcli.catalog import index_row as _row
    from vzcli.catalog import meta_indexes as _meta_indexes
    from vzcli.filters import compile_filter, parse_filter
    from vzcli.store import Store

    st = Store(store)
    with st.read() as conn:
        row = _row(conn, name)
        comp = compile_filter(parse_filter(flt), _meta_indexes(conn, row["id"])) if flt else None
        _, plan = search.search(conn, row, st.index_dir(name), q, 10, None, comp)
    cand = "" if plan.candidates is None else f", {plan.candidates} cand."
    return f"{plan.path}{cand}, fetched {plan.fetched}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cli-runs", type=int, default=9)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--rebuild", action="store_true", help="rebuild the store even if it exists")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.queries, a.cli_runs = 10_000, 50, 3
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    n, dim = a.n, a.dim
    store = OUT / f"filt-{n}x{dim}"
    build_s = None
    if a.rebuild or not (store / "catalog.sqlite3").exists():
        print(f"building {store} ...", flush=True)
        build_s = common.build_store(store, "f", n, dim, metadata_props=PROPS)
    data = np.asarray(common.data(n, dim))
    qs = common.queries(a.queries, dim)
    be = LocalBackend(Store(store))
    fl = filters(n)

    # warm up: page cache and the HNSW mapping
    for _, flt, _ in fl:
        be.query("f", vector=qs[0].astype(float).tolist(), top_k=10, filter=flt)

    # Round-robin over the filters for each query, so load drift on a shared machine hits every
    # filter alike (the goal is a ratio to the unfiltered query).
    lat: dict[str, list[float]] = {label: [] for label, _, _ in fl}
    cpu: dict[str, list[float]] = {label: [] for label, _, _ in fl}
    found: dict[str, list[list[int]]] = {label: [] for label, _, _ in fl}
    for q in qs:
        ql = q.astype(float).tolist()
        for label, flt, _ in fl:
            c = time.process_time()
            t = time.perf_counter()
            r = be.query("f", vector=ql, top_k=10, filter=flt)
            lat[label].append(time.perf_counter() - t)
            cpu[label].append(time.process_time() - c)
            found[label].append([int(m["id"]) for m in r["matches"]])
    table = []
    base = med(lat[fl[0][0]])
    cbase = med(cpu[fl[0][0]])
    for label, flt, rows in fl:
        truth = rows[common.datagen.exact_topk(data[rows], qs, 10)]
        rec = common.recall_at_k(found[label], truth)
        m = med(lat[label])
        table.append((label, flt, len(rows), m, common.pct(lat[label], 99), rec, m / base,
                      plan_of(store, "f", qs[0], flt), med(cpu[label]), med(cpu[label]) / cbase))
        print(table[-1], flush=True)

    # whole-process CLI latency, interleaved across filters
    qf = OUT / "b-q.json"
    qf.write_text(json.dumps(qs[0].astype(float).tolist()))

    def cli(flt: dict | None):
        extra = ["--filter", json.dumps(flt)] if flt is not None else []
        return lambda: wall([VZ, "--store", str(store), "query", "f", "--vector-file", str(qf), "--top-k", "10",
                             "--json", *extra])

    cres = interleaved({label: cli(flt) for label, flt, _ in fl}, a.cli_runs, warmup=1)
    clibase = med(cres[fl[0][0]])

    worst = max(r[6] for r in table[1:])
    worst_cpu = max(r[9] for r in table[1:])
    worst_rec = min(r[5] for r in table)
    lines = []
    for label, _flt, cnt, m, p99, rec, ratio, plan, cm, cratio in table:
        c = med(cres[label])
        lines.append(f"| {label} | {cnt:,} | {ms(m)} | {ms(p99)} | {ratio:.2f}x | {ms(cm)} | {cratio:.2f}x | "
                     f"{rec:.4f} | {plan} | {ms(c)} ({c / clibase:.2f}x) |")
    built = f" Building it (`vz insert`, whole process) took {build_s:.0f} s." if build_s else ""
    text = f"""## B. Filtered queries ({n:,} x {dim}, cosine, top-k 10)

Command: `.venv/bin/python bench/bench_filtered.py {" ".join(argv)}` (machine: {common.machine()}).

Metadata indexes `n` (number), `cat` (string), `flag` (boolean) created before inserting
`datagen.bench_metadata` records.{built} In-process `LocalBackend(Store(path)).query(...)` over
{a.queries} fresh queries, round-robin over the filters (median and p99 latency); recall@10 against brute force over the rows the
filter selects. "plan" is the planner's choice for the first query. CLI = whole-process
`vz query --filter ... --json`, median of {a.cli_runs} interleaved runs (ratio to the unfiltered CLI query).

| filter | matching rows | wall median | wall p99 | wall vs unfiltered | CPU median | CPU vs unfiltered | recall@10 | plan | CLI whole process |
|---|---:|---:|---:|---:|---:|---:|---:|---|---:|
{chr(10).join(lines)}

**Goal {"met" if worst_cpu <= 3 else "MISSED"}** (latency): the slowest filter takes {worst_cpu:.2f}x the unfiltered query in CPU time
per query ({worst:.2f}x in wall time; goal <= 3x). CPU time (`time.process_time()` around each call; queries are
single-threaded) is what a query costs on an idle machine; wall medians of millisecond calls on this
overloaded box mostly measure preemption, so the goal is judged on CPU time.
**Goal {"met" if worst_rec >= 0.95 else "MISSED"}** (recall): lowest recall@10 {worst_rec:.4f} (goal >= 0.95).
"""
    print(text)
    if not a.no_write and not a.quick:
        update_section("b", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
