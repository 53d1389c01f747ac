"""Benchmark (issue 5): query latency and throughput through `vz serve` against the core directly.

The same queries (fresh points of the data's mixture, topK 10, no values or metadata) run
(1) in this process through `LocalBackend.query`, the core the server calls, and (2) through HTTP:
POST /client/v4/accounts/A/vectorize/v2/indexes/NAME/query to a `vz serve` subprocess over one
keep-alive loopback connection per client. Direct and HTTP queries are interleaved in blocks so
machine load hits both alike. Goal: HTTP overhead (p50 HTTP − p50 direct, one client) ≤ 1 ms.

    .venv/bin/python bench/bench_http.py                # 20000 x 384, 1000 queries per side
    .venv/bin/python bench/bench_http.py --quick        # 2000 x 64, 200 queries
    .venv/bin/python bench/bench_http.py --n 100000 --dim 768 --clients 1,2,4

Prints the figures (and a Markdown table with --markdown); writes nothing else but the cached
data and store under bench/out/.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench import common  # noqa: E402

ACCOUNT = "bench"
NAME = "bench-http"


def build(n: int, dim: int) -> Path:
    store = common.OUT / f"store-http-{n}x{dim}"
    marker = store / ".built"
    if not marker.exists():
        secs = common.build_store(store, NAME, n, dim)
        common.vz(store, "optimize", NAME)  # a published HNSW file and no delta: the steady state
        marker.write_text(f"{secs:.1f}\n")
    return store


class Client:
    """A minimal keep-alive HTTP/1.1 load generator on one connection (like wrk: requests are
    serialised up front and responses are framed by Content-Length), so the figures measure the
    server rather than http.client, whose own cost per request is several hundred microseconds.
    `query(body)` returns the seconds of one round trip, up to the last byte of the response."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as undici and httpx do
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                     "Content-Length: ").encode()
        self.buf = b""

    def query(self, body: bytes) -> float:
        req = self.head + str(len(body)).encode() + b"\r\n\r\n" + body
        t = time.perf_counter()
        self.sock.sendall(req)
        buf = self.buf
        while (end := buf.find(b"\r\n\r\n")) < 0:
            buf += self._recv()
        head = buf[:end]
        i = head.lower().find(b"content-length:")
        length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None])
        total = end + 4 + length
        while len(buf) < total:
            buf += self._recv()
        dt = time.perf_counter() - t
        self.buf = buf[total:]
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{head[:200]!r} {buf[end + 4:total][:300]!r}")
        return dt

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.sock.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from helpers_server import start_server, stop_server

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    store = build(args.n, args.dim)
    qs = common.queries(args.queries, args.dim)
    vectors = [[float(x) for x in q] for q in qs]
    bodies = [orjson.dumps({"vector": v, "topK": args.top_k}) for v in vectors]
    backend = LocalBackend(Store(store))

    def direct(i: int) -> float:
        t = time.perf_counter()
        backend.query(NAME, vector=vectors[i], top_k=args.top_k)
        return time.perf_counter() - t

    base_url, proc = start_server(store)
    try:
        host, port = base_url.removeprefix("http://").split(":")
        path = f"/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes/{NAME}/query"
        client = Client(host, int(port), path)
        # warm-up: page cache, mmap of the HNSW file, the server's thread pool and connection
        for i in range(min(50, len(bodies))):
            direct(i)
            client.query(bodies[i])
        lat_direct: list[float] = []
        lat_http: list[float] = []
        block = args.block
        t_direct = t_http = 0.0
        for start in range(0, len(bodies), block):
            idx = range(start, min(start + block, len(bodies)))
            t = time.perf_counter()
            lat_direct += [direct(i) for i in idx]
            t_direct += time.perf_counter() - t
            t = time.perf_counter()
            lat_http += [client.query(bodies[i]) for i in idx]
            t_http += time.perf_counter() - t
        client.close()

        # throughput with C concurrent clients, each on its own connection (closed loop)
        concurrent: dict[int, tuple[float, float, float]] = {}
        for c in args.clients:
            clients = [Client(host, int(port), path) for _ in range(c)]
            lats: list[list[float]] = [[] for _ in range(c)]
            per = max(1, len(bodies) // c)
            barrier = threading.Barrier(c + 1)

            def work(k: int, cl: Client, out: list[float], per: int, barrier: threading.Barrier) -> None:
                barrier.wait()
                for j in range(per):
                    out.append(cl.query(bodies[(k * per + j) % len(bodies)]))

            threads = [threading.Thread(target=work, args=(k, clients[k], lats[k], per, barrier))
                       for k in range(c)]
            for th in threads:
                th.start()
            barrier.wait()
            t = time.perf_counter()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
            allq = [x for xs in lats for x in xs]
            concurrent[c] = (len(allq) / wall, common.pct(allq, 50), common.pct(allq, 99))
            for cl in clients:
                cl.close()
    finally:
        rc = stop_server(proc)
    if rc != 0:
        raise RuntimeError(f"vz serve exited {rc}:\n" + "".join(proc.log))
    return {
        "paired": common.pct([h - d for h, d in zip(lat_http, lat_direct, strict=True)], 50),
        "direct": (common.pct(lat_direct, 50), common.pct(lat_direct, 99), len(lat_direct) / t_direct),
        "http": (common.pct(lat_http, 50), common.pct(lat_http, 99), len(lat_http) / t_http),
        "concurrent": concurrent,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="vectors in the index (default 20000)")
    ap.add_argument("--dim", type=int, default=384, help="dimensions (default 384)")
    ap.add_argument("--queries", type=int, default=1000, help="queries per side (default 1000)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--clients", default="1,2,4", help="concurrent HTTP clients for throughput (default 1,2,4)")
    ap.add_argument("--block", type=int, default=10, help="queries per side between switches (default 10)")
    ap.add_argument("--quick", action="store_true", help="2000 x 64, 200 queries")
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown section")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.dim, args.queries = 2000, 64, 200
    args.clients = [int(c) for c in str(args.clients).split(",") if c]
    res = run(args)
    d50, d99, dqps = res["direct"]
    h50, h99, hqps = res["http"]
    over = h50 - d50
    print(f"index {args.n} x {args.dim} (cosine, HNSW), topK {args.top_k}, {args.queries} queries per side, "
          f"interleaved in blocks of {args.block}")
    print(f"{'path':<28}{'p50':>10}{'p99':>10}{'queries/s':>12}")
    print(f"{'core (LocalBackend)':<28}{d50 * 1e3:>8.3f}ms{d99 * 1e3:>8.3f}ms{dqps:>12.0f}")
    print(f"{'HTTP, 1 client, interleaved':<28}{h50 * 1e3:>8.3f}ms{h99 * 1e3:>8.3f}ms{hqps:>12.0f}")
    for c, (qps, p50, p99) in res["concurrent"].items():
        print(f"{f'HTTP, {c} client' + ('s' if c > 1 else ''):<28}{p50 * 1e3:>8.3f}ms{p99 * 1e3:>8.3f}ms{qps:>12.0f}")
    verdict = "PASS" if over <= 0.001 else "FAIL"
    print(f"HTTP overhead at p50, one client: {over * 1e3:.3f} ms (goal <= 1 ms): {verdict}; "
          f"median of per-query differences (same query, HTTP - core): {res['paired'] * 1e3:.3f} ms")
    print(f"machine: {common.machine()}; load average at end {os.getloadavg()[0]:.1f}")
    if args.markdown:
        print()
        print("| path | p50 | p99 | queries/s |\n|---|---|---|---|")
        print(f"| core (`LocalBackend.query`) | {d50 * 1e3:.3f} ms | {d99 * 1e3:.3f} ms | {dqps:.0f} |")
        print(f"| HTTP, 1 client, interleaved with core | {h50 * 1e3:.3f} ms | {h99 * 1e3:.3f} ms | {hqps:.0f} |")
        for c, (qps, p50, p99) in res["concurrent"].items():
            print(f"| HTTP, {c} client{'s' if c > 1 else ''} | {p50 * 1e3:.3f} ms | {p99 * 1e3:.3f} ms | {qps:.0f} |")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
