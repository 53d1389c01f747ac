"""Draw bench/compare.png from bench/out/compare-summary.json (run in the bench venv: needs matplotlib).

Usage: python bench/peers/chart.py SUMMARY.json OUT.png

One row per data size: left, query latency p50 (log scale) against recall@10, one line per tool
through its sweep; right, ingest rate per tool.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"vz-lib": "#d62728", "vz-cli": "#ff9896", "vz-http": "#e377c2", "usearch": "#7f7f7f",
          "chromadb": "#1f77b4", "lancedb": "#2ca02c", "qdrant-local": "#9467bd", "sqlite-vec": "#8c564b",
          "chromadb-defaults": "#aec7e8", "lancedb-defaults": "#98df8a"}


def main() -> int:
    summary = json.loads(open(sys.argv[1]).read())
    sizes = list(summary)
    fig, axes = plt.subplots(len(sizes), 2, figsize=(13, 4.6 * len(sizes)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.6, 1]})
    for row, size in zip(axes, sizes, strict=True):
        ax, bx = row
        tools = {t: s for t, s in summary[size].items() if not s.get("error")}
        for tool, s in tools.items():
            pts = sorted(s["sweep"], key=lambda p: p["recall"])
            ax.plot([p["recall"] for p in pts], [p["p50"] * 1000 for p in pts], "o-", label=tool,
                    color=COLORS.get(tool, "#17becf"), markersize=5)
        ax.set_yscale("log")
        ax.set_xlabel("recall@10 vs exact")
        ax.set_ylabel("query latency p50 (ms, log)")
        ax.set_title(f"{size}: latency vs recall (one client, top-10)")
        ax.axvline(0.95, color="#bbbbbb", linestyle="--", linewidth=1)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        names = list(tools)
        rates = [tools[t]["ingest_rate"] for t in names]
        bars = bx.barh(names, rates, color=[COLORS.get(t, "#17becf") for t in names])
        bx.bar_label(bars, labels=[f"{r:,.0f}" for r in rates], fontsize=8, padding=2)
        bx.set_xscale("log")  # brute-force tools (no index to build) ingest orders of magnitude faster
        bx.set_xlabel("ingest (vectors/s, rows + index, log)")
        bx.set_title(f"{size}: ingest rate")
        bx.invert_yaxis()
        if rates:
            bx.set_xlim(min(rates) / 2, max(rates) * 4)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
