"""Every response of a REST battery, validated against Cloudflare's published OpenAPI schema.

The schema is the Vectorize v2 part of `cloudflare/api-schemas` (tests/schema/, with its commit,
licence and extraction script). The battery calls every endpoint, on success and on its error
paths, through the in-process app; each response body (and each JSON request body the battery
sends) is validated against the operation's schema with `jsonschema_rs` (Draft 4, formats checked,
OpenAPI's `nullable` rewritten as a null alternative).

Where the published schema contradicts itself or is out of date, it is patched below, one narrow
patch per defect, each marked CONTRADICTION / OUT OF DATE / WRONG METHOD. Every patch first checks
that the published text is still what it patches (a re-extraction that fixes it fails the test, so
the patch can go), and test_the_patched_defects_are_real shows that each contradiction rejects a
response Cloudflare itself sends.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

with warnings.catch_warnings():  # starlette 1.x nudges towards httpx2; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vzcli.server import create_app

PUBLISHED = json.loads((Path(__file__).parent / "schema" / "vectorize-v2.openapi.json").read_text())
IDX = "/accounts/{account_id}/vectorize/v2/indexes"
SCHEMAS = "#/components/schemas/"
FAILURE = {"$ref": SCHEMAS + "vectorize_api-response-common-failure"}
ACCT = "0123456789abcdef0123456789abcdef"
BASE = f"/client/v4/accounts/{ACCT}/vectorize/v2/indexes"
CLI_WORDS = re.compile(r"\bvz [a-z]|(^|[\s'(])--[a-z]")


def _ops(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for ops in doc["paths"].values() for op in ops.values()]


def _json_schema(response: dict[str, Any]) -> Any:
    return response["content"]["application/json"]["schema"]


def patched(published: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(published)
    schemas = doc["components"]["schemas"]

    # CONTRADICTION (every operation): the 4XX schema is allOf[api-response-single, ...,
    # api-response-common-failure]; the first requires `success` to be true (enum [true]) and the
    # second false (enum [false]), so no error body can satisfy it. Patch: the failure half alone.
    for op in _ops(doc):
        four = op["responses"]["4XX"]
        first, failure = _json_schema(four)["allOf"]
        assert first["allOf"][0] == {"$ref": SCHEMAS + "vectorize_api-response-single"} and failure == FAILURE
        four["content"]["application/json"]["schema"] = FAILURE

    # CONTRADICTION: api-response-common's `result` (anyOf object/array/string) has no null, while
    # api-response-single, which extends it, and the delete-index response declare `result`
    # nullable; Cloudflare answers an index deletion with `result: null`. Patch: allow null there.
    common = schemas["vectorize_api-response-common"]["properties"]["result"]
    assert "nullable" not in common and len(common["anyOf"]) == 3
    common["nullable"] = True

    # CONTRADICTION: get_by_ids answers an array, but its 200 schema extends api-response-single,
    # whose `result` must be an object (`type: object`, anyOf object/string). Patch: extend
    # api-response-common (whose `result` may be an array) for this operation.
    by_ids = _json_schema(doc["paths"][IDX + "/{index_name}/get_by_ids"]["post"]["responses"]["200"])
    assert by_ids["allOf"][0] == {"$ref": SCHEMAS + "vectorize_api-response-single"}
    assert by_ids["allOf"][1]["properties"]["result"]["$ref"].endswith("get-vectors-by-id-response")
    by_ids["allOf"][0] = {"$ref": SCHEMAS + "vectorize_api-response-common"}

    query = schemas["vectorize_index-query-request"]
    # OUT OF DATE: `returnMetadata` is typed boolean (V1's flag). V2 takes "none" | "indexed" |
    # "all" and rejects a boolean with 40026 ("returnMetadata: expected value"), which vz does too.
    assert query["properties"]["returnMetadata"]["type"] == "boolean"
    query["properties"]["returnMetadata"] = {"enum": ["none", "indexed", "all"], "type": "string"}
    # OUT OF DATE: only `vector` is allowed as the target; queryById (the binding, wrangler's
    # --vector-id) sends `vectorId` instead. Patch: either one.
    assert query["required"] == ["vector"]
    del query["required"]
    query["properties"]["vectorId"] = {"type": "string"}
    query["anyOf"] = [{"required": ["vector"]}, {"required": ["vectorId"]}]

    # WRONG METHOD: metadata_index/list is published as POST; wrangler, the Python and TypeScript
    # SDKs and Cloudflare's docs call it with GET, which is what vz serves. Patch: GET.
    listing = doc["paths"][IDX + "/{index_name}/metadata_index/list"]
    assert list(listing) == ["post"]
    listing["get"] = listing.pop("post")

    # OUT OF DATE: this extraction predates list-vectors (GET .../list, 2025-08-26). Patch: the
    # operation as Cloudflare documents it: `count`, `totalCount`, `isTruncated` and `vectors` of
    # {id} always; `nextCursor` and `cursorExpirationTimestamp` nullable.
    assert IDX + "/{index_name}/list" not in doc["paths"]
    schemas["vz_list-vectors-response"] = {
        "type": "object", "required": ["count", "totalCount", "isTruncated", "vectors"],
        "properties": {
            "count": {"type": "integer"}, "totalCount": {"type": "integer"}, "isTruncated": {"type": "boolean"},
            "nextCursor": {"type": "string", "nullable": True},
            "cursorExpirationTimestamp": {"type": "string", "format": "date-time", "nullable": True},
            "vectors": {"type": "array", "items": {"type": "object", "required": ["id"], "properties": {
                "id": {"$ref": SCHEMAS + "vectorize_vector-identifier"}}}}}}
    doc["paths"][IDX + "/{index_name}/list"] = {"get": {
        "operationId": "vectorize-list-vectors",
        "responses": {
            "200": {"content": {"application/json": {"schema": {"allOf": [
                {"$ref": SCHEMAS + "vectorize_api-response-single"},
                {"properties": {"result": {"$ref": SCHEMAS + "vz_list-vectors-response"}}}]}}}},
            "4XX": {"content": {"application/json": {"schema": FAILURE}}}}}}
    return doc


def json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects as JSON Schema: `nullable: true` becomes a null alternative."""
    if isinstance(node, list):
        return [json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: json_schema(v) for k, v in node.items() if k != "nullable"}
    return {"anyOf": [{"type": "null"}, out]} if node.get("nullable") is True else out


