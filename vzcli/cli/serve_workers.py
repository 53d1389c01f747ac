"""`vz serve --workers N`: N server processes sharing one listening socket, under one supervisor.

Most of a query's CPU is Python holding the GIL (HTTP parsing, validation, building the result), so
threads alone cannot use a second core; processes can. The parent binds the socket (so `--port 0`
resolves once), forks the workers before any thread or event loop exists, waits until every worker
has started, prints the address line with its own pid, and supervises:

- SIGINT or SIGTERM to the parent stops every worker (each finishes its requests in flight) and the
  parent exits 0 once all have exited;
- a worker that dies on its own stops the others, and the parent exits 1 naming it (no restart: a
  worker that dies has met a bug or the machine's limits, and a harness should see it);
- a worker dies with the parent, even a SIGKILLed one (PR_SET_PDEATHSIG on Linux; elsewhere a
  thread that waits for the end of a pipe only the parent holds).

Each worker is a whole server: its own app, backends, caches and background ANN merges. SQLite is
the source of truth, so a write answered by one worker is seen by the next read in any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def serve_workers(make_app: Callable[[], Any], workers: int, early: list[int], *, host: str, port: int,
                  store: Path, token: bool, access_log: bool, ephemeral: bool, read_timeout: float) -> None:
    """Serve with `workers` processes; returns after a clean stop, raises typer.Exit(1) otherwise.
    `make_app` runs in each worker; the caller has checked its options (vzcli.server.check_options).
    `early`: stop signals that came before (the server then stops before it starts)."""
    sock = _bind(host, port)
    supervisor = _Supervisor()
    ready_r, ready_w = os.pipe()
    life_r, life_w = os.pipe()  # the parent holds the only write end: EOF in a worker = parent gone
    counts = mmap.mmap(-1, 8 * workers)  # shared with the workers: each one's open connections
    parent = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in STOP_SIGNALS}
    if early:
        supervisor.stop()
    try:
        for me in range(workers):
            if supervisor.stopping:  # a stop signal came: start no more workers
                break
            # a stop signal arriving between fork() and the worker's own handlers would run the
            # parent's handler in the worker (and stop its siblings): hold signals across fork()
            signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            pid = os.fork()
            if pid == 0:
                # until uvicorn takes over the signals there is nothing to finish: a stop exits at once
                for sig in STOP_SIGNALS:
                    signal.signal(sig, lambda *_: os._exit(0))
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                os.close(ready_r)
                os.close(life_w)
                _worker(make_app, sock, _Balancer(counts, me), parent=parent, ready=ready_w, life=life_r,
                        access_log=access_log, ephemeral=ephemeral, read_timeout=read_timeout)
            supervisor.add(pid)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(ready_w)
        os.close(life_r)
        started = _count_ready(ready_r, workers)
        h, p = sock.getsockname()[:2]
        sock.close()  # the workers hold it
        if started == workers and not supervisor.stopping:
            from vzcli.cli.serve import announce

            announce(h, p, store=store, token=token, ephemeral=ephemeral, workers=workers)
        elif not supervisor.stopping:
            supervisor.fail("a worker failed to start (its error is above); stopping the others")
        supervisor.wait()
    finally:
        os.close(life_w)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if supervisor.failed:
        raise typer.Exit(1)
    sys.stderr.write("vz serve: stopped\n")


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one), as uvicorn would bind it."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(2048)
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        sys.stderr.write(f"vz serve: cannot listen on {host}:{port}: {why}\n")
        raise typer.Exit(1) from None
    return sock


def _count_ready(fd: int, expected: int) -> int:
    """Read one byte per started worker until every worker has closed its end (each closes it once
    started, or by exiting)."""
    got = 0
    with contextlib.suppress(OSError):
        while got < expected:
            chunk = os.read(fd, expected)
            if not chunk:
                break
            got += len(chunk)
    os.close(fd)
    return got


class _Supervisor:
    """The workers' pids; stops them all on a signal or when one dies on its own."""

    def __init__(self) -> None:
        self.alive: set[int] = set()
        self.stopping = False
        self.failed = False

    def add(self, pid: int) -> None:
        self.alive.add(pid)
        if self.stopping:  # the stop signal came while this worker was being forked
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def on_signal(self, sig: int, frame: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        for pid in self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def fail(self, message: str) -> None:
        sys.stderr.write(f"vz serve: {message}\n")
        sys.stderr.flush()
        self.failed = True
        self.stop()

    def wait(self) -> None:
        """Reap every worker; one that exits before it was asked to is a failure."""
        while self.alive:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            if pid not in self.alive:
                continue
            self.alive.discard(pid)
            if not self.stopping:
                code = os.waitstatus_to_exitcode(status)
                how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                self.fail(f"worker {pid} {how}; stopping the others")


class _Balancer:
    """Spreads connections evenly over the workers.

    The kernel wakes every worker for a new connection, and the first to run takes it, and (the
    event loop accepting in a loop) any others already waiting: four keep-alive connections opened
    at once often all land in one worker, which then uses one core while the others idle. So a
    worker accepts only while it holds no more open connections than the least loaded of the
    others (counts in shared memory); otherwise it stops watching the listening socket, and looks
    again when it loses a connection or, while paused, every few milliseconds. The event loop
    accepts one connection per wake-up (uvicorn's backlog 1), so the check runs between accepts.
    """

    POLL = 0.005

    def __init__(self, shared: mmap.mmap, me: int) -> None:
        self.counts = memoryview(shared).cast("q")
        self.me = me
        self.loop: asyncio.AbstractEventLoop | None = None
        self.fd = -1
        self.reader: tuple[Any, ...] = ()
        self.accepting = True
        self.poll: asyncio.TimerHandle | None = None

    def start(self, sock: socket.socket) -> None:
        """Take over the listening socket's reader, as asyncio registered it for the server."""
        loop = asyncio.get_running_loop()
        try:
            handle = loop._selector.get_key(sock.fileno()).data[0]  # type: ignore[attr-defined]
            reader = (handle._callback, *handle._args)
        except (AttributeError, KeyError, IndexError):  # another event loop: the kernel alone spreads
            return
        self.loop, self.fd, self.reader = loop, sock.fileno(), reader
        self.update()

    def changed(self, delta: int) -> None:
        self.counts[self.me] += delta
        self.update()

    def update(self) -> None:
        if self.loop is None or self.loop.is_closed():
            return
        others = [c for i, c in enumerate(self.counts) if i != self.me]
        want = not others or self.counts[self.me] <= min(others)
        if want and not self.accepting:
            self.loop._add_reader(self.fd, *self.reader)  # type: ignore[attr-defined]
        elif not want and self.accepting:
            self.loop.remove_reader(self.fd)
        self.accepting = want
        if self.poll is not None:
            self.poll.cancel()
        self.poll = None if want else self.loop.call_later(self.POLL, self.update)

    def stop(self) -> None:
        if self.poll is not None:
            self.poll.cancel()
        self.loop = None


def _worker(make_app: Callable[[], Any], sock: socket.socket, balancer: _Balancer, *, parent: int, ready: int,
            life: int, access_log: bool, ephemeral: bool, read_timeout: float) -> None:
    """A worker process: serve on `sock` until SIGTERM/SIGINT, then exit (never returns)."""
    code = 1
    try:
        _die_with_parent(parent, life)
        from vzcli.cli.serve import uvicorn_config

        application = make_app()
        config = uvicorn_config(application, access_log=access_log, read_timeout=read_timeout, loop="asyncio",
                                backlog=1)
        config.http = _counted(config.http, balancer)
        server = _worker_server(config, ready, balancer)
        with contextlib.suppress(SystemExit):  # uvicorn exits (3) when start-up fails; it has logged why
            server.run(sockets=[sock])
        if ephemeral:
            application.idle(10)  # let a background merge finish before the parent removes the store
        code = 0 if server.started else 1
    except BaseException:  # noqa: BLE001  (a worker must never return into the CLI)
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent(parent: int, life: int) -> None:
    """Have the kernel SIGTERM this process when the parent dies (Linux), else watch `life`."""
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM) == 0
    if not armed:
        def watch() -> None:
            with contextlib.suppress(OSError):
                os.read(life, 1)  # returns at EOF: the parent has exited
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, name="vz-parent-watch", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)


def _counted(protocol: type, balancer: _Balancer) -> type:
    """The HTTP protocol class, telling `balancer` of each connection accepted and closed."""

    class Counted(protocol):
        # counted when made: asyncio makes the protocol just after the accept, and only calls
        # connection_made one loop turn later, when the next accept may have run
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            balancer.changed(+1)

        def connection_lost(self, exc: Exception | None) -> None:
            balancer.changed(-1)
            super().connection_lost(exc)

    return Counted


def _worker_server(config: Any, ready: int, balancer: _Balancer) -> Any:
    """uvicorn's Server that reports to the parent once it accepts, and that, once stopped, does
    not re-raise the stop signal (the worker still has to exit cleanly)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and sockets:
                sockets[0].listen(2048)  # asyncio set uvicorn's backlog, 1, on the shared socket
                balancer.start(sockets[0])
                os.write(ready, b"1")
            os.close(ready)

        async def shutdown(self, sockets: Any = None) -> None:
            balancer.stop()
            await super().shutdown(sockets=sockets)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            for sig in STOP_SIGNALS:
                signal.signal(sig, self.handle_exit)
            try:
                yield
            finally:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_IGN)

    return Server(config)
