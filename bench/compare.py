"""Side by side: vz (library, CLI, HTTP) against chromadb, LanceDB, Qdrant local, sqlite-vec and raw usearch.

Usage::

    bench/setup_peers.sh                                   # once: the bench-only venv bench/.venv
    .venv/bin/python bench/compare.py --sizes 100000x384,100000x768
    .venv/bin/python bench/compare.py --quick              # 10000x384, 50 queries (a few minutes)
    .venv/bin/python bench/compare.py --tools vz-lib,usearch,chromadb --sizes 20000x384

Every tool runs in its own child process (bench/peers/runner.py) on the same seeded clustered
data (bench/datagen.py) and the same fresh queries, one query at a time (single client, no
batching): ingest rate (the tool's whole ingest: rows + index), query latency p50/p99 and QPS,
recall@10 against exact search, filtered queries (``n < limit``) latency and recall against
exact search over the matching rows, disk size, and the child's peak RSS (``ru_maxrss``; every
child loads the N x D float32 array, the same baseline for all). HNSW tools are swept over ef
(LanceDB over nprobes/ef), so tools can be compared at equal recall.

Fairness (issue 17): every HNSW tool builds with vz's M and ef_construction (``vzcli.limits``); the
``chromadb-defaults`` and ``lancedb-defaults`` rows show the peers' own defaults. Each tool runs
``--repeats`` times, round-robin in a rotating order, and every figure is the median with its
min-max. Sweep points are labelled with the ef the search really runs with (``max(ef, results
asked for)``; vz asks for k + 8). CPU per query counts every process doing the work: the tool's
process, each ``vz query`` child (vz-cli) and the ``vz serve`` threads (vz-http).

Writes bench/out/compare-*.json, the ``c`` section of bench/RESULTS.md and bench/compare.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402
from bench.common import BENCH, OUT, PY  # noqa: E402
from bench.results import update_section  # noqa: E402
from vzcli.limits import HNSW_BUILD  # noqa: E402

PEER_PY = os.environ.get("VZ_BENCH_PEER_PYTHON", str(BENCH / ".venv" / "bin" / "python"))
RUNNER = str(BENCH / "peers" / "runner.py")
TOOLS = ["vz-lib", "vz-cli", "vz-http", "usearch", "chromadb", "chromadb-defaults", "lancedb", "lancedb-defaults",
         "qdrant-local", "sqlite-vec"]
TARGET_RECALL = 0.95


def python_for(tool: str) -> str:
    return PY if tool.startswith("vz-") else PEER_PY


def run_child(tool: str, spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run one tool in a child process; return its result plus peak RSS, or an error."""
    Path(spec["workdir"]).parent.mkdir(parents=True, exist_ok=True)
    spec_path = Path(spec["workdir"] + ".spec.json")
    spec_path.write_text(json.dumps(spec))
    py = python_for(tool)
    if not Path(py).exists():
        return {"error": f"interpreter {py} missing (run bench/setup_peers.sh)"}
    err = Path(spec["workdir"] + ".stderr")
    t = time.monotonic()
    with open(err, "wb") as fh:
        proc = subprocess.Popen([py, RUNNER, str(spec_path)], stdout=subprocess.DEVNULL, stderr=fh)
        deadline = t + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, ru = os.wait4(proc.pid, 0)
                return {"error": f"timed out after {timeout:.0f} s"}
            time.sleep(0.2)
    if os.waitstatus_to_exitcode(status) != 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        return {"error": " / ".join(tail)[-400:] or f"exit status {status}"}
    res = json.loads(Path(spec["out"]).read_text())
    # the runner's own VmHWM when present: ru_maxrss of a forked child is floored at our RSS
    res["maxrss_kb"] = res.get("vmhwm_kb") or ru.ru_maxrss
    res["wall_s"] = time.monotonic() - t
    return res


