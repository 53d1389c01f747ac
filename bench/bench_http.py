"""Benchmark (issue 5): query latency and throughput through `vz serve` against the core directly.

The same queries (fresh points of the data's mixture, topK 10, no values or metadata) run
(1) through `LocalBackend.query`, the core the server calls, in a worker process, and (2) through
HTTP: POST /client/v4/accounts/A/vectorize/v2/indexes/NAME/query to a `vz serve` subprocess,
over one keep-alive loopback connection per client, from a minimal load generator in this
process. The two sides alternate in blocks of 10 queries so that machine load hits both alike.
Goal: HTTP overhead (p50 HTTP − p50 core, one client) ≤ 1 ms. Then C concurrent clients
(closed loop, one connection each) measure the server's throughput.

    .venv/bin/python bench/bench_http.py                # 20000 x 384, 1000 queries per side
    .venv/bin/python bench/bench_http.py --quick        # 2000 x 64, 200 queries
    .venv/bin/python bench/bench_http.py --n 100000 --dim 768 --clients 1,2,4
    .venv/bin/python bench/bench_http.py --write-results   # also the "http" section of RESULTS.md

"queries/s" of the first two rows is serial (1 / mean latency). The data and the store are
cached under bench/out/; nothing else is written unless --write-results is given.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
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


def run_clients(host: str, port: int, path: str, bodies: list[bytes], c: int) -> tuple[float, list[list[float]]]:
    """`c` clients (closed loop, one connection each) send `bodies` between them; returns the
    wall seconds and each client's latencies."""
    clients = [Client(host, port, path) for _ in range(c)]
    lats: list[list[float]] = [[] for _ in range(c)]
    per = max(1, len(bodies) // c)
    barrier = threading.Barrier(c + 1)

    def work(k: int) -> None:
        barrier.wait()
        for j in range(per):
            lats[k].append(clients[k].query(bodies[(k * per + j) % len(bodies)]))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(c)]
    for th in threads:
        th.start()
    barrier.wait()
    t = time.perf_counter()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    for cl in clients:
        cl.close()
    return wall, lats


def _query_vectors(nq: int, dim: int) -> list[list[float]]:
    return [[float(x) for x in q] for q in common.queries(nq, dim)]


def worker(store: str, nq: int, dim: int, top_k: int) -> int:
    """The core side, in its own process like the server: reads `a b` lines, runs queries a..b-1
    through `LocalBackend.query` and answers one JSON line of per-query seconds."""
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    vectors = _query_vectors(nq, dim)
    backend = LocalBackend(Store(store))
    for line in sys.stdin:
        a, b = map(int, line.split())
        out = []
        for i in range(a, b):
            t = time.perf_counter()
            backend.query(NAME, vector=vectors[i], top_k=top_k)
            out.append(time.perf_counter() - t)
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        sys.stdout.flush()
    return 0


class Direct:
    """Drives the worker process: `run(a, b)` returns the core's latencies for queries a..b-1."""

    def __init__(self, store: Path, args: argparse.Namespace) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(store), "--queries",
                                      str(args.queries), "--dim", str(args.dim), "--top-k", str(args.top_k)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, a: int, b: int) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{a} {b}\n")
        self.proc.stdin.flush()
        return list(orjson.loads(self.proc.stdout.readline()))

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from helpers_server import start_server, stop_server

    store = build(args.n, args.dim)
    bodies = [orjson.dumps({"vector": v, "topK": args.top_k}) for v in _query_vectors(args.queries, args.dim)]
    # Both sides run the core in a process of their own, and this process only waits, so the
    # scheduler treats the two alike: timing the core in this process would make it the CPU
    # hog that then waits for the server's answer, and the scheduler would penalise its wake-ups.
    direct = Direct(store, args)
    base_url, proc = start_server(store)
    try:
        host, port = base_url.removeprefix("http://").split(":")
        path = f"/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes/{NAME}/query"
        client = Client(host, int(port), path)
        # warm-up: page cache, mmap of the HNSW file, the server's connection
        warm = min(50, len(bodies))
        direct.run(0, warm)
        for i in range(warm):
            client.query(bodies[i])
        lat_direct: list[float] = []
        lat_http: list[float] = []
        for start in range(0, len(bodies), args.block):
            end = min(start + args.block, len(bodies))
            lat_direct += direct.run(start, end)
            lat_http += [client.query(bodies[i]) for i in range(start, end)]
        client.close()
        direct.close()
        t_direct, t_http = sum(lat_direct), sum(lat_http)

        # throughput with C concurrent clients, each on its own connection (closed loop)
        concurrent: dict[int, tuple[float, float, float]] = {}
        for c in args.clients:
            wall, lats = run_clients(host, int(port), path, bodies, c)
            allq = [x for xs in lats for x in xs]
            concurrent[c] = (len(allq) / wall, common.pct(allq, 50), common.pct(allq, 99))
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


