"""Issue 3 benchmarks (vectors): whole-process query, small upserts, bulk insert, recall.

Usage::

    .venv/bin/python bench/bench_core.py                 # A1..A4 at the sizes of the brief
    .venv/bin/python bench/bench_core.py --only a1,a4    # some parts
    .venv/bin/python bench/bench_core.py --quick         # small sizes, a smoke run (~1 min)

Each part prints its figures and replaces its own section of bench/RESULTS.md (unless
``--no-write``). Stores and data go to bench/out/ (git-ignored).

A1  whole-process ``vz query --json`` on an NxD cosine index vs the floor
    ``python -c "import numpy, usearch.index"`` (interleaved, median)        goal <= 1.5x
A2  ``vz upsert`` of 10 vectors into a big vs a small index, new ids and
    replaced ids (interleaved, median)                                       goal <= 2x
A3  bulk ``vz insert`` of NDJSON vs raw usearch ``Index.add`` of the same
    array, same threads (vectors/s)                                          goal >= 0.6x
A4  recall@10 vs exact at default settings, and after 30% of the vectors
    were upserted with new values                                            goal >= 0.95
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.common import OUT, PY, VZ, interleaved, med, ms, wall_cpu  # noqa: E402
from bench.results import update_section  # noqa: E402

FLOOR = [PY, "-c", "import numpy, usearch.index"]


def _cmdline(argv: list[str]) -> str:
    return ".venv/bin/python bench/bench_core.py " + " ".join(argv)


def _catalog(store: Path, name: str) -> dict[str, object]:
    """The index's catalog row plus the size of its delta (records newer than the HNSW file)."""
    con = sqlite3.connect(f"file:{store / 'catalog.sqlite3'}?mode=ro", uri=True)
    try:
        cur = con.execute("SELECT * FROM indexes WHERE name = ?", (name,))
        row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
        row["delta"] = con.execute("SELECT count(*) FROM vectors WHERE index_id = ? AND key > ?",
                                   (row["id"], row["ann_max_key"])).fetchone()[0]
        return row
    finally:
        con.close()


def _goal(ok: bool, text: str) -> str:
    return f"**Goal {'met' if ok else 'MISSED'}**: {text}"


def importtime_top(n: int = 15) -> str:
    """Top ``n`` entries of ``python -X importtime -c "import vzcli.cli"`` by cumulative time."""
    r = subprocess.run([PY, "-X", "importtime", "-c", "import vzcli.cli"], capture_output=True, text=True)
    rows = []
    for ln in r.stderr.splitlines():
        if not ln.startswith("import time:") or "cumulative" in ln:
            continue
        self_us, cum_us, mod = ln.split(":", 1)[1].split("|", 2)
        rows.append((int(cum_us), int(self_us), mod.rstrip()))
    rows.sort(reverse=True)
    lines = ["| cumulative | self | module |", "|---:|---:|---|"]
    for cum, slf, mod in rows[:n]:
        lines.append(f"| {cum / 1000:.1f} ms | {slf / 1000:.1f} ms | `{mod.strip()}` |")
    return "\n".join(lines)


# --- A3 + the store for A1/A4 -------------------------------------------------------------------

RAW_ADD = r"""
import sys, time, numpy as np
from usearch.index import Index
arr = np.load(sys.argv[1])[: int(sys.argv[2])]
idx = Index(ndim=arr.shape[1], metric="cos", dtype=sys.argv[3], connectivity=16, expansion_add=64)
c, t = time.process_time(), time.perf_counter()
idx.add(np.arange(len(arr), dtype=np.uint64), arr, threads=0)
print(time.perf_counter() - t, time.process_time() - c)
"""


