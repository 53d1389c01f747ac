"""`vz serve` reading requests: deadlines for headers and bodies, a bound on the bodies held at once,
quiet disconnects, and reads answered in parallel with the same results as serially.

The deadline tests run a real `vz serve --read-timeout 0.3` and speak raw HTTP over sockets; they
wait for the server to close the connection (a generous socket timeout only turns a hang into a
failure), never sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asgi_call import acall, call
from helpers_server import ServerProcess, start_server, stop_server

from vzcli.local import LocalBackend
from vzcli.server import create_app
from vzcli.store import Store

ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
HANG = 20.0  # a socket timeout that only a missing protection reaches


@pytest.fixture(params=[[], ["--workers", "1"]], ids=["workers", "one-process"])
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, int, ServerProcess]]:
    """Both event loops: asyncio's (the workers) and uvloop's (one process)."""
    base_url, proc = start_server(tmp_path / "s", extra_args=["--read-timeout", "0.3", *request.param])
    host, port = base_url.removeprefix("http://").split(":")
    try:
        yield host, int(port), proc
    finally:
        stop_server(proc)


def _until_closed(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    s.settimeout(HANG)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_a_connection_that_sends_nothing_is_closed(server: tuple[str, int, ServerProcess]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as s:
        assert _until_closed(s) == b""


def test_headers_that_never_end_are_cut_off(server: tuple[str, int, ServerProcess]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as s:
        s.sendall(b"GET /client/v4/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        assert _until_closed(s) == b""


def test_a_partial_body_gets_408_and_the_connection_is_closed(server: tuple[str, int, ServerProcess]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as s:
        s.sendall(f"POST {BASE}/x/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 100\r\n\r\n{{\"vector\": [".encode())
        reply = _until_closed(s)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert json.loads(body) == {"success": False, "result": None, "messages": [], "errors": [
        {"code": 7008, "message": "the request body did not arrive within 0.3 seconds (vz serve --read-timeout)"}]}


def test_keep_alive_requests_each_get_their_own_deadline(server: tuple[str, int, ServerProcess]) -> None:
    host, port, _ = server
    with socket.create_connection((host, port)) as s:
        s.settimeout(HANG)
        req = b"GET /client/v4/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        s.sendall(req)
        assert s.recv(12) == b"HTTP/1.1 200"


def _disconnect_mid_body(host: str, port: int, n: int) -> None:
    body = b'{"id":"a","values":[1,2,3]}\n'
    for _ in range(n):
        with socket.create_connection((host, port)) as s:
            s.sendall(f"POST {BASE}/x/insert HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-ndjson\r\n"
                      f"Content-Length: {len(body) * 100}\r\n\r\n".encode() + body)


def _wait_for(pred: Any, proc: ServerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert proc.poll() is None and time.monotonic() < deadline, "".join(proc.log)
        time.sleep(0.02)  # polling a condition with a deadline


def test_300_disconnects_log_nothing_by_default(tmp_path: Path) -> None:
    base_url, proc = start_server(tmp_path / "s", extra_args=["--read-timeout", "30"])
    host, port = base_url.removeprefix("http://").split(":")
    try:
        start = len(proc.log)
        _disconnect_mid_body(host, int(port), 300)
    finally:
        assert stop_server(proc) == 0  # a graceful stop: every request in flight has finished
    assert proc.log[start:] == ["vz serve: stopped\n"], "".join(proc.log[start:start + 40])


def test_300_disconnects_give_one_line_each_with_the_access_log(tmp_path: Path) -> None:
    base_url, proc = start_server(tmp_path / "s", extra_args=["--access-log"])
    host, port = base_url.removeprefix("http://").split(":")
    try:
        start = len(proc.log)
        _disconnect_mid_body(host, int(port), 300)
        _wait_for(lambda: sum("client went away" in line for line in proc.log) >= 300, proc)
    finally:
        stop_server(proc)
    lines = [line for line in proc.log[start:] if not line.startswith("INFO:     127.0.0.1:") or "went away" in line]
    went = [line for line in lines if "client went away before sending the whole request" in line]
    assert len(went) == 300
    assert not any("Traceback" in line or "Error" in line for line in proc.log), "".join(proc.log[:40])


# --- at most --max-bodies bodies at once --------------------------------------------------------
def test_bodies_beyond_max_bodies_wait_for_a_slot(tmp_path: Path) -> None:
    app = create_app(tmp_path / "s", max_bodies=1, read_threads=1)

    async def scenario() -> None:
        first_reading, release = asyncio.Event(), asyncio.Event()
        second_read = False

        async def slow_receive() -> dict[str, Any]:  # a client still sending its body
            first_reading.set()
            await release.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def quick_receive() -> dict[str, Any]:
            nonlocal second_read
            second_read = True
            return {"type": "http.request", "body": b"{}", "more_body": False}

        hdrs = [("host", "localhost"), ("content-type", "application/json")]
        first = asyncio.create_task(acall(app, "POST", "/client/v4/vz/reset", headers=hdrs, receive=slow_receive))
        await first_reading.wait()
        second = asyncio.create_task(acall(app, "POST", "/client/v4/vz/reset", headers=hdrs, receive=quick_receive))
        done, _ = await asyncio.wait({second}, timeout=0.3)
        assert not done and not second_read  # the only slot is taken: its body is not even read
        # a body declared small (a query) needs no slot: answered meanwhile
        status, _, body = await acall(app, "POST", "/client/v4/vz/reset", headers=[*hdrs, ("content-length", "2")],
                                      body=b"{}")
        assert status == 200 and not first.done() and not second_read
        release.set()
        for status, _, body in await asyncio.gather(first, second):
            assert status == 200 and body["result"] == {"deleted": []}

    asyncio.run(scenario())


def test_a_body_over_the_limit_is_refused_as_it_streams(tmp_path: Path) -> None:
    from vzcli import limits

    app = create_app(tmp_path / "s", read_threads=1)
    sent = 0
    chunk = b"x" * (1 << 20)

    async def endless() -> dict[str, Any]:  # no Content-Length: chunked, and never ends
        nonlocal sent
        sent += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    status, _, body = asyncio.run(acall(app, "POST", f"{BASE}/x/insert", headers=[("host", "localhost")],
                                        receive=endless))
    assert status == 413 and body["errors"][0]["code"] == 40005
    assert limits.BODY_MAX_BYTES < sent <= limits.BODY_MAX_BYTES + len(chunk)


# --- parallel reads -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3000 x 16 vectors with a published HNSW file, so queries go through usearch."""
    path = tmp_path_factory.mktemp("parallel") / "store"
    rng = np.random.default_rng(7)
    b = LocalBackend(Store(path))
    b.create_index("p", dimensions=16, metric="cosine")
    b.create_metadata_index("p", "g", "number")
    lines = "\n".join(json.dumps({"id": f"v{i}", "values": rng.standard_normal(16).round(4).tolist(),
                                  "namespace": f"n{i % 3}", "metadata": {"g": i % 5}}) for i in range(3000))
    import io

    b.insert("p", io.BytesIO(lines.encode()))
    b.optimize("p")
    b.store.close()
    return path


