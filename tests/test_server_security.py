"""`vz serve` keeps web pages out (Host and Origin checks, CORS only for listed origins) and notices
a store replaced under it. In-process, through the ASGI app with exactly the headers given."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from asgi_call import call

from vzcli.local import LocalBackend
from vzcli.server import create_app
from vzcli.store import Store

ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
CREATE = json.dumps({"name": "evil", "config": {"dimensions": 3, "metric": "cosine"}}).encode()
HOST_MSG = ("Host {!r} is not allowed: vz serve answers only requests addressed to localhost, 127.0.0.1, [::1] "
            "or its --host (a defence against DNS rebinding); to serve this name start it with --allow-host {}")


def refused(status: int, headers: dict[str, str], body: Any, code: int, message: str | None = None) -> None:
    assert status == 403 and headers["x-should-retry"] == "false"
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert body["errors"][0]["code"] == code, body
    if message is not None:
        assert body["errors"][0]["message"] == message
    assert "access-control-allow-origin" not in headers


def names(app: Any) -> list[str]:
    status, _, body = call(app, "GET", BASE)
    assert status == 200, body
    return [i["name"] for i in body["result"]]


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(tmp_path / "store", read_threads=1)


# --- Host ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["localhost", "localhost:8788", "LocalHost.", "127.0.0.1", "127.0.0.1:1",
                                  "127.1.2.3:8788", "[::1]", "[::1]:8788", "app.localhost:3000"])
def test_loopback_hosts_are_served(app: Any, host: str) -> None:
    status, _, body = call(app, "GET", BASE, headers=[("host", host)])
    assert status == 200 and body["result"] == []


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8788", "127.0.0.1.evil.example",
                                  "localhost.evil.example:8788", "10.0.0.1:8788", "[::2]:8788", "localhost.local"])
def test_other_hosts_are_refused_even_for_reads_and_change_nothing(app: Any, host: str) -> None:
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0][1:]
    for method, path, body in (("POST", BASE, CREATE), ("GET", BASE, b""), ("GET", "/client/v4/openapi.json", b"")):
        status, headers, out = call(app, method, path, headers=[("host", host), ("content-type", "application/json")],
                                    body=body)
        refused(status, headers, out, 7010, HOST_MSG.format(host, name))
    assert names(app) == []


@pytest.mark.parametrize("hosts,message", [
    ([], "a request needs a Host header naming this server (localhost or 127.0.0.1)"),
    ([("host", "")], "a request needs a Host header naming this server (localhost or 127.0.0.1)"),
    ([("host", ":8788")], None),  # Ollama's bypass: an empty name with a port
    ([("host", "localhost:abc")], None),
    ([("host", "user@localhost")], None),
    ([("host", "[::1")], None),
    ([("host", "localhost"), ("host", "evil.example")], "a request must carry exactly one Host header"),
])
def test_empty_missing_malformed_or_repeated_host_is_refused(app: Any, hosts: list[tuple[str, str]],
                                                             message: str | None) -> None:
    status, headers, body = call(app, "POST", BASE, headers=[*hosts, ("content-type", "application/json")],
                                 body=CREATE)
    refused(status, headers, body, 7010, message)
    assert names(app) == []


def test_the_bound_host_and_allow_host_names_are_served(tmp_path: Path) -> None:
    app = create_app(tmp_path / "s", host="192.168.7.9", allow_hosts=["myhost.lan", "Other.Lan:9000"], read_threads=1)
    for host in ("192.168.7.9:8788", "myhost.lan", "myhost.lan:8788", "other.lan:1", "localhost"):
        assert call(app, "GET", BASE, headers=[("host", host)])[0] == 200, host
    for host in ("192.168.7.10", "sub.myhost.lan", "evil.example"):
        assert call(app, "GET", BASE, headers=[("host", host)])[0] == 403, host


def test_a_wildcard_bind_serves_ip_literals_but_not_names(tmp_path: Path) -> None:
    app = create_app(tmp_path / "s", host="0.0.0.0", token="t", read_threads=1)
    auth = ("authorization", "Bearer t")
    for host in ("192.168.7.9:8788", "[fe80::1]:8788", "localhost"):
        assert call(app, "GET", BASE, headers=[("host", host), auth])[0] == 200, host
    assert call(app, "GET", BASE, headers=[("host", "evil.example"), auth])[0] == 403


@pytest.mark.parametrize("bad", ["", "a b", "http://x", "x:y"])
def test_bad_allow_host_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    from vzcli.errors import UsageError

    with pytest.raises(UsageError, match="is not a host name or address"):
        create_app(tmp_path / "s", allow_hosts=[bad])


# --- Origin -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_page_cannot_write_without_a_preflight(app: Any, ctype: str | None) -> None:
    """What `fetch(url, {method: "POST", body: new Blob([...])})` from a page sends: no preflight."""
    origin = "https://evil.example"
    hdrs = [("host", "127.0.0.1:8788"), ("origin", origin), *([("content-type", ctype)] if ctype else [])]
    for path, body in ((BASE, CREATE), (f"{BASE}/x/insert", b'{"id":"a","values":[1,2,3]}'),
                       ("/client/v4/vz/reset", b"")):
        status, headers, out = call(app, "POST", path, headers=hdrs, body=body)
        refused(status, headers, out, 7011,
                f"Origin {origin!r} is not allowed: requests from web pages are refused unless their origin is "
                f"listed with --cors-origin (start vz serve with --cors-origin {origin} to allow it)")
    assert names(app) == []


@pytest.mark.parametrize("extra", [[("origin", "null")], [("origin", "http://127.0.0.1:8788")],
                                   [("sec-fetch-site", "cross-site")], [("sec-fetch-site", "same-site")]])
def test_reads_from_pages_are_refused_too(app: Any, extra: list[tuple[str, str]]) -> None:
    status, headers, body = call(app, "GET", BASE, headers=[("host", "127.0.0.1:8788"), *extra])
    refused(status, headers, body, 7011)


@pytest.mark.parametrize("site", ["none", "same-origin"])
def test_sec_fetch_site_of_a_user_or_the_server_itself_is_served(app: Any, site: str) -> None:
    assert call(app, "GET", BASE, headers=[("host", "localhost"), ("sec-fetch-site", site)])[0] == 200


def test_listed_origins_get_cors_and_preflights_others_do_not(tmp_path: Path) -> None:
    app = create_app(tmp_path / "s", cors_origins=["http://localhost:5173/"], read_threads=1)
    origin = [("host", "127.0.0.1:8788"), ("origin", "http://localhost:5173")]
    status, headers, body = call(app, "POST", BASE, headers=[*origin, ("content-type", "application/json")],
                                 body=CREATE)
    assert status == 200 and body["result"]["name"] == "evil"
    assert headers["access-control-allow-origin"] == "http://localhost:5173" and headers["vary"] == "Origin"
    status, headers, body = call(app, "OPTIONS", f"{BASE}/evil/query", headers=[
        *origin, ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type, authorization")])
    assert status == 204 and body is None
    assert {k: v for k, v in headers.items() if k.startswith("access-control")} == {
        "access-control-allow-origin": "http://localhost:5173",
        "access-control-allow-methods": "GET, HEAD, POST, DELETE, OPTIONS",
        "access-control-allow-headers": "content-type, authorization",
        "access-control-max-age": "600"}
    # an error for a listed origin carries CORS too, so the page can read it
    status, headers, body = call(app, "GET", f"{BASE}/nope", headers=origin)
    assert status == 404 and headers["access-control-allow-origin"] == "http://localhost:5173"
    # another origin: refused, preflight included, with no CORS header
    for method in ("OPTIONS", "GET"):
        status, headers, body = call(app, method, BASE, headers=[("host", "127.0.0.1"), ("origin", "http://localhost:5174")])
        refused(status, headers, body, 7011)
    # no Origin (a CLI client): no CORS headers, and OPTIONS is just a wrong method
    status, headers, _ = call(app, "GET", BASE)
    assert status == 200 and "access-control-allow-origin" not in headers
    assert call(app, "OPTIONS", BASE)[0] == 405


def test_host_is_checked_before_the_token_and_the_token_still_applies(tmp_path: Path) -> None:
    app = create_app(tmp_path / "s", token="t", cors_origins=["http://localhost:5173"], read_threads=1)
    assert call(app, "GET", BASE, headers=[("host", "evil.example")])[0] == 403
    assert call(app, "GET", BASE, headers=[("host", "localhost"), ("origin", "http://localhost:5173")])[0] == 401
    # a preflight carries no credentials: answered without the token
    assert call(app, "OPTIONS", BASE, headers=[("host", "localhost"), ("origin", "http://localhost:5173")])[0] == 204


@pytest.mark.parametrize("bad", ["localhost:5173", "null", "*", "ftp://x", "http://"])
def test_bad_cors_origin_is_a_usage_error(tmp_path: Path, bad: str) -> None:
    from vzcli.errors import UsageError

    with pytest.raises(UsageError, match="is not an origin; give scheme://host"):
        create_app(tmp_path / "s", cors_origins=[bad])


# --- a store replaced or deleted under the server ------------------------------------------------
def _create(app: Any, name: str) -> None:
    body = json.dumps({"name": name, "config": {"dimensions": 3, "metric": "cosine"}}).encode()
    status, _, out = call(app, "POST", BASE, headers=[("host", "localhost"), ("content-type", "application/json")],
                          body=body)
    assert status == 200, out


@pytest.mark.parametrize("read_threads", [0, 2])
def test_a_store_replaced_under_the_server_is_reopened(tmp_path: Path, read_threads: int) -> None:
    store = tmp_path / "store"
    app = create_app(store, read_threads=read_threads)
    _create(app, "old")
    for _ in range(4):  # every reader thread has opened the old catalog
        assert names(app) == ["old"]
    shutil.rmtree(store)
    b = LocalBackend(Store(store))
    b.create_index("new", dimensions=3, metric="cosine")
    b.store.close()
    for _ in range(4):
        assert names(app) == ["new"]
    status, _, body = call(app, "GET", f"{BASE}/old/info")
    assert status == 404 and body["errors"][0]["code"] == 3000


def test_a_deleted_store_is_noticed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    app = create_app(store, read_threads=1)
    _create(app, "old")
    assert names(app) == ["old"]
    shutil.rmtree(store)
    assert names(app) == []
    status, _, body = call(app, "GET", f"{BASE}/old/info")
    assert status == 404 and body["errors"][0]["code"] == 3000
    _create(app, "again")  # and writes go to a new catalog at the same path
    assert names(app) == ["again"] and (store / "catalog.sqlite3").is_file()
