"""`vz serve`: Cloudflare's Vectorize REST API v2 over the local store (uvicorn + vzcli.server)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from vzcli.cli import State, app, handled
from vzcli.errors import UsageError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command(rich_help_panel="Server")
@handled
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind. A non-loopback address needs "
                                                         "--api-token."),
    port: int = typer.Option(8788, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    store: Path = typer.Option(None, "--store", help="Store directory (default: the global --store, "
                                                     "$VZ_STORE, else ./.vz)."),
    api_token: str = typer.Option(None, "--api-token", envvar="VZ_API_TOKEN", show_envvar=True,
                                  help="Require `Authorization: Bearer <token>` (or `X-Auth-Key: <token>`) "
                                       "on every request."),
    access_log: bool = typer.Option(False, "--access-log/--no-access-log",
                                    help="Log every request (uvicorn's access log, on stdout, after the "
                                         "address line)."),
    allow_host: list[str] = typer.Option([], "--allow-host", metavar="NAME",
                                         help="Also answer requests whose Host header is NAME (repeatable). "
                                              "Without it only localhost, *.localhost, loopback addresses and "
                                              "--host are served: a defence against DNS rebinding."),
    cors_origin: list[str] = typer.Option([], "--cors-origin", metavar="ORIGIN",
                                          help="Accept requests from web pages of ORIGIN (scheme://host[:port]; "
                                               "repeatable) and answer their CORS preflights. Any other request "
                                               "that carries an Origin header is refused (403)."),
    read_timeout: float = typer.Option(30.0, "--read-timeout", min=0.001, metavar="SECONDS",
                                       help="Close a connection whose request headers take longer than this, "
                                            "and answer 408 (closing it) to a body that does."),
    max_bodies: int = typer.Option(2, "--max-bodies", min=1, metavar="N",
                                   help="Request bodies over 1 MiB (or of unknown length) read and held in "
                                        "memory at once, up to 100 MB each; further ones wait for a slot."),
    read_threads: int = typer.Option(None, "--read-threads", min=0, metavar="N", show_default="CPU count",
                                     help="Threads that answer reads (query, get, list, info) in parallel while "
                                          "other requests are in progress (a read that is sure to be quick is "
                                          "answered on the event loop when it is alone); 0 answers every read on "
                                          "the event loop. Writes run one at a time."),
    ephemeral: bool = typer.Option(False, "--ephemeral", help="Serve a new temporary store, removed when the "
                                                              "server exits (for test harnesses). Conflicts "
                                                              "with --store."),
    workers: int = typer.Option(None, "--workers", min=1, metavar="N", show_default="CPU count, at most 4",
                                help="Server processes sharing the listening socket, so concurrent requests "
                                     "use every core. Each holds its own interpreter and caches (about "
                                     "30 MiB at 100k vectors; the index files are shared). 1 serves from "
                                     "this process alone."),
) -> None:
    """Serve the store over Cloudflare's Vectorize REST API v2 (for wrangler, the SDK, curl).

    Point clients at http://HOST:PORT/client/v4 (wrangler: CLOUDFLARE_API_BASE_URL; the cloudflare
    SDK: base_url). Any account id is accepted. The OpenAPI document is at /client/v4/openapi.json.
    Stops cleanly on Ctrl-C or SIGTERM, finishing the requests in flight.

    The first line on stdout, printed as soon as the socket listens (for every port, 0 included), is
    JSON for harnesses: {"url": "http://127.0.0.1:PORT/client/v4", "pid": N}. With --workers > 1, N
    is the supervising process: signal it to stop every worker; should a worker die, it stops the
    others and exits 1.
    """
    early = _EarlyStops()
    try:
        from vzcli.server import create_app
        from vzcli.store import default_store_path

        if not api_token and not is_loopback(host):
            raise UsageError(f"refusing to serve on {host} without an API token: anyone who can reach it could "
                             "read and change the store. Pass --api-token (or set VZ_API_TOKEN), or bind "
                             "127.0.0.1")
        if ephemeral and (store is not None or _global_store_given(ctx)):
            raise UsageError("--ephemeral serves a new temporary store: do not also pass --store")
        workers = default_workers() if workers is None else workers
        if workers > 1 and not hasattr(os, "fork"):
            raise UsageError("--workers above 1 needs fork(), which this platform lacks: pass --workers 1")
        tmp = Path(tempfile.mkdtemp(prefix="vz-serve-")) if ephemeral else None
        guard = _guard(tmp) if tmp is not None else None
        try:
            store_path = Path(tmp or store or State.store or default_store_path())

            def make_app() -> Any:
                return create_app(store_path, token=api_token or None, host=host, allow_hosts=allow_host,
                                  cors_origins=cors_origin, read_timeout=read_timeout, max_bodies=max_bodies,
                                  read_threads=read_threads)

            options: dict[str, Any] = {"token": bool(api_token), "access_log": access_log,
                                       "ephemeral": tmp is not None, "read_timeout": read_timeout}
            if workers == 1:
                _run(make_app(), early, host=host, port=port, **options)
            else:
                from vzcli.cli.serve_workers import serve_workers
                from vzcli.server import check_options

                check_options(host, allow_hosts=allow_host, cors_origins=cors_origin)
                serve_workers(make_app, workers, early.got, host=host, port=port, store=store_path, **options)
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            if guard is not None:
                os.close(guard[0])  # the guard sees EOF, finds nothing left to remove and exits
                guard[1].wait()
    finally:
        early.release()

class _EarlyStops:
    """SIGINT and SIGTERM from the start of `vz serve` until the server takes them over, recorded.

    Without this, one that came while the command imports and builds the server was lost or
    misread: a KeyboardInterrupt raised inside an import's callback is printed as "Exception
    ignored" and dropped, and a signal between uvicorn's set-up and its own handlers met a handler
    that did nothing: a harness that stops the server with one signal then waited for ever. The
    server acts on a recorded signal as soon as it takes the signals over."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.previous = {sig: signal.signal(sig, self.record) for sig in (signal.SIGINT, signal.SIGTERM)}

    def record(self, sig: int, frame: Any) -> None:
        self.got.append(sig)

    def release(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


# Removes an ephemeral store once every process holding the pipe's write end is gone (the server
# and its workers), however they ended: SIGKILL included.
_GUARD = ("import shutil, signal, sys\n"
          "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "sys.stdin.buffer.read()\n"
          "shutil.rmtree(sys.argv[1], ignore_errors=True)\n")


def _guard(tmp: Path) -> tuple[int, Any]:
    """Start the process that removes `tmp` when this one is gone; (write end of its pipe, process)."""
    import subprocess

    r, w = os.pipe()
    try:
        # its own session: Ctrl-C in the terminal and a kill of the process group leave it to its work
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _GUARD, str(tmp)], stdin=r,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(r)
    return w, proc


