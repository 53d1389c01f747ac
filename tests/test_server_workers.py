"""`vz serve --workers N`: several processes on one socket, supervised by the parent."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from vzcli.cli.serve import default_workers
from vzcli.errors import UsageError
from vzcli.server import create_app

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the workers")

ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
EPHEMERAL = re.compile(r"vz serve: listening on \S+ \(ephemeral store (\S+), no auth, (\d+) workers\)")
DEADLINE = 30.0


class Served:
    """A `vz serve --port 0 ARGS` subprocess, its address and its workers' pids."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "vzcli", "serve", "--port", "0", *args],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        first = json.loads(line)
        assert first["pid"] == self.proc.pid
        self.port = int(first["url"].split(":")[2].split("/")[0])
        self.listening = self.proc.stderr.readline()
        self.workers = _children(self.proc.pid)

    def conn(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def call(self, method: str, path: str, body: Any = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, Any, int]:
        """One request on a new connection (or `conn`): (status, JSON body, pid of the worker)."""
        c = conn or self.conn()
        if isinstance(body, list):  # records: NDJSON, as wrangler sends them
            data, kind = "".join(json.dumps(r) + "\n" for r in body), "application/x-ndjson"
        else:
            data, kind = None if body is None else json.dumps(body), "application/json"
        c.request(method, BASE + path, body=data, headers={"content-type": kind})
        r = c.getresponse()
        out = r.status, json.loads(r.read()), self.answered_by(c)
        if conn is None:
            c.close()
        return out

    def answered_by(self, c: http.client.HTTPConnection) -> int:
        """The worker holding the server end of `c` (found through /proc/net/tcp and the fds)."""
        assert c.sock is not None
        client_port = c.sock.getsockname()[1]
        inode = _server_socket_inode(self.port, client_port)
        for pid in self.workers or [self.proc.pid]:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=DEADLINE)
        return self.proc.returncode, self.listening + err