def write_results(args: argparse.Namespace, table: str, over: float, paired: float, verdict: str) -> None:
    from bench import results

    if not results.RESULTS.exists():
        print("bench/RESULTS.md does not exist: not written", file=sys.stderr)
        return
    from importlib.util import find_spec

    impl = ("httptools" if find_spec("httptools") else "h11") + " + " + ("uvloop" if find_spec("uvloop") else "asyncio")
    cmd = "bench/bench_http.py " + " ".join(a for a in (sys.argv[1:] if args.cli_argv is None else args.cli_argv)
                                              if a != "--write-results")
    results.update_section("http", f"""## HTTP server (issue 5)

Command: `.venv/bin/python {cmd.strip()}` (machine: {common.machine()}; uvicorn with {impl}).

Index {args.n} x {args.dim} (cosine, HNSW file, no delta), topK {args.top_k}, {args.queries} fresh
queries. The core runs `LocalBackend.query` in a worker process; HTTP is `POST …/query` to a
`vz serve` subprocess over a keep-alive loopback connection (a minimal load generator:
pre-serialised requests, TCP_NODELAY). Core and one HTTP client alternate in blocks of
{args.block} queries; then C clients run concurrently (closed loop). Queries/s of the first two
rows is serial (1 / mean latency).

{table}

HTTP overhead at p50, one client: {over * 1e3:.3f} ms (median of per-query differences
{paired * 1e3:.3f} ms). **Goal {"met" if verdict == "PASS" else "MISSED"}** (goal <= 1 ms).
""")
    print("wrote the http section of bench/RESULTS.md", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000, help="vectors in the index (default 20000)")
    ap.add_argument("--dim", type=int, default=384, help="dimensions (default 384)")
    ap.add_argument("--queries", type=int, default=1000, help="queries per side (default 1000)")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--clients", default="1,2,4", help="concurrent HTTP clients for throughput (default 1,2,4)")
    ap.add_argument("--block", type=int, default=10, help="queries per side between switches (default 10)")
    ap.add_argument("--quick", action="store_true", help="2000 x 64, 200 queries")
    ap.add_argument("--worker", metavar="STORE", help=argparse.SUPPRESS)
    ap.add_argument("--markdown", action="store_true", help="also print a Markdown section")
    ap.add_argument("--write-results", action="store_true",
                    help='replace the "http" section of bench/RESULTS.md (only if that file exists)')
    args = ap.parse_args(argv)
    args.cli_argv = argv
    if args.worker:
        return worker(args.worker, args.queries, args.dim, args.top_k)
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
    md = [f"| core (`LocalBackend.query`, worker process) | {d50 * 1e3:.3f} ms | {d99 * 1e3:.3f} ms | {dqps:.0f} |",
          f"| HTTP, 1 client, interleaved with core | {h50 * 1e3:.3f} ms | {h99 * 1e3:.3f} ms | {hqps:.0f} |"]
    for c, (qps, p50, p99) in res["concurrent"].items():
        md.append(f"| HTTP, {c} client{'s' if c > 1 else ''} | {p50 * 1e3:.3f} ms | {p99 * 1e3:.3f} ms | {qps:.0f} |")
    table = "| path | p50 | p99 | queries/s |\n|---|---|---|---|\n" + "\n".join(md)
    if args.markdown:
        print()
        print(table)
    if args.write_results:
        write_results(args, table, over, res["paired"], verdict)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