class Schema:
    """Validators for one OpenAPI document, by (path template, method, status)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.components = json_schema(doc["components"])
        self.routes = [(re.compile(re.sub(r"\{[^}]+\}", "[^/]+", p) + "$"), p) for p in doc["paths"]]

    def validator(self, schema: Any) -> Any:
        return jsonschema_rs.Draft4Validator({**json_schema(schema), "components": self.components})

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        template = next((t for rx, t in self.routes if rx.fullmatch(path)), None)
        assert template is not None, f"{path} is not in the schema: the battery calls only published paths"
        return self.doc["paths"][template].get(method.lower())

    def errors(self, method: str, path: str, status: int, body: Any, request: Any = None) -> list[str]:
        op = self.operation(method, path)
        if op is None:  # a method the schema does not define (405): the generic failure envelope
            return [str(e) for e in self.validator(FAILURE).iter_errors(body)]
        responses = op["responses"]
        response = responses.get(str(status)) or responses.get(f"{status // 100}XX")
        assert response is not None, f"{method} {path}: the schema defines no {status} response"
        found = [f"response: {e}" for e in self.validator(_json_schema(response)).iter_errors(body)]
        content = op.get("requestBody", {}).get("content", {})
        # a request the server accepted must be one the schema accepts (refused ones are meant to be bad)
        if request is not None and status < 300 and "application/json" in content:
            found += [f"request: {e}" for e in self.validator(content["application/json"]["schema"])
                      .iter_errors(request)]
        return found


SCHEMA = Schema(patched(PUBLISHED))


class Validating:
    """A TestClient whose every response (and JSON request body) is checked against SCHEMA."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.seen: list[tuple[str, str, int]] = []

    def request(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, BASE + path, **kw)
        body = r.json()
        api_path = (BASE + path).removeprefix("/client/v4").split("?")[0]
        errors = SCHEMA.errors(method, api_path, r.status_code, body, kw.get("json"))
        assert not errors, f"{method} {path} -> {r.status_code} {body}:\n" + "\n".join(errors)
        # no error or warning tells an HTTP client to run a CLI command or pass a CLI flag
        for m in body["errors"] + body["messages"]:
            assert not CLI_WORDS.search(m["message"]), m
        self.seen.append((method, re.sub(r"^/[^/?]+", "/{index_name}", path.split("?")[0]) if path else "",
                          r.status_code))
        return r

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        assert r.status_code == 200, r.json()
        return r.json()

    def fails(self, method: str, path: str, status: int, code: int, **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        assert (r.status_code, r.json()["errors"][0]["code"]) == (status, code), r.json()
        return r.json()


def ndjson(*records: dict[str, Any]) -> dict[str, Any]:
    return {"content": "\n".join(json.dumps(r) for r in records), "headers": {"content-type": "application/x-ndjson"}}


def battery(api: Validating) -> None:
    """Every endpoint, each success and its usual errors."""
    config = {"dimensions": 3, "metric": "cosine"}
    api.ok("POST", "", json={"name": "docs", "config": config, "description": "d"})
    api.ok("POST", "", json={"name": "small", "config": {"preset": "@cf/baai/bge-small-en-v1.5"}})
    api.fails("POST", "", 409, 3002, json={"name": "docs", "config": config})
    api.fails("POST", "", 400, 3001, json={"name": "bad", "config": {"dimensions": 0, "metric": "cosine"}})
    api.ok("GET", "")
    api.ok("GET", "/docs")
    api.fails("GET", "/nope", 404, 3000)
    api.ok("GET", "/docs/info")
    api.ok("POST", "/docs/metadata_index/create", json={"propertyName": "genre", "indexType": "string"})
    api.fails("POST", "/docs/metadata_index/create", 400, 40040, json={"propertyName": "genre", "indexType": "string"})
    api.ok("GET", "/docs/metadata_index/list")
    api.ok("POST", "/docs/insert", **ndjson({"id": "a", "values": [1, 0, 0], "metadata": {"genre": "x", "n": 1}},
                                           {"id": "b", "values": [0, 1, 0], "namespace": "ns"}))
    api.ok("POST", "/docs/insert", files={"vectors": ("v.ndjson", b'{"id":"c","values":[0.9,0.1,0]}')})
    api.ok("POST", "/docs/upsert", content=json.dumps('{"id":"d","values":[0.5,0.5,0.5]}'),
           headers={"content-type": "application/json"})
    api.fails("POST", "/docs/insert", 400, 40012, **ndjson({"id": "e", "values": [1]}))
    discarded = api.ok("POST", "/docs/upsert?unparsable-behavior=discard", content=b'{"id":"e","values":[0,0,1]}\nx',
                       headers={"content-type": "application/x-ndjson"})
    assert [m["code"] for m in discarded["messages"]] == [1203]
    for body in ({"vector": [1, 0, 0]}, {"vector": [1, 0, 0], "topK": 3, "returnValues": True, "returnMetadata": "all"},
                 {"vector": [0, 1, 0], "namespace": "ns", "returnMetadata": "indexed"},
                 {"vector": [1, 0, 0], "filter": {"genre": {"$in": ["x"]}}}, {"vector": [1, 0, 0], "filter": {}},
                 {"vectorId": "a", "topK": 2}):
        assert api.ok("POST", "/docs/query", json=body)["messages"] == []
    unindexed = api.ok("POST", "/docs/query", json={"vector": [1, 0, 0], "filter": {"n": 1}})
    assert [m["code"] for m in unindexed["messages"]] == [1201]
    api.fails("POST", "/docs/query", 400, 40025, json={"vector": [1, 0, 0], "topK": 101})
    api.fails("POST", "/docs/query", 400, 40006, json={"vector": [1, 0]})
    api.fails("POST", "/docs/query", 404, 40034, json={"vectorId": "zz"})
    api.fails("POST", "/docs/query", 400, 40030, json={"vector": [1, 0, 0], "filter": {"n": {"$regex": "x"}}})
    api.ok("POST", "/docs/get_by_ids", json={"ids": ["a", "b", "zz"]})
    api.fails("POST", "/docs/get_by_ids", 400, 40007, json={"ids": [str(i) for i in range(21)]})
    page = api.ok("GET", "/docs/list?count=2")["result"]
    while page["isTruncated"]:
        page = api.ok("GET", f"/docs/list?count=2&cursor={page['nextCursor']}")["result"]
    api.fails("GET", "/docs/list?cursor=garbage", 400, 40052)
    api.fails("GET", "/docs/list?count=0", 400, 40051)
    uncovered = api.ok("POST", "/docs/metadata_index/create", json={"propertyName": "n", "indexType": "number"})
    assert [m["code"] for m in uncovered["messages"]] == [1202]
    api.ok("POST", "/docs/delete_by_ids", json={"ids": ["a", "zz"]})
    api.fails("POST", "/docs/delete_by_ids", 400, 40007, json={"ids": [str(i) for i in range(101)]})
    api.ok("POST", "/docs/metadata_index/delete", json={"propertyName": "genre"})
    api.fails("POST", "/docs/metadata_index/delete", 404, 40040, json={"propertyName": "genre"})
    api.fails("PUT", "/docs", 405, 7001)
    api.ok("DELETE", "/small")
    api.fails("DELETE", "/small", 404, 3000)


def test_every_response_of_the_battery_matches_the_published_schema(tmp_path: Path) -> None:
    api = Validating(TestClient(create_app(tmp_path / "store"), raise_server_exceptions=True, base_url="http://127.0.0.1"))
    battery(api)
    # every published operation was called, with a success and an error response
    called = {(m, p, s // 100) for m, p, s in api.seen}
    for template, ops in SCHEMA.doc["paths"].items():
        path = template.removeprefix(IDX)
        for method in ops:
            assert (method.upper(), path, 2) in called, (method, path)
    assert {s for _, _, s in api.seen} >= {200, 400, 404, 405, 409}


def test_an_unauthorised_request_matches_the_schema(tmp_path: Path) -> None:
    api = Validating(TestClient(create_app(tmp_path / "store", token="t"), raise_server_exceptions=True, base_url="http://127.0.0.1"))
    api.fails("GET", "", 401, 10000)
    api.fails("GET", "", 401, 10000, headers={"authorization": "Bearer wrong"})


def test_the_patched_defects_are_real() -> None:
    """Each CONTRADICTION rejects a body Cloudflare sends; each patch makes it valid."""
    raw = Schema(PUBLISHED)

    def published(method: str, template: str, status: str) -> Callable[[Any], bool]:
        schema = _json_schema(PUBLISHED["paths"][IDX + template][method]["responses"][status])
        return raw.validator(schema).is_valid  # type: ignore[no-any-return]

    failure = {"success": False, "errors": [{"code": 3000, "message": "vectorize.index.not_found"}],
               "messages": [], "result": None}
    assert not published("get", "/{index_name}", "4XX")(failure)
    assert SCHEMA.errors("GET", IDX + "/docs", 404, failure) == []
    deleted = {"success": True, "errors": [], "messages": [], "result": None}
    assert not published("delete", "/{index_name}", "200")(deleted)
    assert SCHEMA.errors("DELETE", IDX + "/docs", 200, deleted) == []
    vectors = {"success": True, "errors": [], "messages": [], "result": [{"id": "a", "values": [1.0]}]}
    assert not published("post", "/{index_name}/get_by_ids", "200")(vectors)
    assert SCHEMA.errors("POST", IDX + "/docs/get_by_ids", 200, vectors) == []
    # and the schema does hold vz to Cloudflare's rules: a warning with code 0 (vz before issue 15)
    # is rejected, message codes must be >= 1000
    warned = {"success": True, "errors": [], "messages": [{"code": 0, "message": "m"}],
              "result": {"mutationId": "0b2c8e52-5c1e-4d64-9c5e-3d1e4d7b2a10"}}
    assert SCHEMA.errors("POST", IDX + "/docs/upsert", 200, warned) != []
    warned["messages"][0]["code"] = 1203
    assert SCHEMA.errors("POST", IDX + "/docs/upsert", 200, warned) == []


@pytest.mark.parametrize("key", ["repository", "commit", "file"])
def test_the_extract_names_its_source(key: str) -> None:
    source = PUBLISHED["x-extracted-from"]
    assert source[key] and (Path(__file__).parent / "schema" / "LICENSE").read_text().startswith("BSD 3-Clause")
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