def _children(pid: int) -> list[int]:
    """The server's workers: its children but the guard of an ephemeral store (its own session)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(x) for x in f.read().split()]
    return [k for k in kids if _same_session(k, pid)]


def _same_session(a: int, b: int) -> bool:
    try:
        return os.getsid(a) == os.getsid(b)
    except ProcessLookupError:  # a worker that just died (the guard lives as long as the server)
        return True


def _server_socket_inode(server_port: int, client_port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                local, remote = cols[1].split(":")[1], cols[2].split(":")[1]
                if int(local, 16) == server_port and int(remote, 16) == client_port:
                    return cols[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def _wait_closed(server_port: int) -> None:
    """Poll until no server-side connection on `server_port` is open (or closing) in /proc/net/tcp."""
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        with open("/proc/net/tcp") as f:
            if not any(int(cols[1].split(":")[1], 16) == server_port and cols[3] in ("01", "08")
                       for cols in (row.split() for row in f.readlines()[1:])):
                return
        time.sleep(0.02)  # polling a condition with a deadline
    raise AssertionError(f"connections to port {server_port} still open after {DEADLINE} s")


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int]) -> list[int]:
    """Poll until every pid has exited (deadline DEADLINE); returns those still alive."""
    end = time.monotonic() + DEADLINE
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < end:
        time.sleep(0.02)  # polling a condition with a deadline
    return left


@pytest.fixture
def served(tmp_path: Path) -> Any:
    s = Served("--workers", "2", "--store", str(tmp_path / "store"))
    yield s
    s.stop()


def _vectors(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"id": f"v{i}", "values": [float(i % 7 + 1), float(i % 5), float(i % 3) + 0.5],
             "metadata": {"i": i}} for i in range(start, start + n)]


def test_a_write_answered_by_one_worker_is_read_by_the_next_request_in_another(served: Served) -> None:
    assert len(served.workers) == 2
    status, body, _ = served.call("POST", "", {"name": "ryw", "config": {"dimensions": 3, "metric": "cosine"}})
    assert (status, body["success"]) == (200, True)
    crossed = 0
    for i in range(40):
        status, body, writer = served.call("POST", "/ryw/upsert", _vectors(1, i))
        assert status == 200, body
        status, body, reader = served.call("POST", "/ryw/get_by_ids", {"ids": [f"v{i}"]})
        assert (status, body["result"]) == (200, _vectors(1, i)), body
        status, body, counter = served.call("GET", "/ryw/info")
        assert body["result"]["vectorCount"] == i + 1
        crossed += (writer != reader) + (writer != counter)
    assert crossed > 0, "every request landed on one worker: the test proves nothing"


def test_parallel_reads_across_workers_equal_serial_reads(served: Served) -> None:
    served.call("POST", "", {"name": "par", "config": {"dimensions": 3, "metric": "euclidean"}})
    assert served.call("POST", "/par/upsert", _vectors(300))[0] == 200
    queries = [{"vector": [float(i % 11), float(i % 4), 1.0], "topK": 5, "returnMetadata": "all"}
               for i in range(60)]

    def ask(q: dict[str, Any]) -> tuple[Any, int]:
        status, body, pid = served.call("POST", "/par/query", q)
        assert status == 200, body
        return body["result"], pid

    serial = [ask(q)[0] for q in queries]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(ask, queries * 3))
    assert [r for r, _ in parallel] == serial * 3
    assert {pid for _, pid in parallel} == set(served.workers)


def _from_every_worker(served: Served) -> list[Any]:
    """GET the index list over four keep-alive connections opened together: the workers spread
    them 2/2 (see the next test), so every worker answers; one connection at a time may not."""
    _wait_closed(served.port)
    conns = [served.conn() for _ in range(4)]
    for c in conns:
        c.connect()
    try:
        return [served.call("GET", "", conn=c) for c in conns]
    finally:
        for c in conns:
            c.close()


def test_a_store_replaced_under_the_workers_is_reopened_by_each(served: Served, tmp_path: Path) -> None:
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    served.call("POST", "", {"name": "old", "config": {"dimensions": 3, "metric": "cosine"}})
    answers = _from_every_worker(served)
    assert {pid for _, _, pid in answers} == set(served.workers)  # both opened the old catalog
    assert {tuple(ix["name"] for ix in body["result"]) for _, body, _ in answers} == {("old",)}
    shutil.rmtree(tmp_path / "store")
    b = LocalBackend(Store(tmp_path / "store"))
    b.create_index("new", dimensions=3, metric="cosine")
    b.store.close()
    answers = _from_every_worker(served)
    assert {pid for _, _, pid in answers} == set(served.workers)
    assert {tuple(ix["name"] for ix in body["result"]) for _, body, _ in answers} == {("new",)}


def test_keep_alive_connections_opened_together_are_spread_over_the_workers(served: Served) -> None:
    for _ in range(3):
        _wait_closed(served.port)  # the workers have counted the last round's connections out
        conns = [served.conn() for _ in range(4)]
        for c in conns:
            c.connect()  # all four wait in the backlog before the first request
        owners = [served.call("GET", "", conn=c)[2] for c in conns]
        assert sorted(owners.count(pid) for pid in served.workers) == [2, 2], owners
        for c in conns:
            c.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_parent_stops_every_worker_and_removes_the_ephemeral_store(sig: int) -> None:
    s = Served("--workers", "3", "--ephemeral")
    m = EPHEMERAL.search(s.listening)
    assert m and m.group(2) == "3" and len(s.workers) == 3, s.listening
    store = Path(m.group(1))
    status, _, _ = s.call("POST", "", {"name": "e", "config": {"dimensions": 3, "metric": "cosine"}})
    assert status == 200 and (store / "catalog.sqlite3").is_file()
    code, err = s.stop(sig)
    assert code == 0, err
    assert err.endswith("vz serve: stopped\n")
    assert _wait_gone(s.workers) == []
    assert not store.exists()


def test_no_worker_outlives_a_sigkilled_parent(tmp_path: Path) -> None:
    s = Served("--workers", "2", "--store", str(tmp_path / "store"))
    assert len(s.workers) == 2
    s.proc.kill()
    s.proc.wait(DEADLINE)
    assert _wait_gone(s.workers) == []


def test_a_worker_that_dies_stops_the_others_and_the_parent_fails(tmp_path: Path) -> None:
    s = Served("--workers", "2", "--ephemeral")
    store = Path(EPHEMERAL.search(s.listening).group(1))  # type: ignore[union-attr]
    victim, other = s.workers
    os.kill(victim, signal.SIGKILL)
    code, err = s.stop(0)  # no signal: wait for the parent to notice
    assert code == 1
    assert f"vz serve: worker {victim} was killed by signal 9; stopping the others\n" in err
    assert "vz serve: stopped" not in err
    assert _wait_gone([other]) == []
    assert not store.exists()


def test_workers_1_serves_from_one_process(tmp_path: Path) -> None:
    s = Served("--workers", "1", "--store", str(tmp_path / "store"))
    try:
        assert s.workers == []
        assert s.listening.endswith(", no auth)\n"), s.listening
        assert s.call("GET", "")[0:2] == (200, {"success": True, "errors": [], "messages": [], "result": []})
    finally:
        assert s.stop()[0] == 0


def test_a_worker_that_cannot_start_fails_the_server_before_the_address_line(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "catalog.sqlite3").write_bytes(b"not a database, " * 100)
    proc = subprocess.run([sys.executable, "-m", "vzcli", "serve", "--port", "0", "--workers", "2", "--store",
                           str(store)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "vz serve: a worker failed to start (its error is above); stopping the others" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_default_workers_is_the_cpu_count_up_to_4(monkeypatch: pytest.MonkeyPatch) -> None:
    for cpus, expected in ((None, 1), (1, 1), (2, 2), (4, 4), (16, 4)):
        monkeypatch.setattr(os, "cpu_count", lambda c=cpus: c)
        assert default_workers() == expected
    monkeypatch.delattr(os, "fork")  # Windows
    assert default_workers() == 1


def test_create_app_checks_the_vz_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZ_LOCK_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="VZ_LOCK_TIMEOUT"):
        create_app(tmp_path / "store")


# --- stop signals that come before the server takes the signals over -------------------------------
def test_a_stop_signal_before_uvicorn_took_the_signals_over_stops_one_process_server(tmp_path: Path) -> None:
    """`vz serve` records SIGINT and SIGTERM from its first line (`_EarlyStops`); one that came
    while it was setting up stops the server as soon as uvicorn takes the signals over. Before, the
    handler in place there did nothing, and the server ran on: a harness waited for ever. (In a
    process of its own, bounded: a server that does not stop fails the test instead of hanging it.)"""
    script = (
        "import os, signal, sys\n"
        "from vzcli.cli import serve\n"
        "from vzcli.server import create_app\n"
        "early = serve._EarlyStops()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "assert early.got == [signal.SIGTERM], early.got\n"
        "serve._run(create_app(sys.argv[1]), early, host='127.0.0.1', port=0, token=False, access_log=False,\n"
        "           ephemeral=False, read_timeout=5.0)\n"
        "early.release()\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "s")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith("vz serve: listening on http://127.0.0.1:") and r.stderr.endswith("vz serve: stopped\n")
    assert "Traceback" not in r.stderr and "lifespan" not in r.stderr  # the app's lifespan, cancelled, said nothing


def test_a_stop_signal_before_the_workers_start_starts_none(tmp_path: Path, capsys: Any) -> None:
    from vzcli.cli.serve_workers import serve_workers

    def make_app() -> Any:
        raise AssertionError("no worker may start")

    serve_workers(make_app, 2, [signal.SIGINT], host="127.0.0.1", port=0, store=tmp_path / "s", token=False,
                  access_log=False, ephemeral=False, read_timeout=5.0)
    assert capsys.readouterr() == ("", "vz serve: stopped\n")


def test_a_worker_forked_as_the_stop_signal_came_is_stopped_too() -> None:
    from vzcli.cli.serve_workers import _Supervisor

    s = _Supervisor()
    s.stop()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    s.add(proc.pid)
    assert proc.wait(timeout=60) == -signal.SIGTERM


def test_a_lifespan_cancelled_without_its_shutdown_closes_the_app_quietly(tmp_path: Path) -> None:
    """A stop signal during uvicorn's start-up makes it skip the lifespan shutdown, and asyncio then
    cancels the app's lifespan: it closes the app and ends without an exception (uvicorn would log
    one as "Exception in 'lifespan' protocol", with a traceback, seen in a worker)."""
    import asyncio

    app = create_app(tmp_path / "s", read_threads=2)

    async def scenario() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        started = asyncio.Event()
        messages = iter([{"type": "lifespan.startup"}])

        async def receive() -> dict[str, Any]:
            msg = next(messages, None)
            if msg is None:
                await asyncio.Event().wait()  # no shutdown message ever comes
            return msg  # type: ignore[return-value]

        async def send(msg: dict[str, Any]) -> None:
            sent.append(msg)
            started.set()

        task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
        await asyncio.wait_for(started.wait(), 60)
        task.cancel()
        assert await task is None  # ended, not cancelled, no exception
        return sent

    assert asyncio.run(scenario()) == [{"type": "lifespan.startup.complete"}]
    assert app._readers is not None and app._readers._shutdown and app._writer._shutdown  # closed
