"""Draw bench/scale.png from the results of bench/bench_scale.py (run in the bench venv: needs matplotlib).

Usage: python bench/peers/scale_chart.py SCALE.json OUT.png

Left: the issue-17 ratios against N (log x): whole-process query / the 1k query, per-query cost of
the library and of HTTP / raw usearch, ingest raw usearch / vz; dashed lines are the goals.
Right: absolute costs against N (log-log): whole-process query, per-query CPU of raw usearch,
the library and HTTP. One line per dimension.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RATIOS = [("wp_big_over_small", "whole-process query / 1k query", "#d62728", 1.2),
          ("lib_over_raw", "library per query / raw usearch", "#1f77b4", 1.5),
          ("http_over_raw", "HTTP per query / raw usearch", "#9467bd", 1.5),
          ("raw_over_ingest", "raw usearch ingest / vz ingest", "#2ca02c", 1 / 0.8)]


def main() -> int:
    res = json.loads(open(sys.argv[1]).read())
    dims = sorted({r["dim"] for r in res.values()})
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
    for dim in dims:
        rows = sorted((r for r in res.values() if r["dim"] == dim), key=lambda r: r["n"])
        ns = [r["n"] for r in rows]
        style = "o-" if dim == dims[0] else "s--"
        for key, label, color, _ in RATIOS:
            vals = [(1 / r["ingest_over_raw"] if r.get("ingest_over_raw") else None) if key == "raw_over_ingest"
                    else r.get(key) for r in rows]
            pts = [(n, v) for n, v in zip(ns, vals, strict=True) if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), style, color=color, label=f"{label} ({dim}-d)")
        costs = [("whole-process query (wall)", lambda r: r["whole_process"]["big"]["median"], "#d62728"),
                 ("whole-process query (CPU)", lambda r: r["whole_process"]["big"].get("cpu"), "#ff9896"),
                 ("raw usearch search (CPU)", lambda r: r["per_query"]["cpu"].get("raw"), "#7f7f7f"),
                 ("library query (CPU)", lambda r: r["per_query"]["cpu"]["lib"], "#1f77b4"),
                 ("HTTP query (client+server CPU)", lambda r: r["per_query"]["cpu"]["http"], "#9467bd")]
        for label, get, color in costs:
            pts = [(r["n"], get(r) * 1000) for r in rows if get(r) is not None]
            if pts:
                bx.plot(*zip(*pts, strict=True), style, color=color, label=f"{label} ({dim}-d)")
    for _, _, color, goal in RATIOS:
        ax.axhline(goal, color=color, linestyle=":", linewidth=1)
    ax.set_ylabel("ratio (dotted: goal)")
    bx.set_yscale("log")
    bx.set_ylabel("ms per query (log)")
    for a, title in ((ax, "issue-17 ratios against N (lower is better)"), (bx, "cost per query against N")):
        a.set_xscale("log")
        a.set_xlabel("N (vectors, log)")
        a.set_title(title)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