def _requests(n: int) -> list[tuple[str, str, bytes]]:
    rng = np.random.default_rng(11)
    out: list[tuple[str, str, bytes]] = []
    for i in range(n):
        q: dict[str, Any] = {"vector": rng.standard_normal(16).round(4).tolist(), "topK": 10,
                             "returnMetadata": "all"}
        if i % 4 == 1:
            q["filter"] = {"g": {"$in": [1, 3]}}
        if i % 4 == 2:
            q["namespace"] = "n1"
        out.append(("POST", f"{BASE}/p/query", json.dumps(q).encode()))
        if i % 10 == 0:
            out.append(("POST", f"{BASE}/p/get_by_ids", json.dumps({"ids": [f"v{i}", f"v{i + 1}"]}).encode()))
            out.append(("GET", f"{BASE}/p/info", b""))
            out.append(("GET", f"{BASE}/p/list?count=7", b""))
    return out


def _stable(body: dict[str, Any]) -> dict[str, Any]:
    """The body without what depends on the clock (a list cursor embeds its expiry time)."""
    result = body["result"]
    if isinstance(result, dict) and "cursorExpirationTimestamp" in result:
        result = {k: v for k, v in result.items() if k not in ("nextCursor", "cursorExpirationTimestamp")}
    return {**body, "result": result}


def test_parallel_reads_equal_serial_reads(big_store: Path) -> None:
    reqs = _requests(300)
    hdrs = [("host", "localhost"), ("content-type", "application/json")]
    serial_app = create_app(big_store, read_threads=0)
    serial = [call(serial_app, m, p, headers=hdrs, body=b) for m, p, b in reqs]
    assert all(s == 200 for s, _, _ in serial) and serial[0][2]["result"]["count"] == 10

    app = create_app(big_store, read_threads=4)
    app.quick_reads = False  # else a lone quick read is answered on the loop (tests/test_quick_reads.py)
    on_threads: set[str] = set()
    real = app.backend

    def spy() -> Any:
        on_threads.add(threading.current_thread().name)
        return real()

    app.backend = spy  # type: ignore[method-assign]

    async def all_at_once() -> list[Any]:
        return await asyncio.gather(*(acall(app, m, p, headers=hdrs, body=b) for m, p, b in reqs))

    parallel = asyncio.run(all_at_once())
    assert [_stable(r[2]) for r in parallel] == [_stable(r[2]) for r in serial]
    assert len({t for t in on_threads if t.startswith("vz-read")}) > 1  # reads ran on several threads
    app.close()


def test_read_threads_serve_and_stop_cleanly(tmp_path: Path) -> None:
    base_url, proc = start_server(tmp_path / "s", extra_args=["--read-threads", "2"])
    try:
        host, port = base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(f"GET {BASE} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            reply = _until_closed(s)
        assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b'"result":[]}')
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        stop_server(proc)