def part_a3(n: int, dim: int, runs: int, argv: list[str], write: bool) -> None:
    common.data(n, dim)
    nd = common.ndjson(n, dim)
    npy = OUT / f"data-{n}x{dim}-s0.npy"
    store = OUT / f"q-{n}x{dim}"  # the last build is the store A1 and A4 query

    def vz_run() -> tuple[float, float]:
        import shutil

        shutil.rmtree(store, ignore_errors=True)
        common.vz(store, "create", "q", "--dimensions", str(dim), "--metric", "cosine")
        t, c = wall_cpu([VZ, "--store", str(store), "insert", "q", "--file", str(nd)])
        row = _catalog(store, "q")
        assert row["ann_file"] and row["ann_nodes"] == n, row
        print(f"  vz insert: {t:.1f} s wall, {c:.1f} s CPU", flush=True)
        return t, c

    def raw_run(dtype: str) -> Callable[[], tuple[float, float]]:
        def run() -> tuple[float, float]:
            r = subprocess.run([PY, "-c", RAW_ADD, str(npy), str(n), dtype], check=True, capture_output=True, text=True)
            t, c = (float(x) for x in r.stdout.split())
            print(f"  raw add ({dtype}): {t:.1f} s wall, {c:.1f} s CPU", flush=True)
            return t, c
        return run

    # vz's files store f16 (VZ_ANN_DTYPE): raw f16 is the same parameters; f32 is what vz built before
    both = interleaved({"vz": vz_run, "raw": raw_run("f16"), "raw32": raw_run("f32")}, runs, warmup=0)
    res = {k: [x[0] for x in v] for k, v in both.items()}
    cpu = {k: [x[1] for x in v] for k, v in both.items()}
    vz_rate = n / med(res["vz"])
    raw_rate = n / med(res["raw"])
    ratio = vz_rate / raw_rate
    # each round runs vz, raw f16 and raw f32 back to back: a round's ratio compares runs seconds
    # apart, so its median is the figure a machine whose speed drifts over minutes disturbs least
    pairs = [r / v for v, r in zip(res["vz"], res["raw"], strict=True)]
    cpairs = [r / v for v, r in zip(cpu["vz"], cpu["raw"], strict=True)]
    pair_ratio = med(pairs)
    cratio = med(cpu["raw"]) / med(cpu["vz"])
    ratio32, cratio32 = vz_rate / (n / med(res["raw32"])), med(cpu["raw32"]) / med(cpu["vz"])
    size_nd = nd.stat().st_size / 1e6
    text = f"""## A3. Bulk `vz insert` vs raw usearch `add` ({n:,} x {dim}, cosine)

Command: `{_cmdline(argv)}` (machine: {common.machine()}).

`vz --store S insert q --file data.ndjson` as one whole process ({size_nd:.0f} MB of NDJSON: parse,
SQLite, HNSW build with threads=0, fsync'd save) against raw usearch
`Index(ndim={dim}, metric="cos", dtype="f16", connectivity=16, expansion_add=64).add(keys, array, threads=0)`
(vz's files store f16) and the same in f32 (what vz built before), on the same array in a child
process (the `add` call only). {runs} runs each, interleaved; median.

| | wall runs (s) | wall median | vectors/s (wall) | CPU runs (s) | CPU median | vectors per CPU-second |
|---|---|---:|---:|---|---:|---:|
| vz insert (whole process) | {", ".join(f"{x:.1f}" for x in res["vz"])} | {med(res["vz"]):.1f} s | {vz_rate:,.0f} | {", ".join(f"{x:.1f}" for x in cpu["vz"])} | {med(cpu["vz"]):.1f} s | {n / med(cpu["vz"]):,.0f} |
| raw usearch add, f16 | {", ".join(f"{x:.1f}" for x in res["raw"])} | {med(res["raw"]):.1f} s | {raw_rate:,.0f} | {", ".join(f"{x:.1f}" for x in cpu["raw"])} | {med(cpu["raw"]):.1f} s | {n / med(cpu["raw"]):,.0f} |
| raw usearch add, f32 | {", ".join(f"{x:.1f}" for x in res["raw32"])} | {med(res["raw32"]):.1f} s | {n / med(res["raw32"]):,.0f} | {", ".join(f"{x:.1f}" for x in cpu["raw32"])} | {med(cpu["raw32"]):.1f} s | {n / med(cpu["raw32"]):,.0f} |

Round by round (raw usearch f16 time / vz time, wall): {", ".join(f"{x:.2f}" for x in pairs)}, median
{pair_ratio:.2f}x; CPU: {", ".join(f"{x:.2f}" for x in cpairs)}, median {med(cpairs):.2f}x.

{_goal(pair_ratio >= 0.8 and ratio >= 0.8, f"vz inserts at {pair_ratio:.2f}x the raw usearch f16 rate in wall time, the median of the rounds' ratios ({ratio:.2f}x as the ratio of the medians; goal >= 0.8x, both must meet it).")}
Per CPU-second the ratio is {cratio:.2f}x. Against raw usearch in f32: {ratio32:.2f}x wall, {cratio32:.2f}x CPU. On an idle machine wall time, not CPU time, is what counts:
the HNSW build runs on both cores in both cases, but vz's NDJSON parsing and SQLite writes run on one,
so on an idle 2-core box vz's wall-time ratio would be lower than its CPU ratio.
"""
    print(text)
    if write:
        update_section("a3", text)


