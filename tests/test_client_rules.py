"""Rules that clients' code relies on (issue 15): an empty filter is no filter, the Workers binding's
batch limit of 1000 vectors, and warnings with stable codes whose API wording names no CLI command.

Each rule is checked where a client meets it: the CLI, the REST API (in-process) and the dev-binding
shim (under Node with `fetch` stubbed, as in tests/test_devbinding.py; tests/test_devbinding_e2e.py
runs the empty filter through real `wrangler dev`).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from test_devbinding import BASE as SHIM_BASE
from test_devbinding import NDJSON_HEADERS, ok, run_shim

with warnings.catch_warnings():  # starlette 1.x nudges towards httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vzcli.server import create_app

API = "/client/v4/accounts/acct/vectorize/v2/indexes"
RECORDS = [
    {"id": "a", "values": [1, 0, 0], "metadata": {"genre": "x"}},
    {"id": "b", "values": [0, 1, 0], "namespace": "ns1", "metadata": {"genre": "y"}},
    {"id": "c", "values": [0.9, 0.1, 0]},
]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    c = TestClient(create_app(tmp_path / "store"), raise_server_exceptions=True, base_url="http://127.0.0.1")
    assert c.post(API, json={"name": "idx", "config": {"dimensions": 3, "metric": "cosine"}}).status_code == 200
    r = c.post(f"{API}/idx/insert", content="\n".join(json.dumps(v) for v in RECORDS),
               headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    return c


def query(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"{API}/idx/query", json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


# --- an empty filter is no filter ---------------------------------------------------------------

def test_rest_empty_filter_is_no_filter(client: TestClient) -> None:
    plain = query(client, {"vector": [1, 0.1, 0], "topK": 3, "returnMetadata": "all"})
    assert [m["id"] for m in plain["result"]["matches"]] == ["c", "a", "b"]
    for empty in ({}, None):
        got = query(client, {"vector": [1, 0.1, 0], "topK": 3, "returnMetadata": "all", "filter": empty})
        assert got == plain  # same matches, no warning in messages
    # an empty object *inside* a filter is still invalid: it names no operator
    r = client.post(f"{API}/idx/query", json={"vector": [1, 0, 0], "filter": {"genre": {}}})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == 40030


def test_cli_empty_filter_is_no_filter(vz, tmp_path: Path) -> None:
    assert vz("create", "idx", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    assert vz("insert", "idx", "--file", "-", input="\n".join(json.dumps(v) for v in RECORDS)).exit_code == 0
    plain = vz("query", "idx", "--vector", "1", "0.1", "0", "--top-k", "3", "--json")
    empty = vz("query", "idx", "--vector", "1", "0.1", "0", "--top-k", "3", "--filter", "{}", "--json")
    assert empty.exit_code == 0 and empty.stderr == ""
    assert empty.json() == plain.json() and plain.json()["count"] == 3
    # `null` is still not a filter object
    r = vz("query", "idx", "--vector", "1", "0", "0", "--filter", "null")
    assert r.exit_code == 2 and "[code: 40030]" in r.stderr


def test_shim_sends_an_empty_filter_through(tmp_path: Path) -> None:
    matches = {"count": 0, "matches": []}
    results, requests = run_shim(tmp_path, [{"binding": "VECTORIZE", "method": "query",
                                             "args": [[1, 2, 3], {"filter": {}}]}], [ok(matches)])
    assert results == [{"ok": True, "result": matches}]
    assert requests[0]["body"] == '{"filter":{},"vector":[1,2,3]}'


# --- the Workers binding's batch limit ------------------------------------------------------------

@pytest.mark.parametrize("method", ["insert", "upsert"])
def test_shim_refuses_more_than_1000_vectors_per_call(tmp_path: Path, method: str) -> None:
    many = [{"id": f"v{i}", "values": [1]} for i in range(1001)]
    mutation = {"mutationId": "11111111-2222-4333-8444-555555555555"}
    calls = [{"binding": "VECTORIZE", "method": method, "args": [many]},
             {"binding": "VECTORIZE", "method": method, "args": [many[:1000]]}]
    results, requests = run_shim(tmp_path, calls, [ok(mutation)])
    op = method.upper()
    assert results == [
        {"ok": False, "error": f"VECTOR_{op}_ERROR (code = 40007): too many vectors in payload; "
                               "max vector count is 1000, got 1001"},
        {"ok": True, "result": mutation},
    ]
    # the refused call sent nothing; the call at the limit sent all 1000 records
    assert [r["url"] for r in requests] == [f"{SHIM_BASE}/docs/{method}"]
    assert requests[0]["headers"] == NDJSON_HEADERS and requests[0]["body"].count("\n") == 999


# --- warnings: stable codes, API wording ----------------------------------------------------------

def test_warnings_carry_codes_and_name_api_calls(client: TestClient) -> None:
    r = query(client, {"vector": [1, 0, 0], "filter": {"year": 2001}})
    created = client.post(f"{API}/idx/metadata_index/create", json={"propertyName": "genre", "indexType": "string"})
    discarded = client.post(f"{API}/idx/upsert?unparsable-behavior=discard", content=b"nope\n",
                            headers={"content-type": "application/x-ndjson"})
    messages = r["messages"] + created.json()["messages"] + discarded.json()["messages"]
    assert [m["code"] for m in messages] == [1201, 1202, 1203]
    for m in messages:
        assert "vz " not in m["message"] and "--" not in m["message"], m  # no CLI command or flag
    assert "POST .../indexes/idx/metadata_index/create" in messages[0]["message"]
    assert "POST .../indexes/idx/upsert" in messages[1]["message"]


def test_cli_keeps_naming_the_cli_fix(vz) -> None:
    assert vz("create", "idx", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    assert vz("insert", "idx", "--file", "-", input=json.dumps(RECORDS[0])).exit_code == 0
    r = vz("query", "idx", "--vector", "1", "0", "0", "--filter", '{"year": 1}', "--json")
    assert r.exit_code == 0 and r.json() == {"count": 0, "matches": []}
    assert "create one with: vz create-metadata-index idx --property-name year --type string|number|boolean" \
        in r.stderr
    r = vz("create-metadata-index", "idx", "--property-name", "genre", "--type", "string")
    assert r.exit_code == 0 and "Pass --backfill to index them now." in r.stderr
