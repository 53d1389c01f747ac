"""`vz serve`: the REST API v2 envelope, every endpoint, every error path, auth and the process.

Most tests run the ASGI app in-process (Starlette's TestClient); the process tests (signals,
start-up refusal, a body declared over 100 MB, CLI writers next to the server) run `vz serve`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers_server import start_server, stop_server

with warnings.catch_warnings():  # starlette 1.x nudges towards httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vzcli.server import create_app, ndjson_payload

ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
WRANGLER_JSON = "application/json; charset=utf-8;"
UUID_LEN = 36


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(tmp_path / "store"), raise_server_exceptions=True, base_url="http://127.0.0.1")


def ok(r: Any, status: int = 200) -> Any:
    """The `result` of a success envelope, after checking the whole envelope."""
    body = r.json()
    assert r.status_code == status, body
    assert set(body) == {"success", "errors", "messages", "result"}
    assert body["success"] is True and body["errors"] == []
    return body["result"]


def fails(r: Any, status: int, code: int, message: str | None = None) -> str:
    """Check a failure envelope (and x-should-retry on 4xx); return the message."""
    body = r.json()
    assert r.status_code == status, body
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert len(body["errors"]) == 1 and set(body["errors"][0]) == {"code", "message"}
    assert body["errors"][0]["code"] == code, body
    if status < 500:
        assert r.headers["x-should-retry"] == "false"
    if message is not None:
        assert body["errors"][0]["message"] == message
    return str(body["errors"][0]["message"])


def make(client: TestClient, name: str = "idx", dims: int = 3, metric: str = "cosine") -> dict[str, Any]:
    return ok(client.post(BASE, json={"name": name, "config": {"dimensions": dims, "metric": metric}}))


def nd(*records: dict[str, Any]) -> bytes:
    return "\n".join(json.dumps(r) for r in records).encode()


def insert(client: TestClient, name: str, body: bytes, *, op: str = "insert", **kw: Any) -> Any:
    return client.post(f"{BASE}/{name}/{op}", content=body, headers={"content-type": "application/x-ndjson"}, **kw)


RECS = [
    {"id": "a", "values": [1, 0, 0], "metadata": {"genre": "x", "year": 2001}},
    {"id": "b", "values": [0, 1, 0], "namespace": "ns1", "metadata": {"genre": "y"}},
    {"id": "c", "values": [0.9, 0.1, 0]},
]


# --- indexes ------------------------------------------------------------------------------------
def test_index_lifecycle_envelopes(client: TestClient) -> None:
    assert ok(client.get(BASE)) == []
    created = ok(client.post(BASE, json={"name": "idx", "description": "d", "config": {"dimensions": 3,
                                                                                      "metric": "euclidean"}}))
    assert list(created) == ["name", "description", "config", "created_on", "modified_on"]
    assert created["config"] == {"dimensions": 3, "metric": "euclidean"}
    assert ok(client.get(f"{BASE}/idx")) == created
    assert ok(client.get(BASE)) == [created]
    assert ok(client.get(f"{BASE}/idx/info")) == {"dimensions": 3, "vectorCount": 0}
    assert ok(client.delete(f"{BASE}/idx")) is None
    fails(client.get(f"{BASE}/idx"), 404, 3000, 'vectorize.index.not_found - Index name "idx"')
    fails(client.delete(f"{BASE}/idx"), 404, 3000)


def test_create_preset_and_wrangler_content_type(client: TestClient) -> None:
    r = client.post(BASE, content=b'{"name":"p","config":{"preset":"@cf/baai/bge-small-en-v1.5"}}',
                    headers={"content-type": WRANGLER_JSON})
    assert ok(r)["config"] == {"dimensions": 384, "metric": "cosine"}
    assert "description" not in ok(client.get(f"{BASE}/p"))


def test_create_errors(client: TestClient) -> None:
    make(client)
    fails(client.post(BASE, json={"name": "idx", "config": {"dimensions": 3, "metric": "cosine"}}), 409, 3002,
          'vectorize.index.duplicate_name - Index name "idx"')
    fails(client.post(BASE, json={"name": "n"}), 400, 3001, "vectorize.index.invalid_config - Config must be provided")
    msg = fails(client.post(BASE, json={"name": "n", "config": {"dimensions": 0, "metric": "cosine"}}), 400, 3001)
    assert msg.startswith("vectorize.index.invalid_config - Dimensions must be in range: [1, 1536]")
    fails(client.post(BASE, json={"name": "n", "config": {"dimensions": 3, "metric": "manhattan"}}), 400, 3001)
    fails(client.post(BASE, json={"name": "Bad/Name", "config": {"dimensions": 3, "metric": "cosine"}}), 400, 3001)
    fails(client.post(BASE, json={"config": {"dimensions": 3, "metric": "cosine"}}), 400, 40026,
          "Failed to parse the request body as JSON: missing field `name`")
    fails(client.post(BASE, json={"name": "n", "config": {"dimensions": "3", "metric": "cosine"}}), 400, 40026,
          "Failed to parse the request body as JSON: dimensions: invalid type: string, expected an integer")


# --- generic errors -----------------------------------------------------------------------------
def test_unknown_route_wrong_method_bad_json(client: TestClient) -> None:
    fails(client.get("/nope"), 404, 7003, "No route for the URI")
    fails(client.get(f"{BASE}/idx/frobnicate"), 404, 7003, "No route for the URI")
    fails(client.get(f"/client/v4/accounts/{ACCT}/vectorize/indexes"), 404, 7003)  # V1 is out of scope
    r = client.put(f"{BASE}/idx")
    fails(r, 405, 7001, "Method not allowed")
    assert r.headers["allow"] == "GET, DELETE"
    fails(client.get(f"{BASE}/idx/query"), 405, 7001)
    fails(client.delete(BASE), 405, 7001)
    make(client)
    fails(client.post(f"{BASE}/idx/query", content=b"{nope", headers={"content-type": "application/json"}),
          400, 40026)
    msg = fails(client.post(f"{BASE}/idx/query", content=b"", headers={"content-type": "application/json"}),
                400, 40026)
    assert msg.startswith("Failed to parse the request body as JSON: ")
    fails(client.post(f"{BASE}/idx/query", content=b"[1,2]", headers={"content-type": "application/json"}),
          400, 40026, "Failed to parse the request body as JSON: invalid type: sequence, expected an object")
    fails(client.post(f"{BASE}/idx/query", content=b'{"vector":[1,2,3]}', headers={"content-type": "text/plain"}),
          400, 40026, "Expected request with `Content-Type: application/json`")


# --- auth ---------------------------------------------------------------------------------------
def test_auth_token(tmp_path: Path) -> None:
    c = TestClient(create_app(tmp_path / "s", token="s3cret"), base_url="http://127.0.0.1")
    fails(c.get(BASE), 401, 10000, "Authentication error")
    fails(c.get(BASE, headers={"authorization": "Bearer wrong"}), 401, 10000)
    fails(c.get(BASE, headers={"authorization": "s3cret"}), 401, 10000)
    fails(c.get("/nope"), 401, 10000)  # auth comes before routing, as on Cloudflare
    fails(c.get("/client/v4/openapi.json"), 401, 10000)
    assert ok(c.get(BASE, headers={"authorization": "Bearer s3cret"})) == []
    assert ok(c.get(BASE, headers={"authorization": "bearer s3cret"})) == []
    assert ok(c.get(BASE, headers={"x-auth-key": "s3cret", "x-auth-email": "me@example.com"})) == []


def test_no_token_means_no_auth(client: TestClient) -> None:
    assert ok(client.get(BASE, headers={"authorization": "Bearer anything"})) == []


# --- insert / upsert ----------------------------------------------------------------------------
def test_insert_upsert_info_and_get(client: TestClient) -> None:
    make(client)
    mid = ok(insert(client, "idx", nd(*RECS)))["mutationId"]
    assert len(mid) == UUID_LEN
    info = ok(client.get(f"{BASE}/idx/info"))
    assert info["vectorCount"] == 3 and info["processedUpToMutation"] == mid and info["dimensions"] == 3
    got = ok(client.post(f"{BASE}/idx/get_by_ids", json={"ids": ["c", "b", "zz", "a"]}))
    assert got == [
        {"id": "c", "values": [pytest.approx(0.9), pytest.approx(0.1), 0.0], "metadata": {}},
        {"id": "b", "values": [0.0, 1.0, 0.0], "metadata": {"genre": "y"}, "namespace": "ns1"},
        {"id": "a", "values": [1.0, 0.0, 0.0], "metadata": {"genre": "x", "year": 2001}},
    ]
    # insert keeps existing ids; upsert replaces in full
    ok(insert(client, "idx", nd({"id": "a", "values": [0, 0, 1]})))
    assert ok(client.post(f"{BASE}/idx/get_by_ids", json={"ids": ["a"]}))[0]["values"] == [1.0, 0.0, 0.0]
    mid2 = ok(insert(client, "idx", nd({"id": "a", "values": [0, 0, 1]}), op="upsert"))["mutationId"]
    assert ok(client.post(f"{BASE}/idx/get_by_ids", json={"ids": ["a"]})) == [
        {"id": "a", "values": [0.0, 0.0, 1.0], "metadata": {}}]
    assert ok(client.get(f"{BASE}/idx/info"))["processedUpToMutation"] == mid2


def test_insert_encodings(client: TestClient) -> None:
    """wrangler's multipart, raw NDJSON under any content type, and the SDK's JSON-string body."""
    make(client)
    boundary = "----formdata-undici-083666445780"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"vectors\"; filename=\"vectors.ndjson\""
                 f"\r\nContent-Type: application/x-ndjson\r\n\r\n").encode() + nd(RECS[0], RECS[1]) + \
        f"\r\n--{boundary}--\r\n".encode()
    ok(client.post(f"{BASE}/idx/insert", content=multipart,
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"}))
    for i, ctype in enumerate(["application/json", "application/octet-stream", "text/plain", None]):
        headers = {"content-type": ctype} if ctype else {}
        ok(client.post(f"{BASE}/idx/insert", content=nd({"id": f"raw{i}", "values": [1, 2, 3]}) + b"\n",
                       headers=headers))
    ok(client.post(f"{BASE}/idx/upsert", content=json.dumps(nd({"id": "str", "values": [3, 2, 1]}).decode()),
                   headers={"content-type": "application/json"}))
    ids = [v["id"] for v in ok(client.get(f"{BASE}/idx/list"))["vectors"]]
    assert ids == ["a", "b", "raw0", "raw1", "raw2", "raw3", "str"]
    r = client.post(f"{BASE}/idx/insert", content=multipart.replace(b'name="vectors"', b'name="file"'),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    fails(r, 400, 40023)


def test_ndjson_payload_unit() -> None:
    assert ndjson_payload(b'{"id":"a"}', "application/json").tobytes() == b'{"id":"a"}'
    assert ndjson_payload(b'"{\\"id\\":\\"a\\"}\\n"', "application/json").tobytes() == b'{"id":"a"}\n'
    assert ndjson_payload(b'"not closed', "").tobytes() == b'"not closed'
    body = b'--XY\nContent-Disposition: form-data; name="vectors"\n\nL1\nL2\n--XY--\n'
    assert ndjson_payload(body, 'multipart/form-data; boundary="XY"').tobytes() == b"L1\nL2"


def test_insert_errors(client: TestClient) -> None:
    fails(insert(client, "nope", nd(RECS[0])), 404, 3000)
    make(client)
    msg = fails(insert(client, "idx", nd(RECS[0], {"id": "x", "values": [1, 2]})), 400, 40012)
    assert msg.startswith("request body:2: ")
    fails(insert(client, "idx", b'{"id":"a","values":[1,2,3]}\nnot json\n'), 400, 40023)
    assert ok(client.get(f"{BASE}/idx/info"))["vectorCount"] == 0  # a bad line changes nothing
    fails(insert(client, "idx", b"\n\n"), 400, 40023)
    fails(insert(client, "idx", nd(RECS[0]), params={"unparsable-behavior": "maybe"}), 400, 40026,
          "unparsable-behavior must be \"error\" or \"discard\", got 'maybe'")
    fails(insert(client, "idx", nd({"id": "i" * 65, "values": [1, 2, 3]})), 400, 40008)


def test_insert_discard_reports_in_messages(client: TestClient) -> None:
    make(client)
    r = insert(client, "idx", b'{"id":"a","values":[1,2,3]}\nnot json\n{"id":"b","values":[1]}\n',
               params={"unparsable-behavior": "discard"})
    assert len(ok(r)["mutationId"]) == UUID_LEN
    messages = r.json()["messages"]
    assert len(messages) == 1 and messages[0]["code"] == 1203  # README, warning codes
    assert messages[0]["message"].startswith("discarded 2 unparsable line(s): request body:2: ")
    assert ok(client.get(f"{BASE}/idx/info"))["vectorCount"] == 1


def test_batch_limit_5000(client: TestClient) -> None:
    make(client, dims=1)
    body = b"\n".join(b'{"id":"v%d","values":[1]}' % i for i in range(5000))
    ok(insert(client, "idx", body + b"\n\n\n"))  # blank lines do not count
    fails(insert(client, "idx", body + b'\n{"id":"one-more","values":[1]}', op="upsert"), 400, 40007,
          "too many vectors in payload; max vector count is 5000, got 5001")
    assert ok(client.get(f"{BASE}/idx/info"))["vectorCount"] == 5000


def test_body_over_100mb_streamed_is_413(client: TestClient) -> None:
    make(client)
    chunk = b" " * (1 << 20)

    def gen() -> Any:
        for _ in range(96):  # 100.7 MB (100 MB = 10^8 bytes)
            yield chunk

    r = client.post(f"{BASE}/idx/insert", content=gen(), headers={"content-type": "application/x-ndjson"})
    msg = fails(r, 413, 40005)
    assert "max is 100000000 bytes (100 MB)" in msg


# --- query --------------------------------------------------------------------------------------
def test_query_vector_id_namespace_filter(client: TestClient) -> None:
    make(client)
    ok(client.post(f"{BASE}/idx/metadata_index/create", json={"propertyName": "genre", "indexType": "string"}))
    ok(insert(client, "idx", nd(*RECS)))
    r = ok(client.post(f"{BASE}/idx/query", json={"vector": [1, 0, 0], "topK": 2}))
    assert r == {"count": 2, "matches": [{"id": "a", "score": 1.0},
                                         {"id": "c", "score": pytest.approx(0.99388373, abs=1e-6)}]}
    r = ok(client.post(f"{BASE}/idx/query", content=b'{"topK":5,"returnValues":true,"returnMetadata":"all",'
                                                     b'"vectorId":"b"}', headers={"content-type": WRANGLER_JSON}))
    assert r["matches"][0] == {"id": "b", "score": 1.0, "values": [0.0, 1.0, 0.0], "metadata": {"genre": "y"},
                               "namespace": "ns1"}
    r = ok(client.post(f"{BASE}/idx/query", json={"vector": [1, 1, 0], "namespace": "ns1"}))
    assert [m["id"] for m in r["matches"]] == ["b"]
    r = ok(client.post(f"{BASE}/idx/query", json={"vector": [0, 1, 0], "filter": {"genre": {"$eq": "x"}},
                                                  "returnMetadata": "indexed"}))
    assert r == {"count": 1, "matches": [{"id": "a", "score": 0.0, "metadata": {"genre": "x"}}]}


def test_query_unindexed_filter_warns_in_messages(client: TestClient) -> None:
    make(client)
    ok(insert(client, "idx", nd(*RECS)))
    r = client.post(f"{BASE}/idx/query", json={"vector": [1, 0, 0], "filter": {"year": 2001}})
    assert ok(r) == {"count": 0, "matches": []}
    # a stable warning code (README) and an API call, never a CLI command, as the fix
    assert r.json()["messages"] == [{"code": 1201, "message": (
        "filter property 'year' has no metadata index on 'idx', so it matches nothing; create one with "
        'POST .../indexes/idx/metadata_index/create {"propertyName": "year", "indexType": '
        '"string|number|boolean"}, then upsert the vectors again so that it covers them')}]


def test_query_errors(client: TestClient) -> None:
    q = f"{BASE}/idx/query"
    fails(client.post(q, json={"vector": [1, 0, 0]}), 404, 3000)
    make(client)
    ok(insert(client, "idx", nd(*RECS)))
    fails(client.post(q, json={"vector": [1, 0, 0], "returnMetadata": True}), 400, 40026,
          "Failed to parse the request body as JSON: returnMetadata: expected value")
    fails(client.post(q, json={"vector": [1, 0, 0], "returnMetadata": "some"}), 400, 40026)
    fails(client.post(q, json={"vector": [1, 0, 0], "returnValues": "yes"}), 400, 40026)
    fails(client.post(q, json={"vector": [1, "x", 0]}), 400, 40006,
          "invalid query vector, values must all be numbers that fit in float32")
    fails(client.post(q, json={"vector": [1, True, 0]}), 400, 40006)
    fails(client.post(q, json={"vector": [1, 0]}), 400, 40006,
          "invalid query vector, expected 3 dimensions, and got 2 dimensions")
    fails(client.post(q, json={"vector": [1, 0, 0], "topK": 101}), 400, 40025, "max top K is 100, but got 101")
    fails(client.post(q, json={"vector": [1, 0, 0], "topK": 51, "returnValues": True}), 400, 40025,
          "with returnValues=true or returnMetadata=all, max top K is 50, but got 51; for a top K up to 100, "
          "retry with returnValues=false and returnMetadata=indexed")
    fails(client.post(q, json={"topK": 3}), 400, 40000, "Either vector or vector-id parameter must be provided, "
                                                        "but not both.")
    fails(client.post(q, json={"vector": [1, 0, 0], "vectorId": "a"}), 400, 40000)
    fails(client.post(q, json={"vectorId": "zz"}), 404, 40034)
    fails(client.post(q, json={"vector": [1, 0, 0], "filter": {"genre": {"$regex": "x"}}}), 400, 40030)


# --- get/delete by ids --------------------------------------------------------------------------
def test_ids_limits_and_delete(client: TestClient) -> None:
    make(client)
    ok(insert(client, "idx", nd(*RECS)))
    fails(client.post(f"{BASE}/idx/get_by_ids", json={"ids": [str(i) for i in range(21)]}), 400, 40007,
          "too many ids in payload; max id count is 20, got 21")
    fails(client.post(f"{BASE}/idx/delete_by_ids", json={"ids": [str(i) for i in range(101)]}), 400, 40007,
          "too many ids in payload; max id count is 100, got 101")
    fails(client.post(f"{BASE}/idx/get_by_ids", json={"ids": "a"}), 400, 40026)
    fails(client.post(f"{BASE}/idx/get_by_ids", json={"ids": [1]}), 400, 40026)
    assert ok(client.post(f"{BASE}/idx/get_by_ids", json={})) == []
    assert len(ok(client.post(f"{BASE}/idx/get_by_ids", json={"ids": [str(i) for i in range(20)]}))) == 0
    res = ok(client.post(f"{BASE}/idx/delete_by_ids", json={"ids": ["a", "zz"]}))
    assert list(res) == ["mutationId"]
    assert ok(client.get(f"{BASE}/idx/info"))["vectorCount"] == 2
    assert ok(client.post(f"{BASE}/idx/get_by_ids", json={"ids": ["a"]})) == []


# --- list vectors -------------------------------------------------------------------------------
def test_list_vectors_pagination(client: TestClient) -> None:
    make(client, dims=1)
    ok(insert(client, "idx", b"\n".join(b'{"id":"v%02d","values":[1]}' % i for i in range(7))))
    first = ok(client.get(f"{BASE}/idx/list", params={"count": 3}))
    assert first["count"] == 3 and first["totalCount"] == 7 and first["isTruncated"] is True
    assert [v["id"] for v in first["vectors"]] == ["v00", "v01", "v02"]
    seen = [v["id"] for v in first["vectors"]]
    cursor = first["nextCursor"]
    while cursor:
        page = ok(client.get(f"{BASE}/idx/list", params={"count": 3, "cursor": cursor}))
        seen += [v["id"] for v in page["vectors"]]
        cursor = page["nextCursor"]
    assert seen == [f"v{i:02d}" for i in range(7)]
    assert page == {"count": 1, "totalCount": 7, "isTruncated": False, "nextCursor": None,
                    "cursorExpirationTimestamp": None, "vectors": [{"id": "v06"}]}
    assert ok(client.get(f"{BASE}/idx/list"))["count"] == 7  # default count 100
    for bad in ("0", "1001", "NaN", "2.5"):
        fails(client.get(f"{BASE}/idx/list", params={"count": bad}), 400, 40051)
    fails(client.get(f"{BASE}/idx/list", params={"cursor": "garbage"}), 400, 40052,
          "List vectors cursor appears to be corrupted")
    fails(client.get(f"{BASE}/nope/list"), 404, 3000)


# --- metadata indexes ---------------------------------------------------------------------------
def test_metadata_indexes(client: TestClient) -> None:
    mi = f"{BASE}/idx/metadata_index"
    fails(client.get(f"{mi}/list"), 404, 3000)
    make(client)
    assert ok(client.get(f"{mi}/list")) == {"metadataIndexes": []}
    res = ok(client.post(f"{mi}/create", json={"propertyName": "genre", "indexType": "string"}))
    assert list(res) == ["mutationId"] and len(res["mutationId"]) == UUID_LEN
    ok(client.post(f"{mi}/create", json={"propertyName": "year", "indexType": "number"}))
    assert ok(client.get(f"{mi}/list")) == {"metadataIndexes": [{"propertyName": "genre", "indexType": "string"},
                                                                {"propertyName": "year", "indexType": "number"}]}
    fails(client.post(f"{mi}/create", json={"propertyName": "genre", "indexType": "string"}), 400, 40040)
    fails(client.post(f"{mi}/create", json={"propertyName": "g2", "indexType": "date"}), 400, 40000)
    fails(client.post(f"{mi}/create", json={"propertyName": "g2"}), 400, 40026,
          "Failed to parse the request body as JSON: missing field `indexType`")
    res = ok(client.post(f"{mi}/delete", json={"propertyName": "genre"}))
    assert list(res) == ["mutationId"]
    assert ok(client.get(f"{mi}/list")) == {"metadataIndexes": [{"propertyName": "year", "indexType": "number"}]}
    fails(client.post(f"{mi}/delete", json={"propertyName": "genre"}), 404, 40040)
    # creating over existing vectors warns (they stay unfilterable, as on Cloudflare)
    ok(insert(client, "idx", nd(*RECS)))
    r = client.post(f"{mi}/create", json={"propertyName": "genre", "indexType": "string"})
    ok(r)
    assert r.json()["messages"] == [{"code": 1202, "message": (
        "3 existing vector(s) in 'idx' are not covered by the new metadata index on 'genre': they stay "
        "unfilterable on it until re-upserted (as on Cloudflare). Upsert them again "
        "(POST .../indexes/idx/upsert) to index them.")}]


# --- OpenAPI ------------------------------------------------------------------------------------
def test_openapi_document(client: TestClient) -> None:
    doc = client.get("/client/v4/openapi.json").json()
    assert doc == client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    ops = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert len(ops) == 14
    ids = {item[m]["operationId"] for p, item in doc["paths"].items() for m in item}
    assert "vectorize-query-vector" in ids and "vectorize-list-vectors" in ids
    # every route in the document is served: no "no route" or "method not allowed" answer
    for path, item in doc["paths"].items():
        url = path.replace("{account_id}", ACCT).replace("{index_name}", "nope")
        for method in item:
            r = client.request(method.upper(), url, json={})
            assert r.status_code not in (404, 405) or r.json()["errors"][0]["code"] not in (7001, 7003), (
                method, path, r.json())
    fails(client.post("/client/v4/openapi.json"), 405, 7001)


# --- the process ----------------------------------------------------------------------------------
def test_serve_refuses_public_bind_without_token(vz: Any) -> None:
    r = vz("serve", "--host", "0.0.0.0", "--port", "0")
    assert r.exit_code == 2
    assert "refusing to serve on 0.0.0.0 without an API token" in r.stderr


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_clean_shutdown_on_signal(tmp_path: Path, sig: str) -> None:
    import signal

    base_url, proc = start_server(tmp_path / "s")
    try:
        # a keep-alive connection is open when the signal arrives: the server still exits cleanly
        host, port = base_url.removeprefix("http://").split(":")
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /client/v4/openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(12) == b"HTTP/1.1 200"
        proc.send_signal(getattr(signal, sig))
        assert proc.wait(20) == 0
        s.close()
    finally:
        stop_server(proc)  # a no-op when it has exited; never leave a server behind
    assert proc.log[-1] == "vz serve: stopped\n"
    assert not any("Traceback" in line for line in proc.log)


def test_declared_body_over_100mb_is_413_without_reading(tmp_path: Path) -> None:
    base_url, proc = start_server(tmp_path / "s", token="t")
    try:
        host, port = base_url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(f"POST {BASE}/idx/insert HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n"
                      f"Content-Type: application/x-ndjson\r\nContent-Length: 100000001\r\n\r\n".encode())
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413")
        assert b"x-should-retry: false" in head.lower()
        assert json.loads(body)["errors"][0]["code"] == 40005
    finally:
        assert stop_server(proc) == 0


def test_requests_are_safe_while_cli_processes_write(tmp_path: Path) -> None:
    """Queries through the server and `vz insert` processes on the same store, at the same time."""
    import urllib.request

    store = tmp_path / "s"
    vz = [sys.executable, "-m", "vzcli", "--store", str(store)]
    subprocess.run([*vz, "create", "idx", "--dimensions", "2", "--metric", "euclidean"], check=True,
                   capture_output=True)
    base_url, proc = start_server(store)
    errors: list[Any] = []
    statuses: list[int] = []
    done = threading.Event()

    def query_loop() -> None:
        while not done.is_set():
            req = urllib.request.Request(base_url + BASE + "/idx/query", method="POST",
                                         data=b'{"vector":[0.5,0.5],"topK":3}',
                                         headers={"content-type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    body = json.loads(r.read())
                    statuses.append(r.status)
                    if not body["success"]:
                        errors.append(body)
            except Exception as e:  # noqa: BLE001  (any failure is a test failure)
                errors.append(repr(e))

    threads = [threading.Thread(target=query_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        writers = []
        for w in range(3):
            # from files: a writer reading stdin inside its transaction would wait on this test
            f = tmp_path / f"w{w}.ndjson"
            f.write_text("\n".join(json.dumps({"id": f"w{w}-{i}", "values": [w, i]}) for i in range(300)))
            writers.append(subprocess.Popen([*vz, "insert", "idx", "--file", str(f), "--json"],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        for p in writers:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        deadline = time.monotonic() + 10
        while len(statuses) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        done.set()
        for t in threads:
            t.join()
    try:
        assert errors == []
        assert len(statuses) >= 10 and set(statuses) == {200}
        with urllib.request.urlopen(base_url + BASE + "/idx/info") as r:
            assert json.loads(r.read())["result"]["vectorCount"] == 900
    finally:
        assert stop_server(proc) == 0


def test_serve_fails_cleanly_on_an_unreadable_store_or_a_busy_port(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.sqlite3").write_bytes(b"not a database, just bytes " * 10)
    cmd = [sys.executable, "-m", "vzcli", "serve", "--host", "127.0.0.1"]
    p = subprocess.run([*cmd, "--port", "0", "--store", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "is not a SQLite database" in p.stderr and "[code: 1004]" in p.stderr and "Traceback" not in p.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = subprocess.run([*cmd, "--port", str(port), "--store", str(tmp_path / "s")], capture_output=True,
                           text=True, timeout=60)
    assert p.returncode == 1
    assert "address already in use" in p.stderr and "Traceback" not in p.stderr