# --- A1 ---------------------------------------------------------------------------------------

def part_a1(n: int, dim: int, runs: int, argv: list[str], write: bool) -> None:
    store = OUT / f"q-{n}x{dim}"
    if not (store / "catalog.sqlite3").exists() or _catalog(store, "q")["vector_count"] != n:
        print(f"building {store} ...", flush=True)
        common.build_store(store, "q", n, dim)
    qs = common.queries(8, dim)
    qfiles = []
    for i, q in enumerate(qs):
        p = OUT / f"a1-q{i}.json"
        p.write_text(json.dumps(q.astype(float).tolist()))
        qfiles.append(p)
    state = {"i": 0}

    def query() -> float:
        state["i"] += 1
        f = qfiles[state["i"] % len(qfiles)]
        return wall_cpu([VZ, "--store", str(store), "query", "q", "--vector-file", str(f), "--top-k", "10", "--json"])

    both = interleaved({"floor": lambda: wall_cpu(FLOOR), "query": query}, runs, warmup=3)
    res = {k: [x[0] for x in v] for k, v in both.items()}
    cpu = {k: [x[1] for x in v] for k, v in both.items()}
    ratio = med(res["query"]) / med(res["floor"])
    cratio = med(cpu["query"]) / med(cpu["floor"])
    row = _catalog(store, "q")
    text = f"""## A1. Whole-process `vz query --json` ({n:,} x {dim}, cosine, top-k 10)

Command: `{_cmdline(argv)}` (machine: {common.machine()}).

`vz --store S query q --vector-file q.json --top-k 10 --json` (8 different query vectors in turn;
HNSW file of {row["ann_nodes"]:,} nodes, delta {row["delta"]}) against the floor
`python -c "import numpy, usearch.index"`; {runs} runs each, interleaved after 3 warm-up rounds
(warm page cache).

| | wall median | wall p10 | wall p90 | CPU (user+sys) median |
|---|---:|---:|---:|---:|
| floor: import numpy, usearch.index | {ms(med(res["floor"]))} | {ms(common.pct(res["floor"], 10))} | {ms(common.pct(res["floor"], 90))} | {ms(med(cpu["floor"]))} |
| vz query --json | {ms(med(res["query"]))} | {ms(common.pct(res["query"], 10))} | {ms(common.pct(res["query"], 90))} | {ms(med(cpu["query"]))} |

{_goal(ratio <= 1.5, f"vz query takes {ratio:.2f}x the floor in wall time (goal <= 1.5x).")}
In CPU time (user+sys of the child, much less sensitive to the other jobs on the machine) the ratio
is {cratio:.2f}x{" (also within the goal)" if cratio <= 1.5 else " (over the goal's bound)"}.
"""
    if ratio > 1.5 or cratio > 1.5:
        text += ("\nImport-time breakdown (`python -X importtime -c \"import vzcli.cli\"`, top entries by "
                 "cumulative time):\n\n" + importtime_top() + "\n")
    print(text)
    if write:
        update_section("a1", text)


# --- A2 ---------------------------------------------------------------------------------------

def _ndjson_bytes(ids: list[str], vecs: np.ndarray) -> bytes:
    return b"".join(json.dumps({"id": i, "values": v.astype(float).tolist()}).encode() + b"\n"
                    for i, v in zip(ids, vecs, strict=True))


