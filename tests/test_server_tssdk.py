"""The official `cloudflare` TypeScript SDK (npm, tests/interop-latest) against `vz serve`.

Every Vectorize method of the SDK is called through tests/interop-latest/sdk-driver.mjs, a Node
process that pytest feeds one call at a time, and each result is compared exactly with the vz
CLI's view of the same store at the same moment. The server is a `vz serve` subprocess on
127.0.0.1 with a token; the SDK makes no other connection. Without Node >= 22 or `npm ci` in
tests/interop-latest these tests FAIL (never skip): scripts/test.sh installs both.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers_server import ServedStore, served_store  # noqa: F401  (the fixture)
from interop_clients import LATEST
from typer.testing import CliRunner

from vzcli.cli import app

pytestmark = pytest.mark.interop

DRIVER = LATEST.dir / "sdk-driver.mjs"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
RECORDS = [
    {"id": "a", "values": [1, 0, 0], "metadata": {"genre": "jazz", "year": 1959}},
    {"id": "b", "values": [0.8, 0.6, 0], "namespace": "music", "metadata": {"genre": "rock"}},
    {"id": "c", "values": [0, 1, 0], "namespace": "music", "metadata": {"genre": "jazz"}},
    {"id": "d", "values": [0.5, 0.5, 0.5]},
    {"id": "e", "values": [0, 0, 1], "metadata": {"genre": "jazz", "nested": {"k": ["x", "y"]}}},
]


class SdkError(Exception):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("message"))
        self.answer = answer


class Sdk:
    """One Node process running the SDK; `call("indexes.get", "docs", {})` returns the result."""

    def __init__(self, srv: ServedStore) -> None:
        LATEST.package("cloudflare")
        env = {"PATH": "/usr/bin:/bin", "HOME": str(srv.store.parent), "VZ_API": srv.api,
               "VZ_TOKEN": srv.token or "", "VZ_ACCOUNT": srv.account}
        self.proc = subprocess.Popen([LATEST.node, str(DRIVER)], cwd=LATEST.dir, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def call(self, op: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "args": list(args)}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the SDK driver exited:\n{self.proc.stderr.read() if self.proc.stderr else ''}"
        answer = json.loads(line)
        if not answer["ok"]:
            raise SdkError(answer)
        return answer["result"]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(30) == 0


@pytest.fixture
def sdk(served_store: ServedStore) -> Iterator[Sdk]:  # noqa: F811
    s = Sdk(served_store)
    try:
        yield s
    finally:
        s.close()


def cli(store: Path, *args: Any) -> Any:
    """`vz --store STORE ARGS --json`, in-process: the CLI's view of the store being served."""
    r = CliRunner().invoke(app, ["--store", str(store), *map(str, args), "--json"], prog_name="vz")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def ndjson(records: list[dict[str, Any]]) -> str:
    return "\n".join(json.dumps(r) for r in records)


def test_index_methods_match_the_cli(sdk: Sdk, served_store: ServedStore) -> None:  # noqa: F811
    store = served_store.store
    created = sdk.call("indexes.create", {"name": "docs", "config": {"dimensions": 3, "metric": "cosine"},
                                          "description": "hello"})
    assert created == cli(store, "get", "docs")
    assert created["config"] == {"dimensions": 3, "metric": "cosine"} and created["description"] == "hello"
    preset = sdk.call("indexes.create", {"name": "small", "config": {"preset": "@cf/baai/bge-small-en-v1.5"}})
    assert preset == cli(store, "get", "small") and preset["config"] == {"dimensions": 384, "metric": "cosine"}
    assert sdk.call("indexes.list", {}) == cli(store, "list") == [created, preset]
    assert sdk.call("indexes.get", "docs", {}) == created
    assert sdk.call("indexes.info", "docs", {}) == cli(store, "info", "docs")
    assert sdk.call("indexes.delete", "small", {}) is None
    assert cli(store, "list") == [created]
    with pytest.raises(SdkError) as e:
        sdk.call("indexes.get", "small", {})
    assert (e.value.answer["name"], e.value.answer["status"]) == ("NotFoundError", 404)
    assert e.value.answer["errors"] == [{"code": 3000, "message": 'vectorize.index.not_found - Index name "small"'}]