def summarise(res: dict[str, Any], truth: np.ndarray, ftruth: dict[str, np.ndarray], n: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: res.get(k) for k in ("version", "python", "note", "error", "disk_bytes",
                                                  "maxrss_kb", "server_maxrss_kb", "ingest_s")}
    if res.get("error"):
        return out
    out["ingest_rate"] = n / res["ingest_s"]
    # vectors per CPU-second of every process doing the ingest: what the wall rate would be on an
    # idle single core, and far less disturbed than it by other jobs on a shared machine
    out["ingest_cpu_rate"] = n / res["ingest_cpu_s"] if res.get("ingest_cpu_s") else None
    pts = []
    for s in res["sweep"]:
        nq = len(s["ids"])
        lat = s["lat"]
        pts.append({"setting": s["setting"], "recall": common.recall_at_k(s["ids"], truth[:nq]),
                    "p50": float(np.median(lat)), "p99": common.pct(lat, 99), "qps": len(lat) / sum(lat), "nq": nq,
                    "cpu50": float(np.median(s["cpu"])) if s.get("cpu") else None})
    out["sweep"] = pts
    out["filtered"] = []
    for f in res["filtered"]:
        nq = len(f["ids"])
        out["filtered"].append({"label": f["label"], "recall": common.recall_at_k(f["ids"], ftruth[f["label"]][:nq]),
                                "p50": float(np.median(f["lat"])), "p99": common.pct(f["lat"], 99),
                                "cpu50": float(np.median(f["cpu"])) if f.get("cpu") else None})
    ok = [p for p in pts if p["recall"] >= TARGET_RECALL]
    out["pick"] = min(ok, key=lambda p: cost(p)) if ok else max(pts, key=lambda p: p["recall"])
    return out


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": float(np.median(xs)), "min": float(min(xs)), "max": float(max(xs))}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One tool's repeated runs as one summary: medians, with each figure's min-max in ``range``.

    Sweep and filtered points are matched by setting / label; the pick is made again on the medians.
    """
    ok = [r for r in runs if not r.get("error")]
    if not ok:
        return runs[0]
    out = dict(ok[0])
    out["runs"] = len(ok)
    if len(ok) < len(runs):
        out["note"] = ((out.get("note") or "") + f"; {len(runs) - len(ok)} of {len(runs)} runs failed: "
                       + next(r["error"] for r in runs if r.get("error"))).lstrip("; ")
    out["range"] = {}
    for key in ("ingest_rate", "ingest_cpu_rate", "disk_bytes"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            sp = _spread(vals)
            out[key], out["range"][key] = sp["median"], [sp["min"], sp["max"]]
    out["maxrss_kb"] = max(r["maxrss_kb"] or 0 for r in ok)
    for part, label in (("sweep", "setting"), ("filtered", "label")):
        pts = []
        for p0 in ok[0][part]:
            same = [p for r in ok for p in r[part] if p[label] == p0[label]]
            agg: dict[str, Any] = {label: p0[label], "nq": p0.get("nq"), "range": {}}
            for key in ("recall", "p50", "p99", "qps", "cpu50"):
                vals = [p[key] for p in same if p.get(key) is not None]
                if vals:
                    sp = _spread(vals)
                    agg[key], agg["range"][key] = sp["median"], [sp["min"], sp["max"]]
                else:
                    agg[key] = None
            pts.append(agg)
        out[part] = pts
    good = [p for p in out["sweep"] if p["recall"] >= TARGET_RECALL]
    out["pick"] = min(good, key=cost) if good else max(out["sweep"], key=lambda p: p["recall"])
    return out


def cost(p: dict[str, Any]) -> float:
    """CPU time per query where measured in-process, else wall time (see runner.timed)."""
    return p["cpu50"] if p.get("cpu50") is not None else p["p50"]


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else (f"{x * 1000:.2f} ms" if x < 0.1 else f"{x * 1000:.0f} ms")


def fmt_range(p: dict[str, Any], key: str, f: Any = fmt_ms) -> str:
    """``median (min-max)`` of a figure aggregated over runs; the bare value after one run."""
    r = (p.get("range") or {}).get(key)
    if p.get(key) is None or not r or r[0] == r[1]:
        return f(p.get(key))
    return f"{f(p[key])} ({f(r[0])}-{f(r[1])})"


def _rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _rec(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def table(size: str, summ: dict[str, dict[str, Any]], flabels: list[str]) -> str:
    head = ("| tool | version | ingest vec/s | ingest vec per CPU-s | setting (cheapest with recall@10 >= 0.95) | recall@10 | p50 | CPU p50 | p99 | QPS | "
            + " | ".join(f"filtered {lab}: p50 / CPU / recall" for lab in flabels) + " | disk | peak RSS |")
    sep = "|" + "---|" * (12 + len(flabels))
    rows = [head, sep]
    for tool, s in summ.items():
        if s.get("error"):
            rows.append(f"| {tool} | {s.get('version') or '-'} | not measured: {s['error']} |" + " |" * (9 + len(flabels)))
            continue
        p = s["pick"]
        fl = {f["label"]: f for f in s["filtered"]}
        fcells = [f"{fmt_range(fl[lab], 'p50')} / {fmt_range(fl[lab], 'cpu50')} / {fl[lab]['recall']:.3f}"
                  if lab in fl else "n/a" for lab in flabels]
        rss = s["maxrss_kb"] / 1024
        if s.get("server_maxrss_kb"):
            rss_s = f"{rss:.0f} MB client, {s['server_maxrss_kb'] / 1024:.0f} MB server"
        else:
            rss_s = f"{rss:.0f} MB"
        rows.append(f"| {tool} | {s['version']} | {fmt_range(s, 'ingest_rate', _rate)} | "
                    f"{fmt_range(s, 'ingest_cpu_rate', _rate)} | {p['setting']} | "
                    f"{fmt_range(p, 'recall', _rec)} | {fmt_range(p, 'p50')} | {fmt_range(p, 'cpu50')} | "
                    f"{fmt_ms(p['p99'])} | {p['qps']:,.1f} | " + " | ".join(fcells)
                    + f" | {s['disk_bytes'] / 1e6:.0f} MB | {rss_s} |")
    sweeps = []
    for tool, s in summ.items():
        if s.get("sweep") and len(s["sweep"]) > 1:
            pts = ", ".join(f"{p['setting']}: {fmt_range(p, 'recall', _rec)} @ {fmt_ms(p['p50'])} "
                            f"({fmt_range(p, 'cpu50')} CPU)" for p in s["sweep"])
            sweeps.append(f"- {tool}: {pts}")
    notes = [f"- {tool}: {s['note']}" for tool, s in summ.items() if s.get("note")]
    return (f"### {size}\n\n" + "\n".join(rows) + "\n\nSweeps (recall@10 @ wall p50 (CPU p50); median (min-max) over runs):\n" + "\n".join(sweeps)
            + ("\n\nNotes:\n" + "\n".join(notes) if notes else "") + "\n")


def at_recall(s: dict[str, Any], recall: float) -> dict[str, Any]:
    """The cheapest swept point of `s` reaching `recall` (its best-recall point if none does)."""
    ok = [p for p in s["sweep"] if p["recall"] >= recall]
    return min(ok, key=cost) if ok else max(s["sweep"], key=lambda p: p["recall"])


def verdict(size: str, summ: dict[str, dict[str, Any]]) -> list[str]:
    """One goal line per comparison: vz-lib ahead of each peer, within 1.5x of raw usearch.

    Each comparison is at equal or better recall: vz's cheapest setting whose recall@10 is at
    least the peer's (within 0.005, i.e. one result in 200 queries x 10), against the peer's pick.
    """
    vz = summ.get("vz-lib")
    if not vz or vz.get("error"):
        return [f"- {size}: vz-lib not measured"]
    lines = []
    for tool, s in summ.items():
        if tool.startswith("vz-") or tool.endswith("-defaults") or s.get("error"):
            continue  # goals compare at the same build settings: the -defaults rows are for reading
        p = s["pick"]
        v = at_recall(vz, p["recall"] - 0.005)
        lat_r = cost(v) / cost(p)
        ing_r = vz["ingest_rate"] / s["ingest_rate"]
        if tool == "usearch":
            ok = lat_r <= 1.5 and ing_r >= 1 / 1.5
            lines.append(f"- {size} vs raw usearch: vz ({v['setting']}) query CPU {lat_r:.2f}x usearch's at recall "
                         f"{v['recall']:.3f} vs {p['recall']:.3f}, ingest rate {ing_r:.2f}x usearch's "
                         f"(goal: within 1.5x) -> **goal {'met' if ok else 'MISSED'}**")
            continue
        q_ok, i_ok = lat_r < 1 and v["recall"] >= p["recall"] - 0.005, ing_r > 1
        lines.append(f"- {size} vs {tool}: vz ({v['setting']}) query CPU {lat_r:.2f}x {tool}'s at recall "
                     f"{v['recall']:.3f} vs {p['recall']:.3f} -> query **{'ahead' if q_ok else 'NOT ahead'}**; "
                     f"ingest {ing_r:.2f}x {tool}'s -> ingest **{'ahead' if i_ok else 'NOT ahead'}**"
                     + _overlap(vz, s) + _cpu_ratio(vz, s))
    return lines


def _cpu_ratio(vz: dict[str, Any], peer: dict[str, Any]) -> str:
    if not vz.get("ingest_cpu_rate") or not peer.get("ingest_cpu_rate"):
        return ""
    return f"; per CPU-second vz ingests {vz['ingest_cpu_rate'] / peer['ingest_cpu_rate']:.2f}x"


def _overlap(vz: dict[str, Any], peer: dict[str, Any]) -> str:
    """A warning when the two ingest rates' min-max ranges over the repeated runs overlap."""
    a, b = (x.get("range", {}).get("ingest_rate") for x in (vz, peer))
    if not a or not b or a[1] < b[0] or b[1] < a[0]:
        return ""
    return " (ingest ranges over the runs overlap: within noise)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=common.sizes, default="100000x384,100000x768",
                    help="comma-separated NxD (default %(default)s)")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nq-cli", type=int, default=15, help="queries for the whole-process CLI mode")
    ap.add_argument("--efs", default="16,32,64,128")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per tool and size")
    ap.add_argument("--quick", action="store_true", help="10000x384, 50 queries")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of every tool, round-robin; figures are medians with min-max (default %(default)s)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--section", default="c", help="RESULTS.md section to write; another than c also names the "
                    "chart bench/SECTION.png (default %(default)s)")
    ap.add_argument("--title", default="C. Side by side with the peers", help="heading of that section")
    ap.add_argument("--reuse", default="",
                    help="comma-separated tools NOT to re-run: their last raw results (bench/out/cmp/*.result.json, "
                         "peak RSS from bench/out/compare-summary.json) are summarised again")
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    if a.quick:
        a.sizes, a.queries, a.nq_cli = [(10000, 384)], 50, 5
    tools = [t for t in a.tools.split(",") if t]
    unknown = sorted(set(tools + [t for t in a.reuse.split(",") if t]) - set(TOOLS))
    if unknown:
        ap.error(f"unknown tool(s) {', '.join(unknown)}; choose from {', '.join(TOOLS)}")
    try:
        efs = [int(x) for x in a.efs.split(",")]
    except ValueError:
        ap.error(f"--efs must be comma-separated integers, got {a.efs!r}")
    all_summ: dict[str, dict[str, dict[str, Any]]] = {}
    reuse = [t for t in a.reuse.split(",") if t]
    started = common.machine()
    for n, dim in a.sizes:
        size = f"{n}x{dim}"
        data = np.asarray(common.data(n, dim))
        nd = common.ndjson(n, dim, metadata=True)
        qs = common.queries(a.queries, dim)
        qpath = OUT / f"cmp-q-{a.queries}x{dim}.npy"
        np.save(qpath, qs)
        truth = common.datagen.exact_topk(data, qs, 10)
        flt = [("1%", max(1, n // 100)), ("10%", max(1, n // 10))]
        m, efc, _ = HNSW_BUILD
        build = {"M": m, "ef_construction": efc}
        ftruth = {lab: common.datagen.exact_topk(data[:lim], qs, 10) for lab, lim in flt}
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        for rep in range(a.repeats):
            # round-robin in a rotating order: load changes over the run hit every tool alike
            for tool in tools[rep % len(tools):] + tools[:rep % len(tools)]:
                wd = OUT / "cmp" / f"{size}-{tool}-r{rep}"
                shutil.rmtree(wd, ignore_errors=True)
                spec = {"tool": tool, "workdir": str(wd), "data": str(OUT / f"data-{n}x{dim}-s0.npy"),
                        "ndjson": str(nd), "queries": str(qpath), "filters": flt, "efs": efs, "nq_cli": a.nq_cli,
                        "build": build, "out": str(wd) + ".result.json"}
                print(f"[{time.strftime('%H:%M:%S')}] {size} {tool} run {rep + 1}/{a.repeats} ...", flush=True)
                s = summarise(run_child(tool, spec, a.timeout), truth, ftruth, n)
                runs[tool].append(s)
                if s.get("error"):
                    print(f"    error: {s['error']}", flush=True)
                else:
                    print(f"    ingest {s['ingest_rate']:,.0f}/s, pick {s['pick']['setting']} recall "
                          f"{s['pick']['recall']:.3f} CPU {fmt_ms(s['pick']['cpu50'])}", flush=True)
                shutil.rmtree(wd, ignore_errors=True)  # disk size is already measured
        summ = {t: aggregate(r) for t, r in runs.items()}
        # read now, not at start: another run may have finished those tools meanwhile
        prev = json.loads((OUT / "compare-summary.json").read_text()) if reuse and \
            (OUT / "compare-summary.json").exists() else {}
        for tool in reuse:
            old = prev.get(size, {}).get(tool, {})
            found = []
            for raw in sorted((OUT / "cmp").glob(f"{size}-{tool}*.result.json")):
                if raw.name.startswith(f"{size}-{tool}-defaults"):
                    continue
                res = json.loads(raw.read_text())
                res["maxrss_kb"] = res.get("vmhwm_kb") or old.get("maxrss_kb") or 0
                found.append(summarise(res, truth, ftruth, n))
            if found:
                summ[tool] = aggregate(found)
        summ = {t: summ[t] for t in TOOLS if t in summ}
        all_summ[size] = summ
        (OUT / f"compare-{size}.json").write_text(json.dumps(summ, indent=1))
    summary = OUT / ("compare-summary.json" if not (a.no_write or a.quick) else "compare-summary-scratch.json")
    summary.write_text(json.dumps(all_summ, indent=1))

    # --no-write / --quick leave RESULTS.md, the chart and the summary that --reuse reads alone
    png_name = "compare.png" if a.section == "c" else f"{a.section}.png"
    png = BENCH / png_name if not (a.no_write or a.quick) else OUT / "compare-scratch.png"
    chart = subprocess.run([PEER_PY, str(BENCH / "peers" / "chart.py"), str(summary), str(png)],
                           capture_output=True, text=True)
    chart_note = f"![latency vs recall, ingest rate]({png_name})" if chart.returncode == 0 else \
        f"(chart not drawn: {chart.stderr.strip()[-300:]})"
    flabels = ["1%", "10%"]
    body = "\n".join(table(size, summ, flabels) for size, summ in all_summ.items())
    goals = [ln for size, summ in all_summ.items() for ln in verdict(size, summ)]
    text = f"""## {a.title}

Command: `.venv/bin/python bench/compare.py {" ".join(argv)}` (machine: {started}; peers in the bench
venv `bench/.venv`, made by `bench/setup_peers.sh`).

Same seeded clustered data and {a.queries} fresh queries for every tool ({a.nq_cli} for vz-cli, where each
query is a whole `vz query` process), one query at a time. Every HNSW tool builds with vz's
M={HNSW_BUILD[0]} and ef_construction={HNSW_BUILD[1]}; the `-defaults` rows use the peer's own (chromadb:
max_neighbors 16, ef_construction 100; LanceDB: m 20, ef_construction 300). Each tool ran {a.repeats}
time(s), round-robin in a rotating order; figures are medians with (min-max) over the runs.
Ingest per CPU-s = vectors per CPU-second of every process doing the ingest (for vz-http the
server's too, background merge included), less disturbed by other jobs than the wall rate.
`ef=` is the ef a search runs with: max(ef asked, results asked for); vz asks usearch for k + 8 = 18,
so its "ef=16" runs as ef=18. Ingest = the tool's whole ingest (rows +
index) from the tool's natural input: NDJSON file for vz (parse included), the numpy array for peers.
QPS = queries / total latency, single client. CPU = CPU time per query of every process doing the
work: the tool's process (all threads), each `vz query` child for vz-cli, and the `vz serve`
threads (from `/proc/<pid>/task/*/schedstat`) plus the client for vz-http. Filtered = rows with `n < limit` (1% / 10% of rows);
recall against exact search over those rows. Peak RSS = the child's VmHWM (every child holds
the N x D float32 array too); figures from runs before that fix are the child's `ru_maxrss`, which
Linux floors at the parent's RSS at fork time (~430 MB here), so values near 430-440 MB mean "at most that". Each table row shows the cheapest swept setting reaching recall@10 >= 0.95.

{body}
Goal lines (vz as a library, at the setting picked above):

{chr(10).join(goals)}

{chart_note}
"""
    print(text)
    if not a.no_write and not a.quick:
        update_section(a.section, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