def part_a2(big: int, small: int, dim: int, runs: int, argv: list[str], write: bool) -> None:
    stores = {}
    for label, n in (("big", big), ("small", small)):
        s = OUT / f"up-{n}x{dim}"
        if not (s / "catalog.sqlite3").exists() or _catalog(s, "u")["vector_count"] != n or \
                _catalog(s, "u")["delta"] or _catalog(s, "u")["ann_dead"]:
            print(f"building {s} ...", flush=True)
            common.build_store(s, "u", n, dim)
        stores[label] = (s, n)
    rng = np.random.default_rng(7)
    fresh = common.queries(10 * (runs + 4) * 4, dim, seed=99)  # new values from the same mixture
    counter = {"v": 0, "run": 0}
    events: list[str] = []

    def make(label: str, mode: str):
        s, n = stores[label]

        def run() -> float:
            counter["run"] += 1
            j = counter["v"]
            counter["v"] += 10
            vecs = fresh[j:j + 10]
            if mode == "new":
                ids = [f"new-{counter['run']}-{k}" for k in range(10)]
            else:
                ids = [str(x) for x in rng.choice(n, 10, replace=False)]
            f = OUT / f"a2-{label}-{mode}.ndjson"
            f.write_bytes(_ndjson_bytes(ids, vecs))
            before = _catalog(s, "u")
            t, c = wall_cpu([VZ, "--store", str(s), "upsert", "u", "--file", str(f)])
            after = _catalog(s, "u")
            if after["ann_file"] != before["ann_file"]:
                events.append(f"{label}/{mode}: the HNSW file was rebuilt/merged in one run "
                              f"({t:.2f} s; delta was {before['delta']})")
            return t, c

        return run

    cmds = {f"{lab}-{mode}": make(lab, mode) for lab in ("big", "small") for mode in ("new", "replace")}
    both = interleaved(cmds, runs, warmup=1)
    res = {k: [x[0] for x in v] for k, v in both.items()}
    cpu = {k: [x[1] for x in v] for k, v in both.items()}
    rows = {s: _catalog(stores[s][0], "u") for s in stores}
    r_new = med(res["big-new"]) / med(res["small-new"])
    r_rep = med(res["big-replace"]) / med(res["small-replace"])
    c_new = med(cpu["big-new"]) / med(cpu["small-new"])
    c_rep = med(cpu["big-replace"]) / med(cpu["small-replace"])
    lines = "\n".join(f"| {k} | {ms(med(v))} | {ms(common.pct(v, 10))} | {ms(common.pct(v, 90))} | {ms(med(cpu[k]))} |"
                      for k, v in res.items())
    text = f"""## A2. `vz upsert` of 10 vectors: {big:,} x {dim} vs {small:,} x {dim}

Command: `{_cmdline(argv)}` (machine: {common.machine()}).

Whole process `vz --store S upsert u --file ten.ndjson`; "new" = 10 ids not in the index, "replace" =
10 random existing ids with new values. {runs} runs of each of the 4 cases, interleaved after 1
warm-up round. VZ_MERGE_THRESHOLD is the default 2000; at the end the big index had a delta of
{rows["big"]["delta"]} records and {rows["big"]["ann_dead"]} dead HNSW nodes, the small one
{"no HNSW file (below the threshold, searched exactly)" if rows["small"]["ann_file"] is None else "an HNSW file"}.
Merges/rebuilds during timed runs: {"; ".join(events) if events else "none"}.

| case | wall median | wall p10 | wall p90 | CPU (user+sys) median |
|---|---:|---:|---:|---:|
{lines}

{_goal(r_new <= 2 and r_rep <= 2, f"big/small wall time = {r_new:.2f}x for new ids, {r_rep:.2f}x for replaced ids (goal <= 2x).")}
In CPU time: {c_new:.2f}x for new ids, {c_rep:.2f}x for replaced ids.
"""
    print(text)
    if write:
        update_section("a2", text)


# --- A4 ---------------------------------------------------------------------------------------