def test_vector_methods_match_the_cli(sdk: Sdk, served_store: ServedStore) -> None:  # noqa: F811
    store = served_store.store
    sdk.call("indexes.create", {"name": "docs", "config": {"dimensions": 3, "metric": "cosine"}})
    res = sdk.call("indexes.metadataIndex.create", "docs", {"propertyName": "genre", "indexType": "string"})
    assert list(res) == ["mutationId"] and res["mutationId"] == cli(store, "info", "docs")["processedUpToMutation"]
    # the CLI prints the list itself, as wrangler does
    assert sdk.call("indexes.metadataIndex.list", "docs", {}) == {
        "metadataIndexes": cli(store, "list-metadata-index", "docs")}
    assert cli(store, "list-metadata-index", "docs") == [{"propertyName": "genre", "indexType": "string"}]

    # insert with each body kind the SDK takes: a string, a Blob and a Buffer
    for kind, part in (("string", RECORDS[:2]), ("blob", RECORDS[2:4]), ("buffer", RECORDS[4:])):
        res = sdk.call("indexes.insert", "docs", {"body": {"$body": kind, "text": ndjson(part)}})
        assert UUID.fullmatch(res["mutationId"]), kind
        info = cli(store, "info", "docs")
        assert info["processedUpToMutation"] == res["mutationId"]
    assert info["vectorCount"] == 5
    ids = [r["id"] for r in RECORDS]
    assert sdk.call("indexes.getByIDs", "docs", {"ids": ids}) == cli(store, "get-vectors", "docs", "--ids", *ids)
    # upsert replaces a record in full
    res = sdk.call("indexes.upsert", "docs", {"body": {"$body": "buffer", "text": ndjson(
        [{"id": "d", "values": [0.25, 0.5, 1], "metadata": {"genre": "blues"}}])}})
    assert res["mutationId"] == cli(store, "info", "docs")["processedUpToMutation"]
    got = sdk.call("indexes.getByIDs", "docs", {"ids": ["d", "zz"]})
    assert got == cli(store, "get-vectors", "docs", "--ids", "d", "zz") == [
        {"id": "d", "values": [0.25, 0.5, 1], "metadata": {"genre": "blues"}}]

    # query: defaults, values and all metadata, a filter, a namespace (extra body), an empty filter
    q = [1, 0.1, 0]
    vec = ["--vector", *map(str, q)]
    assert sdk.call("indexes.query", "docs", {"vector": q}) == cli(store, "query", "docs", *vec)
    assert sdk.call("indexes.query", "docs", {"vector": q, "topK": 3, "returnValues": True,
                                              "returnMetadata": "all"}) == \
        cli(store, "query", "docs", *vec, "--top-k", "3", "--return-values", "--return-metadata", "all")
    filtered = sdk.call("indexes.query", "docs", {"vector": q, "filter": {"genre": {"$in": ["jazz", "blues"]}},
                                                  "returnMetadata": "indexed"})
    assert filtered == cli(store, "query", "docs", *vec, "--filter", '{"genre": {"$in": ["jazz", "blues"]}}',
                           "--return-metadata", "indexed")
    assert [m["id"] for m in filtered["matches"]] == ["a", "d", "c", "e"]
    spaced = sdk.call("indexes.query", "docs", {"vector": q, "namespace": "music", "filter": {"genre": "jazz"}})
    assert spaced == cli(store, "query", "docs", *vec, "--namespace", "music", "--filter", '{"genre": "jazz"}')
    assert [m["id"] for m in spaced["matches"]] == ["c"]
    assert sdk.call("indexes.query", "docs", {"vector": q, "filter": {}}) == cli(store, "query", "docs", *vec)

    # listVectors: follow the cursor to the end; the pages are the CLI's pages
    pages = sdk.call("listVectorsLoop", "docs", {"count": 2})
    assert [[v["id"] for v in p["vectors"]] for p in pages] == [["a", "b"], ["c", "d"], ["e"]]
    first = cli(store, "list-vectors", "docs", "--count", "2")
    assert {k: v for k, v in pages[0].items() if k not in ("nextCursor", "cursorExpirationTimestamp")} == \
        {k: v for k, v in first.items() if k not in ("nextCursor", "cursorExpirationTimestamp")}
    cursor = first["nextCursor"]
    for page in pages[1:]:
        mine = cli(store, "list-vectors", "docs", "--count", "2", "--cursor", cursor)
        assert mine["vectors"] == page["vectors"] and mine["isTruncated"] == page["isTruncated"]
        cursor = mine["nextCursor"]
    assert pages[-1]["nextCursor"] is None and cursor is None

    # deleteByIDs, then metadataIndex delete
    res = sdk.call("indexes.deleteByIDs", "docs", {"ids": ["a", "b", "nope"]})
    info = cli(store, "info", "docs")
    assert res["mutationId"] == info["processedUpToMutation"] and info["vectorCount"] == 3
    assert sdk.call("indexes.getByIDs", "docs", {"ids": ["a", "b"]}) == []
    assert sdk.call("indexes.info", "docs", {}) == cli(store, "info", "docs")
    res = sdk.call("indexes.metadataIndex.delete", "docs", {"propertyName": "genre"})
    assert res["mutationId"] == cli(store, "info", "docs")["processedUpToMutation"]
    assert sdk.call("indexes.metadataIndex.list", "docs", {}) == {"metadataIndexes": []}
    assert cli(store, "list-metadata-index", "docs") == []


def test_errors_reach_the_sdk_typed_and_unretried(sdk: Sdk, served_store: ServedStore) -> None:  # noqa: F811
    sdk.call("indexes.create", {"name": "docs", "config": {"dimensions": 3, "metric": "cosine"}})
    cases = [
        (("indexes.create", {"name": "docs", "config": {"dimensions": 3, "metric": "cosine"}}),
         "ConflictError", 409, 3002, 'vectorize.index.duplicate_name - Index name "docs"'),
        (("indexes.query", "docs", {"vector": [1, 2]}), "BadRequestError", 400, 40006,
         "invalid query vector, expected 3 dimensions, and got 2 dimensions"),
        (("indexes.getByIDs", "docs", {"ids": [str(i) for i in range(21)]}), "BadRequestError", 400, 40007,
         "too many ids in payload; max id count is 20, got 21"),
        (("indexes.insert", "docs", {"body": {"$body": "string", "text": '{"id":"x","values":[1]}'}}),
         "BadRequestError", 400, 40012,
         'request body:1: invalid vector for id="x", expected 3 dimensions, and got 1 dimensions'),
    ]
    for call, name, status, code, message in cases:
        with pytest.raises(SdkError) as e:
            sdk.call(*call)
        assert (e.value.answer["name"], e.value.answer["status"]) == (name, status), call
        assert e.value.answer["errors"] == [{"code": code, "message": message}], call
    assert cli(served_store.store, "info", "docs")["vectorCount"] == 0
