"""pytest fixtures for code that uses Cloudflare Vectorize: `vz_store` and `vz_server`.

Registered automatically when vz is installed (entry point `pytest11`, plugin name `vzcli`); pytest
imports this module, `vz` never does. Nothing happens until a test asks for a fixture: a run that
uses neither starts no server and imports nothing of vz beyond this file.

- `vz_store`: a temporary store (also exported as `VZ_STORE` during the test) and a `LocalBackend`
  over it, for code that uses vz as a library or runs the `vz` CLI.
- `vz_server`: one `vz serve` per session, on a free loopback port, over a temporary store. During
  each test it points the `cloudflare` SDK and wrangler at that server through the environment and
  the test starts with no indexes. `vz_server.reset()` empties it again on demand.

docs/testing.md has the recipes.
"""

from __future__ import annotations

import json
import queue
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

ACCOUNT_ID = "vz-local"  # vz serve accepts any account id
START_TIMEOUT = 60.0  # seconds for `vz serve` to announce its address (a cold start on a busy CI box)
STOP_TIMEOUT = 15.0
# Removed for the test's duration: with real credentials in the environment, a client would send
# them along (and authenticate with them if the base URL were ever missed).
CLEARED_KEYS = ("CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL", "CLOUDFLARE_API_USER_SERVICE_KEY")


@dataclass
class VzStore:
    """A temporary store: `path` (not created until the first write) and `backend` over it."""

    path: Path
    backend: Any  # vzcli.local.LocalBackend, imported lazily


@dataclass
class VzServer:
    """A running `vz serve` over a temporary store.

    `base_url` is the API root (`http://127.0.0.1:PORT/client/v4`), what the `cloudflare` SDK takes as
    `base_url` and wrangler as `CLOUDFLARE_API_BASE_URL`; `account_id` and `api_token` are what the
    server accepts; `backend` is a `LocalBackend` over the same store, to seed or inspect indexes
    without HTTP.
    """

    base_url: str
    account_id: str
    api_token: str
    store_path: Path
    pid: int
    _backend: Any = field(default=None, repr=False)

    @property
    def backend(self) -> Any:
        if self._backend is None:
            from vzcli.local import LocalBackend
            from vzcli.store import Store

            # resident=False: every read goes to SQLite, so it sees the server's writes at once.
            self._backend = LocalBackend(Store(self.store_path), resident=False)
        return self._backend

    @property
    def env(self) -> dict[str, str]:
        """The variables `vz_server` sets during each test (for a subprocess of your own).

        The `cloudflare` SDK reads CLOUDFLARE_BASE_URL, wrangler CLOUDFLARE_API_BASE_URL.
        """
        return {"CLOUDFLARE_API_BASE_URL": self.base_url, "CLOUDFLARE_BASE_URL": self.base_url,
                "CLOUDFLARE_ACCOUNT_ID": self.account_id, "CLOUDFLARE_API_TOKEN": self.api_token}

    def reset(self, prefix: str = "") -> list[str]:
        """Delete every index (or those whose names start with `prefix`); return the deleted names.

        Calls `POST /client/v4/vz/reset`, an endpoint only vz has.
        """
        import urllib.request  # lazily: 35 ms that every pytest run would pay, used or not

        body = json.dumps({"prefix": prefix} if prefix else {}).encode()
        req = urllib.request.Request(f"{self.base_url}/vz/reset", data=body, method="POST", headers={
            "Authorization": f"Bearer {self.api_token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=STOP_TIMEOUT) as res:
            envelope = json.loads(res.read())
        return list(envelope["result"]["deleted"])


class VzServeError(RuntimeError):
    """`vz serve` did not start; the message holds its stderr."""


def start_server(store_path: Path, *, token: str, log_path: Path) -> tuple[subprocess.Popen[str], str]:
    """Run `vz serve --port 0` over `store_path`; return the process and the URL it announced."""
    from vzcli import spawn  # here: a run that uses no fixture imports nothing of vz's

    # the token goes in the environment, not on the command line, where `ps` would show it
    env = spawn.env(VZ_API_TOKEN=token, PYTHONUNBUFFERED="1")
    cmd = spawn.argv("vzcli", "serve", "--host", "127.0.0.1", "--port", "0", "--store", str(store_path))
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
                                text=True, encoding="utf-8", errors="replace")
    assert proc.stdout is not None
    try:
        line = _first_line(proc.stdout, START_TIMEOUT)
    except queue.Empty:
        line = None
    try:
        url = str(json.loads(line)["url"]) if line else ""
    except (ValueError, KeyError, TypeError):
        url = ""
    if not url:
        stop_server(proc)
        why = (f"did not announce its address within {START_TIMEOUT:.0f} s" if line is None
               else f"exited ({proc.returncode}) before listening" if not line
               else f"printed {line.strip()!r} instead of its address")
        raise VzServeError(f"vz serve {why}; its stderr:\n"
                           + log_path.read_text(encoding="utf-8", errors="replace"))
    return proc, url


def _first_line(stream: IO[str], timeout: float) -> str:
    """The first line of `stream` (within `timeout`); the rest is drained so the server never blocks."""
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:
        for n, line in enumerate(stream):
            if n == 0:
                lines.put(line)
        lines.put("")  # EOF: the process has exited

    threading.Thread(target=drain, name="vz-serve-stdout", daemon=True).start()
    return lines.get(timeout=timeout)


def stop_server(proc: subprocess.Popen[str]) -> None:
    """SIGTERM and wait for the clean exit; kill after STOP_TIMEOUT."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()  # the drain thread has reached EOF: the server has exited


@pytest.fixture
def vz_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> VzStore:
    """A temporary vz store and a `LocalBackend` over it; exported as `VZ_STORE` during the test."""
    from vzcli.local import LocalBackend
    from vzcli.store import Store

    path = tmp_path / "vz-store"
    monkeypatch.setenv("VZ_STORE", str(path))
    return VzStore(path=path, backend=LocalBackend(Store(path)))


@pytest.fixture(scope="session")
def vz_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VzServer]:
    """The session's `vz serve` (started on first use), without `vz_server`'s per-test reset and env."""
    root = tmp_path_factory.mktemp("vz-server")
    token = secrets.token_hex(16)
    proc, url = start_server(root / "store", token=token, log_path=root / "vz-serve.log")
    try:
        yield VzServer(base_url=url, account_id=ACCOUNT_ID, api_token=token, store_path=root / "store",
                       pid=proc.pid)
    finally:
        stop_server(proc)


@pytest.fixture
def vz_server(vz_server_session: VzServer) -> Iterator[VzServer]:
    """The session's `vz serve`, emptied of indexes, with the environment pointing clients at it.

    During the test CLOUDFLARE_API_BASE_URL, CLOUDFLARE_BASE_URL, CLOUDFLARE_ACCOUNT_ID and
    CLOUDFLARE_API_TOKEN name the server (CLOUDFLARE_API_KEY, CLOUDFLARE_EMAIL and
    CLOUDFLARE_API_USER_SERVICE_KEY are unset); all are restored afterwards.
    """
    vz_server_session.reset()
    with pytest.MonkeyPatch.context() as mp:
        for key in CLEARED_KEYS:
            mp.delenv(key, raising=False)
        for key, value in vz_server_session.env.items():
            mp.setenv(key, value)
        yield vz_server_session