def _recall_run(be, name: str, qs: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    found, lat = [], []
    for q in qs:
        ql = q.astype(float).tolist()
        t = time.perf_counter()
        r = be.query(name, vector=ql, top_k=10)
        lat.append(time.perf_counter() - t)
        found.append([int(m["id"]) for m in r["matches"]])
    return common.recall_at_k(found, truth), med(lat)


def part_a4(n: int, dim: int, nq: int, frac: float, batch: int, argv: list[str], write: bool) -> None:
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    src = OUT / f"q-{n}x{dim}"
    store = OUT / f"a4-{n}x{dim}"
    if not (src / "catalog.sqlite3").exists() or _catalog(src, "q")["vector_count"] != n:
        common.build_store(src, "q", n, dim)
    import shutil

    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(src, store)
    data = np.array(common.data(n, dim))
    qs = common.queries(nq, dim)
    be = LocalBackend(Store(store))
    truth = common.datagen.exact_topk(data, qs, 10)
    rec0, lat0 = _recall_run(be, "q", qs, truth)

    rng = np.random.default_rng(11)
    ids = rng.choice(n, int(n * frac), replace=False)
    newv = common.queries(len(ids), dim, seed=12345)  # new values from the same mixture
    actions = []
    for s in range(0, len(ids), batch):
        part = ids[s:s + batch]
        before = _catalog(store, "q")
        buf = io.BytesIO(_ndjson_bytes([str(i) for i in part], newv[s:s + batch]))
        be.upsert("q", buf)
        after = _catalog(store, "q")
        if after["ann_file"] != before["ann_file"]:
            actions.append(f"after {s + len(part):,}: HNSW file {after['ann_nodes']:,} nodes "
                           f"(dead {after['ann_dead']}, tombstones {after['ann_tombstones']})")
        data[part] = newv[s:s + batch]
    end = _catalog(store, "q")
    truth2 = common.datagen.exact_topk(data, qs, 10)
    be = LocalBackend(Store(store))
    rec1, lat1 = _recall_run(be, "q", qs, truth2)
    text = f"""## A4. recall@10 vs exact ({n:,} x {dim} clustered, cosine, default settings)

Command: `{_cmdline(argv)}` (machine: {common.machine()}).

{nq} fresh queries from the data's mixture, in-process `LocalBackend.query(top_k=10)`, against
`datagen.exact_topk`. Then {frac:.0%} of the ids ({len(ids):,}) were upserted with new values (fresh
points of the same mixture) in batches of {batch:,} through `LocalBackend.upsert`, and the ground
truth was recomputed on the updated array.

| state | recall@10 | median query latency (in-process) |
|---|---:|---:|
| fresh index | {rec0:.4f} | {ms(lat0)} |
| after {frac:.0%} upserted anew | {rec1:.4f} | {ms(lat1)} |

HNSW maintenance during the upserts: {"; ".join(actions) if actions else "none"}. At the end: delta
{end["delta"]} records searched exactly, {end["ann_dead"]} dead nodes, {end["ann_tombstones"]} tombstones.

{_goal(rec0 >= 0.95 and rec1 >= 0.95, f"recall@10 {rec0:.4f} fresh, {rec1:.4f} after the upserts (goal >= 0.95).")}
"""
    print(text)
    if write:
        update_section("a4", text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="a1,a2,a3,a4")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    p.add_argument("--a1-n", type=int, default=100_000)
    p.add_argument("--a1-runs", type=int, default=21)
    p.add_argument("--a2-big", type=int, default=200_000)
    p.add_argument("--a2-small", type=int, default=1_000)
    p.add_argument("--a2-runs", type=int, default=11)
    p.add_argument("--a3-n", type=int, default=100_000)
    p.add_argument("--a3-runs", type=int, default=3)
    p.add_argument("--a4-n", type=int, default=100_000)
    p.add_argument("--a4-queries", type=int, default=300)
    a = p.parse_args(argv)
    if a.quick:
        a.a1_n, a.a1_runs, a.a2_big, a.a2_runs, a.a3_n, a.a3_runs, a.a4_n, a.a4_queries = \
            5000, 5, 5000, 3, 2000, 1, 5000, 50
    write = not a.no_write and not a.quick
    os.environ.pop("VZ_MERGE_THRESHOLD", None)
    parts = a.only.split(",")
    if "a3" in parts:
        part_a3(a.a3_n, 768, a.a3_runs, argv, write)
    if "a1" in parts:
        part_a1(a.a1_n, 768, a.a1_runs, argv, write)
    if "a4" in parts:
        part_a4(a.a4_n, 768, a.a4_queries, 0.30, 3000, argv, write)
    if "a2" in parts:
        part_a2(a.a2_big, a.a2_small, 384, a.a2_runs, argv, write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
