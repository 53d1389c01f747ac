"""Start `vz serve` as a subprocess on a free loopback port, for tests that need a real HTTP server.

    from helpers_server import start_server, stop_server
    base_url, proc = start_server(tmp_path / "store", token="t")   # http://127.0.0.1:PORT
    ...                                                            # API base: base_url + "/client/v4"
    stop_server(proc)

or the pytest fixture `served_store` (import it into a test module or a conftest):

    from helpers_server import served_store  # noqa: F401
    def test_x(served_store): served_store.api, served_store.store, served_store.token ...

The server is asked for port 0 and announces the port it got on stderr, so there is no race for a
port; readiness is then confirmed by polling GET /client/v4/openapi.json until it answers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LISTENING = re.compile(r"vz serve: listening on (http://\S+)")
ACCOUNT = "0123456789abcdef0123456789abcdef"


class ServerProcess(subprocess.Popen):  # type: ignore[type-arg]
    """A Popen whose stderr is drained by a thread into `.log` (so a chatty server never blocks)."""

    log: list[str]


def start_server(store_path: str | os.PathLike[str], token: str | None = None, *,
                 extra_args: list[str] | None = None, env: dict[str, str] | None = None,
                 timeout: float = 30.0) -> tuple[str, ServerProcess]:
    """Run `vz serve --port 0 --store STORE [--api-token TOKEN]`; return (base_url, process).

    `base_url` is `http://127.0.0.1:PORT` (no path); the API lives under `base_url + "/client/v4"`.
    Raises RuntimeError with the server's stderr if it exits or does not answer within `timeout`.
    """
    cmd = [sys.executable, "-m", "vzcli", "serve", "--host", "127.0.0.1", "--port", "0",
           "--store", str(store_path), *(extra_args or [])]
    run_env = dict(os.environ if env is None else env)
    run_env.pop("VZ_API_TOKEN", None)
    if token is not None:
        run_env["VZ_API_TOKEN"] = token  # not on the command line, where `ps` would show it
    run_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = ServerProcess(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=run_env, text=True, encoding="utf-8", errors="replace")
    proc.log = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            proc.log.append(line)
            m = LISTENING.search(line)
            if m and not url:
                url.append(m.group(1))
                found.set()
        found.set()  # EOF: the process is gone

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + timeout
    found.wait(timeout)
    if not url:
        stop_server(proc)
        raise RuntimeError("vz serve did not start:\n" + "".join(proc.log))
    base_url = url[0]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    while True:
        try:
            req = urllib.request.Request(base_url + "/client/v4/openapi.json", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return base_url, proc
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"vz serve at {base_url} did not answer:\n" + "".join(proc.log))
        time.sleep(0.05)  # polling a condition with a deadline, not synchronising by sleep


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> int:  # type: ignore[type-arg]
    """SIGTERM, wait for a clean exit (kill after `timeout`); returns the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class ServedStore:
    """A running server over a fresh store: `api` is the base URL for wrangler/the SDK."""

    base_url: str
    store: Path
    proc: ServerProcess
    token: str | None = None
    account: str = ACCOUNT
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def api(self) -> str:
        return self.base_url + "/client/v4"

    @property
    def indexes_url(self) -> str:
        return f"{self.api}/accounts/{self.account}/vectorize/v2/indexes"


@pytest.fixture
def served_store(tmp_path: Path) -> Iterator[ServedStore]:
    """`vz serve` over a fresh store in tmp_path, token "test-token"; stopped (and checked) after."""
    store = tmp_path / "served-store"
    token = "test-token"
    base_url, proc = start_server(store, token=token)
    try:
        yield ServedStore(base_url=base_url, store=store, proc=proc, token=token)
    finally:
        stop_server(proc)
