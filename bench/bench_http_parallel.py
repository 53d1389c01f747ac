"""Benchmark (issue 17): do concurrent HTTP queries use every core? QPS of C clients against one.

    .venv/bin/python bench/bench_http_parallel.py                    # 100000 x 128, 1 vs 4 clients
    .venv/bin/python bench/bench_http_parallel.py --n 20000 --dim 384 --clients 4 --rounds 5
    .venv/bin/python bench/bench_http_parallel.py --workers 1,2,4 --read-threads 0,2 --rounds 7

For each `--workers` and `--read-threads` setting (default: one worker and two workers; 0 read
threads, the answer-on-the-event-loop mode, and the server's default, one thread per CPU) a
`vz serve` subprocess answers topK-10 queries over
keep-alive connections from bench_http's minimal load generator, each client in its own process
(client threads in one process share its GIL, and at ~1 ms per query that alone held four clients
to ~1.1x the QPS of one). Rounds alternate one client and C clients (closed loop, one connection
each, `--queries` queries per round in all), so machine load hits both alike; the figure is the
median over rounds of QPS(C clients) / QPS(1 client).
Goal: >= 1.8 with 4 clients at 100k+ vectors. The store is cached under bench/out/.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench import common  # noqa: E402
from bench.bench_http import ACCOUNT, NAME, Client, _query_vectors, build  # noqa: E402

POOL: Any = None  # one process per client, started before the first round


def _client(args: tuple[str, int, str, list[bytes], float]) -> tuple[float, int]:
    """In a client process: connect, wait for the common start time, send `bodies` one after
    another; returns (the time the last answer arrived, the number of queries)."""
    host, port, path, bodies, start = args
    client = Client(host, port, path)
    while time.time() < start:  # every client starts together, connected
        time.sleep(0.001)
    for body in bodies:
        client.query(body)
    client.close()
    return time.time(), len(bodies)


def qps(host: str, port: int, path: str, bodies: list[bytes], clients: int) -> float:
    per = len(bodies) // clients
    start = time.time() + 0.2
    done = POOL.map(_client, [(host, port, path, bodies[k * per:(k + 1) * per], start) for k in range(clients)])
    return sum(n for _, n in done) / (max(t for t, _ in done) - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=400, help="queries per round (all clients together)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--read-threads", default=f"0,{os.cpu_count() or 2}",
                    help="comma-separated --read-threads values to compare")
    ap.add_argument("--workers", default="1,2", help="comma-separated --workers values to compare")
    a = ap.parse_args(argv)
    from helpers_server import start_server, stop_server

    global POOL
    POOL = multiprocessing.get_context("fork").Pool(a.clients)
    store = build(a.n, a.dim)
    bodies = [orjson.dumps({"vector": v, "topK": 10}) for v in _query_vectors(a.queries, a.dim)]
    path = f"/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes/{NAME}/query"
    print(f"{a.n} x {a.dim} cosine, topK 10, {a.queries} queries per round, {a.rounds} rounds; "
          f"{common.machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"| --workers | --read-threads | QPS, 1 client | QPS, {a.clients} clients | ratio (median of rounds) "
          "| ratios |")
    print("|---|---|---|---|---|---|")
    settings = [(int(w), int(rt)) for w in a.workers.split(",") for rt in a.read_threads.split(",")]
    for w, rt in settings:
        base_url, proc = start_server(store, extra_args=["--workers", str(w), "--read-threads", str(rt)])
        try:
            host, port = base_url.removeprefix("http://").split(":")
            # warm-up: page cache, mmap, every worker and reader thread
            qps(host, int(port), path, bodies[:100], 1)
            for _ in range(w):
                qps(host, int(port), path, bodies[:100], a.clients)
            ones, manys, ratios = [], [], []
            for _ in range(a.rounds):
                one = qps(host, int(port), path, bodies, 1)
                many = qps(host, int(port), path, bodies, a.clients)
                ones.append(one)
                manys.append(many)
                ratios.append(many / one)
        finally:
            stop_server(proc)
        print(f"| {w} | {rt} | {common.med(ones):.0f} | {common.med(manys):.0f} | **{common.med(ratios):.2f}x** | "
              + ", ".join(f"{r:.2f}" for r in ratios) + " |")
    POOL.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