def default_workers() -> int:
    """One worker per CPU, at most 4 (docs/server.md, Concurrency: what more workers cost); 1
    where processes cannot fork (Windows)."""
    return max(1, min(os.cpu_count() or 1, 4)) if hasattr(os, "fork") else 1


def _global_store_given(ctx: typer.Context) -> bool:
    """True when `vz --store DIR serve` named a store on the command line ($VZ_STORE is not a
    conflict: a harness may export it for other commands)."""
    source = ctx.find_root().get_parameter_source("store")
    return source is not None and source.name == "COMMANDLINE"


def uvicorn_config(application: Any, *, access_log: bool, read_timeout: float, **where: Any) -> Any:
    """uvicorn's Config for `application` (`where`: host and port, or nothing for a given socket)."""
    import uvicorn

    from vzcli.http_protocol import protocol_class

    return uvicorn.Config(application, lifespan="on", access_log=access_log,
                          log_level="info" if access_log else "warning", server_header=False,
                          date_header=False, timeout_graceful_shutdown=30, http=protocol_class(read_timeout),
                          **where)


def announce(host: str, port: int, *, store: Path, token: bool, ephemeral: bool, workers: int = 1) -> None:
    """The bound address, once it accepts: one JSON line on stdout for programs (with this
    process's pid: the one to signal), two human lines on stderr."""
    from vzcli.server import API_PREFIX

    shown = f"[{host}]" if ":" in host else host
    auth = "token required" if token else "no auth"
    sys.stdout.write(json.dumps({"url": f"http://{shown}:{port}{API_PREFIX}", "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    kind = "ephemeral store" if ephemeral else "store"
    procs = f", {workers} workers" if workers > 1 else ""
    sys.stderr.write(f"vz serve: listening on http://{shown}:{port} ({kind} {store}, {auth}{procs})\n"
                     f"vz serve: API base URL http://{shown}:{port}/client/v4\n")
    sys.stderr.flush()


def _run(application: Any, early: _EarlyStops, *, host: str, port: int, token: bool, access_log: bool,
         ephemeral: bool, read_timeout: float) -> None:
    config = uvicorn_config(application, host=host, port=port, access_log=access_log, read_timeout=read_timeout)
    server = _make_server(config, early.got, store=application.store_path, token=token, ephemeral=ephemeral)
    # uvicorn re-raises the signal that stopped it once it has shut down: `early`'s handlers, in
    # place around it, only record it, so a clean stop exits 0 instead of dying by the signal
    try:
        server.run()
    except SystemExit:  # uvicorn exits (3) when start-up fails; it has logged why
        if server.started:
            raise
    if ephemeral:
        application.idle(10)  # let a background merge finish before its directory is removed
    if not server.started:
        raise typer.Exit(1)
    sys.stderr.write("vz serve: stopped\n")


def _make_server(config: Any, early: list[int], *, store: Path, token: bool, ephemeral: bool) -> Any:
    """uvicorn's Server, announcing the bound address (real port, also for --port 0) once it
    accepts, and stopping at once for a stop signal that came before it took the signals over."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                for sig in list(early):
                    self.handle_exit(sig, None)
                yield

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.started or not self.servers:
                return
            h, p = self.servers[0].sockets[0].getsockname()[:2]
            announce(h, p, store=store, token=token, ephemeral=ephemeral)

    return Server(config)
