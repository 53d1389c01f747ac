"""Whole-process `vz query --json` on a big index against a small one in the same store (issue 17:
"a query costs the same at five million vectors as at a thousand").

Usage::

    .venv/bin/python bench/query_process.py --store STORE [--big big] [--small small] [--runs 15]

Runs `vz --store STORE query INDEX --vector ... --top-k 10 --json` as a fresh process, alternating
big and small (interleaved, after 2 warm-up runs each), and prints the median wall and CPU time
(user + system) of each, their ratios, the peak RSS of each process (`ru_maxrss` from `wait4`)
and, at exit, its anonymous and file-backed RSS (file-backed pages are the page cache's, shared:
mapped ANN pages count there). The process is `python -c` running vz's entry point with an
atexit hook that reports /proc/self/status. The query vector is the first of
`bench/common.queries` at the index's dimensions. Prints markdown; writes nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import common  # noqa: E402

HOOK = """
import atexit, sys
def _rss():
    s = {l.split(":")[0]: l.split()[1] for l in open("/proc/self/status") if l.startswith(("RssAnon", "RssFile"))}
    sys.stderr.write("VZRSS %s %s\\n" % (s["RssAnon"], s["RssFile"]))
atexit.register(_rss)
from vzcli.cli import main
sys.argv = ["vz"] + sys.argv[1:]
main()
"""


def _run(cmd: list[str]) -> tuple[float, float, int, int, int]:
    """(wall s, CPU s, peak RSS KiB, anonymous RSS KiB at exit, file-backed RSS KiB at exit)."""
    t = time.perf_counter()
    # cwd "/": `python -c` puts the working directory first on sys.path (a checkout's vzcli would win)
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode() if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed: {err}")
    anon, file = (int(x) for x in err.rsplit("VZRSS ", 1)[1].split()[:2])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, anon, file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--big", default="big")
    ap.add_argument("--small", default="small")
    ap.add_argument("--runs", type=int, default=15)
    a = ap.parse_args(argv)

    import sqlite3

    with sqlite3.connect(Path(a.store) / "catalog.sqlite3") as c:
        dims = {n: d for n, d in c.execute("SELECT name, dimensions FROM indexes")}
        counts = {n: v for n, v in c.execute("SELECT name, vector_count FROM indexes")}
    q = common.queries(1, dims[a.big])[0]
    vec = [repr(float(x)) for x in q]
    python = str(Path(common.VZ).with_name("python"))
    cmds = {name: [python, "-c", HOOK, "--store", a.store, "query", name, "--vector", *vec, "--top-k", "10", "--json"]
            for name in (a.big, a.small)}
    runs: dict[str, list[tuple[float, float, int, int, int]]] = {n: [] for n in cmds}
    for i in range(a.runs + 2):
        for name, cmd in cmds.items():
            r = _run(cmd)
            if i >= 2:
                runs[name].append(r)
    print("| index | vectors | median wall ms (min-max) | median CPU ms | peak RSS MiB | anon / file RSS MiB at exit |")
    print("|---|---:|---:|---:|---:|---:|")
    med: dict[str, tuple[float, float]] = {}
    for name in cmds:
        ws, cs = [r[0] * 1000 for r in runs[name]], [r[1] * 1000 for r in runs[name]]
        med[name] = (statistics.median(ws), statistics.median(cs))
        print(f"| {name} | {counts[name]} | {med[name][0]:.0f} ({min(ws):.0f}-{max(ws):.0f}) | {med[name][1]:.0f} | "
              f"{max(r[2] for r in runs[name]) / 1024:.0f} | {max(r[3] for r in runs[name]) / 1024:.0f} / "
              f"{max(r[4] for r in runs[name]) / 1024:.0f} |")
    print(f"\nratio big / small, medians of {a.runs} interleaved runs: wall {med[a.big][0] / med[a.small][0]:.2f}x, "
          f"CPU {med[a.big][1] / med[a.small][1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
