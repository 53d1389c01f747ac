"""Benchmark: one keep-alive HTTP client's cost per query against `vz serve` variants, interleaved.

Each variant is a `vz serve --workers 1` subprocess run from a checkout (PYTHONPATH) with extra
arguments; all of them serve the same store at once, and rounds alternate between them, so the
machine's load hits each alike. For each variant: the median over rounds of the wall time per
query, of the server's CPU per query (every thread of its process, from /proc) and of the
client's; then each variant's ratio to the first, per round, with its spread.

    git worktree add /tmp/vz-before <commit>      # the code to compare against
    .venv/bin/python bench/bench_http_ab.py --store $VZ_BENCH_OUT/scale/store-1000000x128 --index big \\
        --variant before=/tmp/vz-before --variant now=. --variant now-loop=.:--read-threads=0

Linux only (/proc). Queries: topK 10, random normal vectors (seed 1), 200 of them in turn.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PY = sys.executable


def _cpu(pid: int) -> float:
    """CPU seconds of every thread of `pid` so far."""
    tot = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tot += int(fields[11]) + int(fields[12])
    return tot / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Variant:
    def __init__(self, spec: str, store: Path) -> None:
        self.name, _, rest = spec.partition("=")
        path, _, args = rest.partition(":")
        self.port = _free_port()
        checkout = Path(path or ".").resolve()
        # run from the checkout: `python -m` puts the working directory ahead of PYTHONPATH
        self.proc = subprocess.Popen([PY, "-m", "vzcli", "serve", "--store", str(store.resolve()), "--port",
                                      str(self.port), "--workers", "1", *[a for a in args.split(",") if a]],
                                     env=dict(os.environ, PYTHONPATH=str(checkout)), cwd=checkout,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        deadline = time.monotonic() + 120
        while True:
            try:
                self.conn.connect()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise SystemExit(f"{self.name}: vz serve did not start") from None
                time.sleep(0.1)
        self.rounds: list[tuple[float, float, float]] = []

    def ask(self, path: str, body: bytes) -> None:
        for attempt in (0, 1):
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                data = r.read()
                if r.status != 200:
                    raise SystemExit(f"{self.name}: HTTP {r.status}: {data[:300]!r}")
                return
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if attempt:
                    raise
                self.conn.close()  # the server closed an idle keep-alive connection: open another
                self.conn.connect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--index", required=True)
    ap.add_argument("--variant", action="append", required=True,
                    help="NAME=CHECKOUT[:ARG,ARG...], e.g. now=. or loop=.:--read-threads=0 (repeat; the first is the base)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--queries", type=int, default=500, help="queries per round and variant")
    ap.add_argument("--warm", type=int, default=300, help="unmeasured queries per variant first")
    a = ap.parse_args()
    out = subprocess.run([PY, "-m", "vzcli", "get", a.index, "--json"], capture_output=True, check=True,
                         env=dict(os.environ, VZ_STORE=str(a.store), PYTHONPATH=str(Path(".").resolve())))
    dims = int(json.loads(out.stdout)["config"]["dimensions"])
    rng = np.random.default_rng(1)
    bodies = [json.dumps({"vector": v.tolist(), "topK": 10}).encode()
              for v in rng.standard_normal((200, dims)).astype(np.float32)]
    path = f"/client/v4/accounts/bench/vectorize/v2/indexes/{a.index}/query"
    variants = [Variant(s, a.store) for s in a.variant]
    try:
        for v in variants:
            for i in range(a.warm):
                v.ask(path, bodies[i % len(bodies)])
        for _ in range(a.rounds):
            for v in variants:
                s0, c0, w0 = _cpu(v.proc.pid), time.process_time(), time.perf_counter()
                for i in range(a.queries):
                    v.ask(path, bodies[i % len(bodies)])
                n = a.queries / 1e3
                v.rounds.append(((time.perf_counter() - w0) / n, (_cpu(v.proc.pid) - s0) / n,
                                 (time.process_time() - c0) / n))
    finally:
        for v in variants:
            v.proc.terminate()
            v.proc.wait()
    print(f"{a.store.name}/{a.index} ({dims}-d), {a.rounds} rounds x {a.queries} queries, one client; "
          f"load average {os.getloadavg()[0]:.1f}; ms per query, medians over rounds")
    print("| variant | wall | server CPU | client CPU | wall / first's (rounds) |")
    print("|---|---:|---:|---:|---|")
    base = variants[0]
    for v in variants:
        med = [statistics.median(r[i] for r in v.rounds) for i in range(3)]
        ratios = [r[0] / b[0] for r, b in zip(v.rounds, base.rounds, strict=True)]
        rel = "" if v is base else (f"**{statistics.median(ratios):.2f}x** "
                                    f"({min(ratios):.2f}-{max(ratios):.2f})")
        print(f"| {v.name} | {med[0]:.3f} | {med[1]:.3f} | {med[2]:.3f} | {rel} |")


if __name__ == "__main__":
    main()
