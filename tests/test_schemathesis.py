"""schemathesis against `vz serve`'s own OpenAPI document: no 500, every error in Cloudflare's envelope.

Every operation is called twice per generated case: once as generated (mostly invalid names and
bodies) and once aimed at a real index `fz` with metadata indexes and records, so the generated
bodies reach the query, write and metadata paths. The app runs in-process through ASGI (the same
`VzApp` that `vz serve` hands to uvicorn): no port, and each example costs about a millisecond.
A last test runs a few cases against a real `vz serve` process over HTTP.

VZ_SOAK=1 raises the examples per operation from 25 to 500 (docs/reliability.md).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from vzcli.local import LocalBackend
from vzcli.server import create_app
from vzcli.store import Store

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 500 if os.environ.get("VZ_SOAK") == "1" else 25
INDEX = "fz"


def _ensure_index(store: Path) -> None:
    """(Re)create `fz` with metadata indexes and records whenever a generated case deleted it."""
    b = LocalBackend(Store(store))
    try:
        if INDEX in {i["name"] for i in b.list_indexes()}:
            return
        b.create_index(INDEX, dimensions=3, metric="cosine")
        for prop, typ in (("s", "string"), ("n", "number"), ("b", "boolean")):
            b.create_metadata_index(INDEX, prop, typ)
        data = "".join(json.dumps({"id": f"r{i}", "values": [i, 1, -i], "namespace": "ns" if i % 2 else None,
                                   "metadata": {"s": f"v{i}", "n": i, "b": i % 3 == 0}}) + "\n" for i in range(30))
        b.insert(INDEX, io.BytesIO(data.replace(', "namespace": null', "").encode()))
    finally:
        b.store.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schemathesis") / "store"
    _ensure_index(path)
    return path


@pytest.fixture(scope="module")
def api_schema(store: Path) -> Any:
    app = create_app(store, token=TOKEN, allow_hosts=["testserver"])  # the in-process clients' Host
    return schemathesis.openapi.from_asgi("/client/v4/openapi.json", app, headers=AUTH)


def _check_envelope(response: Any, where: str) -> None:
    assert response.status_code < 500, (where, response.status_code, response.text)
    body = json.loads(response.content)
    assert isinstance(body, dict) and set(body) == {"success", "errors", "messages", "result"}, (where, body)
    if response.status_code >= 400:
        assert body["success"] is False and body["result"] is None, (where, body)
        assert body["errors"] and all(isinstance(e.get("code"), int) and isinstance(e.get("message"), str)
                                      and e["message"] for e in body["errors"]), (where, body)
        # (generated names are echoed in messages, so look for the server's own marks only)
        assert "Traceback (most recent call last)" not in e_text(body), (where, body)
        assert not any(e["message"].startswith("internal error:") for e in body["errors"]), (where, body)
    else:
        assert body["success"] is True and body["errors"] == [], (where, body)


def e_text(body: dict[str, Any]) -> str:
    return json.dumps(body["errors"])


def _runner(operation: Any, store: Path, examples: int, base_url: str | None, calls: dict[str, int]) -> Any:
    label = f"{operation.method.upper()} {operation.path}"

    @given(case=operation.as_strategy())
    @settings(max_examples=examples, deadline=None, derandomize=os.environ.get("VZ_SOAK") != "1",
              suppress_health_check=list(HealthCheck), database=None)
    def run(case: Any) -> None:
        _ensure_index(store)
        for aim in (False, True):
            if aim:  # the same case against a real index, so bodies reach the core
                if "index_name" not in (case.path_parameters or {}):
                    break
                _ensure_index(store)
                case.path_parameters["index_name"] = INDEX
            response = case.call(base_url=base_url, headers=AUTH)
            _check_envelope(response, f"{case.method} {case.formatted_path}")
            case.validate_response(response, checks=[not_a_server_error])
            calls[label] = calls.get(label, 0) + 1

    return run


def _run_operations(schema: Any, store: Path, examples: int, *, base_url: str | None = None) -> dict[str, int]:
    """Every operation of `schema`, `examples` generated cases each; returns the calls made per operation."""
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        _runner(result.ok(), store, examples, base_url, calls)()
    return calls


def test_api(api_schema: Any, store: Path) -> None:
    calls = _run_operations(api_schema, store, EXAMPLES)
    assert len(calls) == 14, calls  # every operation of the document was exercised
    assert all(n >= 2 for n in calls.values()), calls


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_unauthenticated_and_unknown_routes_are_enveloped(api_schema: Any, store: Path) -> None:
    from starlette.testclient import TestClient

    client = TestClient(create_app(store, token=TOKEN, allow_hosts=["testserver"]))  # TestClient's Host
    base = "/client/v4/accounts/x/vectorize/v2/indexes"
    cases = [("GET", base, {}, 401), ("GET", base + "/fz/nope", AUTH, 404), ("PATCH", base, AUTH, 405),
             ("POST", base + "/fz/query", {**AUTH, "content-type": "application/json"}, 400),
             ("POST", base + "/fz/insert", {**AUTH, "content-type": "application/x-ndjson"}, 400),
             ("GET", "/elsewhere", AUTH, 404)]
    for method, url, headers, status in cases:
        r = client.request(method, url, headers=headers, content=b"\xff{not json")
        assert r.status_code == status, (method, url, r.text)
        _check_envelope(r, f"{method} {url}")


def test_real_server_over_http(tmp_path: Path) -> None:
    """The same checks through uvicorn and a socket, on a handful of cases per operation."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers_server import start_server, stop_server

    store = tmp_path / "store"
    _ensure_index(store)
    base_url, proc = start_server(store, token=TOKEN)
    try:
        remote = schemathesis.openapi.from_url(base_url + "/client/v4/openapi.json", headers=AUTH)
        calls = _run_operations(remote, store, 3, base_url=base_url)
        assert len(calls) == 14, calls
    finally:
        assert stop_server(proc) == 0
