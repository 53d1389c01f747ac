"""`vz serve` for test harnesses: the JSON address line, `--ephemeral`, and the vz-only reset call."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vzcli.server import create_app

ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
EPHEMERAL = re.compile(r"vz serve: listening on \S+ \(ephemeral store (\S+), ")


def _serve(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vzcli", "serve", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the server prints it (or exits: then "")
    assert line, proc.stderr.read() if proc.stderr else ""
    return json.loads(line)


def _call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, data=data,
                                 headers={"content-type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_port_0_prints_json_address_and_ephemeral_store_is_removed(sig: int, tmp_path: Path) -> None:
    # $VZ_STORE is no conflict (a harness may export it for other commands) and stays untouched
    proc = _serve("--port", "0", "--ephemeral", env={"VZ_STORE": str(tmp_path / "env-store")})
    try:
        first = _first_line(proc)
        assert set(first) == {"url", "pid"} and first["pid"] == proc.pid
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/client/v4", first["url"])
        assert m and int(m.group(1)) > 0
        assert proc.stderr is not None
        listening = proc.stderr.readline()
        store = Path(EPHEMERAL.search(listening).group(1))  # type: ignore[union-attr]
        idx = f"{first['url']}/accounts/{ACCT}/vectorize/v2/indexes"
        status, body = _call(idx, "POST", {"name": "a", "config": {"dimensions": 3, "metric": "cosine"}})
        assert status == 200 and body["success"] is True
        assert (store / "catalog.sqlite3").is_file()
        assert _call(idx)[1]["result"][0]["name"] == "a"
    finally:
        _stop(proc, sig)
    assert not store.exists() and not (tmp_path / "env-store").exists()


def test_json_line_on_a_fixed_port_too(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago; the server binds it itself
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _serve("--port", str(port), "--store", str(tmp_path / "s"))
    try:
        assert _first_line(proc) == {"url": f"http://127.0.0.1:{port}/client/v4", "pid": proc.pid}
    finally:
        _stop(proc, signal.SIGTERM)


@pytest.mark.parametrize("args", [["--ephemeral", "--store", "x"], ["--store", "x", "--ephemeral"]])
def test_ephemeral_conflicts_with_store(args: list[str], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "vzcli", "serve", "--port", "0", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "--ephemeral serves a new temporary store: do not also pass --store" in r.stderr
    assert not (tmp_path / "x").exists()


def test_ephemeral_conflicts_with_global_store(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "vzcli", "--store", "x", "serve", "--port", "0", "--ephemeral"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "do not also pass --store" in r.stderr


# --- POST /client/v4/vz/reset ---------------------------------------------------------------------
@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    c = TestClient(create_app(tmp_path / "store"), base_url="http://127.0.0.1")
    for name in ("test-a1", "test-a2", "test-b1", "other"):
        r = c.post(BASE, json={"name": name, "config": {"dimensions": 3, "metric": "cosine"}})
        assert r.status_code == 200, r.json()
    return c


def _names(c: TestClient) -> list[str]:
    return [i["name"] for i in c.get(BASE).json()["result"]]


def test_reset_with_a_prefix_deletes_only_matching_indexes(client: TestClient) -> None:
    r = client.post("/client/v4/vz/reset", json={"prefix": "test-a"})
    assert r.status_code == 200
    assert r.json() == {"result": {"deleted": ["test-a1", "test-a2"]}, "success": True, "errors": [], "messages": []}
    assert _names(client) == ["other", "test-b1"]


@pytest.mark.parametrize("kw", [{}, {"json": {}}, {"json": {"prefix": ""}}, {"content": b"  "}])
def test_reset_without_a_prefix_deletes_every_index(client: TestClient, kw: dict[str, Any]) -> None:
    r = client.post("/client/v4/vz/reset", **kw)
    assert r.json() == {"result": {"deleted": ["other", "test-a1", "test-a2", "test-b1"]}, "success": True,
                        "errors": [], "messages": []}
    assert _names(client) == []
    assert client.post("/client/v4/vz/reset").json()["result"] == {"deleted": []}


@pytest.mark.parametrize("kw,message", [
    ({"json": {"prefix": 3}}, "Failed to parse the request body as JSON: prefix: invalid type: number `3`, "
                              "expected a string"),
    ({"json": ["x"]}, "Failed to parse the request body as JSON: invalid type: sequence, expected an object"),
    ({"content": b"{", "headers": {"content-type": "application/json"}}, None),
])
def test_reset_bad_body_changes_nothing(client: TestClient, kw: dict[str, Any], message: str | None) -> None:
    r = client.post("/client/v4/vz/reset", **kw)
    body = r.json()
    assert r.status_code == 400 and body["errors"][0]["code"] == 40026
    if message:
        assert body["errors"][0]["message"] == message
    assert len(_names(client)) == 4


def test_reset_is_post_only_and_needs_the_token(tmp_path: Path) -> None:
    c = TestClient(create_app(tmp_path / "s", token="t"), base_url="http://127.0.0.1")
    r = c.get("/client/v4/vz/reset", headers={"authorization": "Bearer t"})
    assert r.status_code == 405 and r.headers["allow"] == "POST" and r.json()["errors"][0]["code"] == 7001
    assert c.post("/client/v4/vz/reset").status_code == 401
    r = c.post("/client/v4/vz/reset", headers={"authorization": "Bearer t"})
    assert r.json()["result"] == {"deleted": []}


@pytest.mark.parametrize("args,message", [
    (["--allow-host", "a b"], "--allow-host 'a b' is not a host name or address"),
    (["--cors-origin", "localhost:5173"], "--cors-origin 'localhost:5173' is not an origin; give scheme://host[:port]"),
    (["--ephemeral", "--cors-origin", "*"], "--cors-origin '*' is not an origin"),
])
def test_bad_security_options_are_usage_errors(args: list[str], message: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "vzcli", "serve", "--port", "0", "--store", str(tmp_path / "s"), *args]
                       if "--ephemeral" not in args else
                       [sys.executable, "-m", "vzcli", "serve", "--port", "0", *args],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert r.returncode == 2 and r.stdout == "" and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # no store made, and the ephemeral directory removed


def _guard_pid(store: Path) -> int:
    """The process that removes an ephemeral store (its command line names the store)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(store).encode() in argv and b"-c" in argv:
                found.append(int(d.name))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_ephemeral_store_is_removed_even_when_the_server_is_killed(workers: str) -> None:
    import select

    proc = _serve("--port", "0", "--ephemeral", "--workers", workers)
    try:
        first = _first_line(proc)
        assert proc.stderr is not None
        store = Path(EPHEMERAL.search(proc.stderr.readline()).group(1))  # type: ignore[union-attr]
        idx = f"{first['url']}/accounts/{ACCT}/vectorize/v2/indexes"
        assert _call(idx, "POST", {"name": "a", "config": {"dimensions": 3, "metric": "cosine"}})[0] == 200
        assert (store / "catalog.sqlite3").is_file()
        guard = os.pidfd_open(_guard_pid(store))
    finally:
        proc.kill()  # SIGKILL: nothing runs in the server any more
        proc.communicate(timeout=30)
    try:
        # the guard exits once the server and its workers are gone and the store is removed
        assert select.select([guard], [], [], 30)[0] == [guard]
    finally:
        os.close(guard)
    assert not store.exists()
