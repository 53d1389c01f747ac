"""RemoteBackend against a tiny fake Cloudflare API on 127.0.0.1: envelopes, errors, retries, chunking."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from vzcli import errors
from vzcli.errors import ExitCode
from vzcli.remote import RemoteBackend, typed_error

ACCOUNT = "acct123"
PREFIX = f"/client/v4/accounts/{ACCOUNT}/vectorize/v2/indexes"


def ok(result: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    return 200, {"success": True, "errors": [], "messages": [], "result": result}, {}


def fail(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    return status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}, \
        headers or {}


class FakeAPI:
    """A minimal Vectorize: one index `idx` (dims 3) that enforces Cloudflare's per-request limits.

    `script` holds canned responses served first, one per request, before the fake's own routing.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, Any, dict[str, str]]] = []
        self.vectors: dict[str, dict[str, Any]] = {}
        self.mutations = 0
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with api.lock:
                    api.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                         "body": body})
                    status, payload, headers = api.script.pop(0) if api.script else api.route(
                        self.command, self.path, self.headers.get("Content-Type", ""), body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/client/v4"

    def mutation(self) -> tuple[int, Any, dict[str, str]]:
        self.mutations += 1
        return ok({"mutationId": f"m{self.mutations}"})

    def route(self, method: str, path: str, ctype: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        from urllib.parse import parse_qs, urlsplit

        u = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        assert u.path.startswith(PREFIX), u.path
        rest = u.path[len(PREFIX):]
        if rest == "/idx" and method == "GET":
            return ok({"name": "idx", "config": {"dimensions": 3, "metric": "cosine"},
                       "created_on": "t", "modified_on": "t"})
        if rest == "/idx/info":
            return ok({"dimensions": 3, "vectorCount": len(self.vectors)})
        if rest in ("/idx/insert", "/idx/upsert"):
            if not ctype.startswith("application/x-ndjson"):
                return fail(400, 1005, "vectorize.unknown_content_type")
            lines = [json.loads(x) for x in body.splitlines() if x.strip()]
            if len(lines) > 5000:
                return fail(400, 40000, "too many vectors in one request")
            for rec in lines:
                if rest.endswith("upsert") or rec["id"] not in self.vectors:
                    self.vectors[rec["id"]] = rec
            return self.mutation()
        if rest == "/idx/get_by_ids":
            ids = json.loads(body)["ids"]
            if len(ids) > 20:
                return fail(400, 40007, f"too many ids in payload; max id count is 20, got {len(ids)}")
            return ok([{"id": i, "values": self.vectors[i]["values"], "metadata": self.vectors[i].get("metadata", {}),
                        **({"namespace": self.vectors[i]["namespace"]} if "namespace" in self.vectors[i] else {})}
                       for i in reversed(ids) if i in self.vectors])  # reversed: the client must reorder
        if rest == "/idx/delete_by_ids":
            ids = json.loads(body)["ids"]
            if len(ids) > 100:
                return fail(400, 40007, f"too many ids in payload; max id count is 100, got {len(ids)}")
            for i in ids:
                self.vectors.pop(i, None)
            return self.mutation()
        if rest == "/idx/list":
            count, start = int(q.get("count", 100)), int(q.get("cursor", 0))
            ids = sorted(self.vectors)
            page = ids[start:start + count]
            more = start + count < len(ids)
            return ok({"count": len(page), "totalCount": len(ids), "isTruncated": more,
                       "nextCursor": str(start + count) if more else None, "cursorExpirationTimestamp": None,
                       "vectors": [{"id": i} for i in page]})
        return fail(404, 3000, f'vectorize.index.not_found - Index name "{rest.split("/")[1]}"')

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    a = FakeAPI()
    yield a
    a.close()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def rb(api: FakeAPI, sleeps: list[float]) -> RemoteBackend:
    return RemoteBackend(ACCOUNT, base_url=api.base, token="tok", retries=3, sleep=sleeps.append)


def ndjson(records: list[dict[str, Any]]) -> io.BytesIO:
    return io.BytesIO(b"".join(json.dumps(r).encode() + b"\n" for r in records))


def vec(i: int) -> list[float]:
    return [i / 7, -i / 3, 0.1]


# --- configuration ---------------------------------------------------------------------------------
def test_from_env_requires_account_and_credentials() -> None:
    with pytest.raises(errors.UsageError) as e:
        RemoteBackend.from_env({"CLOUDFLARE_API_TOKEN": "t"})
    assert "CLOUDFLARE_ACCOUNT_ID" in e.value.message and e.value.exit_code == ExitCode.USAGE
    with pytest.raises(errors.UsageError) as e:
        RemoteBackend.from_env({"CLOUDFLARE_ACCOUNT_ID": "a"})
    assert "CLOUDFLARE_API_TOKEN" in e.value.message and e.value.exit_code == ExitCode.USAGE
    with pytest.raises(errors.UsageError):  # a key without its email is not a credential
        RemoteBackend.from_env({"CLOUDFLARE_ACCOUNT_ID": "a", "CLOUDFLARE_API_KEY": "k"})
    assert RemoteBackend.from_env({"CLOUDFLARE_ACCOUNT_ID": "a", "CLOUDFLARE_API_TOKEN": "t"}).base_url == \
        "https://api.cloudflare.com/client/v4"


def test_auth_headers_and_paths(api: FakeAPI) -> None:
    RemoteBackend.from_env({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": "tok",
                            "CLOUDFLARE_API_BASE_URL": api.base + "/"}).info("idx")
    # key + email take precedence over a token, as in wrangler
    RemoteBackend.from_env({"CLOUDFLARE_ACCOUNT_ID": ACCOUNT, "CLOUDFLARE_API_TOKEN": "tok",
                            "CLOUDFLARE_API_KEY": "key", "CLOUDFLARE_EMAIL": "me@example.com",
                            "CLOUDFLARE_API_BASE_URL": api.base}).info("idx")
    first, second = api.requests
    assert (first["method"], first["path"]) == ("GET", f"{PREFIX}/idx/info")
    assert first["headers"]["Authorization"] == "Bearer tok"
    assert "X-Auth-Key" not in first["headers"]
    assert second["headers"]["X-Auth-Key"] == "key" and second["headers"]["X-Auth-Email"] == "me@example.com"
    assert "Authorization" not in second["headers"]


def test_index_name_is_percent_encoded(rb: RemoteBackend, api: FakeAPI) -> None:
    with pytest.raises(errors.IndexNotFound):
        rb.info("a b/../x?y")
    assert api.requests[0]["path"] == f"{PREFIX}/a%20b%2F..%2Fx%3Fy/info"


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code,cls,exit_code", [
    (3000, errors.IndexNotFound, 1), (3002, errors.DuplicateIndex, 1), (3001, errors.InvalidConfig, 2),
    (40006, errors.QueryDimensionMismatch, 1), (40007, errors.TooManyIds, 2), (40025, errors.TopKTooLarge, 2),
    (40052, errors.BadCursor, 2), (40012, errors.InvalidVector, 1), (40008, errors.InvalidVector, 1),
    (40023, errors.Unparsable, 1), (40030, errors.InvalidFilter, 2), (40034, errors.VectorNotFound, 1),
    (10000, errors.AuthError, 1), (9106, errors.AuthError, 1), (7003, errors.RemoteError, 1),
])
def test_error_envelopes_become_typed_errors(rb: RemoteBackend, api: FakeAPI, code: int, cls: type,
                                             exit_code: int) -> None:
    api.script.append(fail(418, code, f"remote says {code}"))
    with pytest.raises(errors.VzError) as e:
        rb.get_index("idx")
    assert type(e.value) is cls
    assert (e.value.code, e.value.message, e.value.status, int(e.value.exit_code)) == \
        (code, f"remote says {code}", 418, exit_code)
    assert len(api.requests) == 1  # a 4xx is never retried


def test_success_false_with_http_200_is_an_error(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script.append((200, {"success": False, "errors": [{"code": 1001, "message": "a"}, {"code": 2, "message": "b"}],
                             "messages": [], "result": None}, {}))
    with pytest.raises(errors.RemoteError) as e:
        rb.info("idx")
    assert (e.value.code, e.value.message, e.value.status) == (1001, "a; b", 200)


def test_typed_error_keeps_class_exit_code() -> None:
    e = typed_error(3000, "gone", 404)
    assert isinstance(e, errors.IndexNotFound) and e.exit_code == ExitCode.FAILURE and str(e) == "gone"


# --- retries ---------------------------------------------------------------------------------------
def test_429_then_success_honours_retry_after(rb: RemoteBackend, api: FakeAPI, sleeps: list[float]) -> None:
    api.script += [fail(429, 971, "slow down", {"Retry-After": "7"}), fail(503, 1000, "busy")]
    assert rb.info("idx") == {"dimensions": 3, "vectorCount": 0}
    assert len(api.requests) == 3
    assert sleeps[0] == 7.0
    assert 0 <= sleeps[1] <= 0.5 * 2  # full jitter on the second attempt's backoff


def test_long_waits_are_announced(api: FakeAPI, sleeps: list[float]) -> None:
    notes: list[str] = []
    rb = RemoteBackend(ACCOUNT, base_url=api.base, token="t", sleep=sleeps.append, notice=notes.append)
    api.script += [fail(429, 971, "slow down", {"Retry-After": "9000"}), fail(500, 1, "x")]
    rb.info("idx")
    assert sleeps[0] == 300.0  # Retry-After is honoured up to five minutes
    assert notes[0] == f"{api.base}: HTTP 429 (code 971); retrying in 300s"
    assert len(notes) == 1  # the short jittered wait after the 500 is not worth a line


def test_retries_are_bounded(rb: RemoteBackend, api: FakeAPI, sleeps: list[float]) -> None:
    api.script += [fail(500, 2000 + i, f"boom {i}") for i in range(10)]
    with pytest.raises(errors.RemoteError) as e:
        rb.info("idx")
    assert len(api.requests) == 4  # 1 + retries=3
    assert (e.value.code, e.value.message, e.value.status) == (2003, "boom 3", 500)
    assert len(sleeps) == 3 and all(0 <= s <= 0.5 * 2 ** i for i, s in enumerate(sleeps))


def test_x_should_retry_false_stops_retries(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script.append(fail(503, 2001, "down for good", {"x-should-retry": "false"}))
    with pytest.raises(errors.RemoteError) as e:
        rb.info("idx")
    assert e.value.message == "down for good" and len(api.requests) == 1


def test_non_json_5xx_is_reported_after_retries(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script += [(502, b"<html>bad gateway</html>", {})] * 4
    with pytest.raises(errors.RemoteError) as e:
        rb.info("idx")
    assert e.value.status == 502 and "HTTP 502" in e.value.message and "bad gateway" in e.value.message


def test_upload_is_resent_whole_after_a_5xx(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script += [ok({"name": "idx", "config": {"dimensions": 3, "metric": "cosine"}}), fail(500, 1, "x")]
    res = rb.upsert("idx", ndjson([{"id": "a", "values": vec(1)}, {"id": "b", "values": vec(2)}]))
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert len(posts) == 2 and posts[0]["body"] == posts[1]["body"] and posts[1]["body"].count(b"\n") == 2
    assert (res.count, res.mutation_id) == (2, "m1")


def test_unreachable_server_is_a_clear_error(sleeps: list[float]) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    rb = RemoteBackend(ACCOUNT, base_url=f"http://127.0.0.1:{port}/client/v4", token="t", retries=2,
                       sleep=sleeps.append)
    with pytest.raises(errors.RemoteError) as e:
        rb.list_indexes()
    assert e.value.code == 1000 and f"cannot reach http://127.0.0.1:{port}/client/v4" in e.value.message
    assert len(sleeps) == 2


# --- chunking --------------------------------------------------------------------------------------
def test_insert_streams_batches_of_at_most_5000(rb: RemoteBackend, api: FakeAPI) -> None:
    recs = [{"id": f"v{i:05d}", "values": vec(i), **({"namespace": "ns"} if i % 2 else {}),
             "metadata": {"i": i}} for i in range(12001)]
    progress: list[int] = []
    res = rb.insert("idx", ndjson(recs), on_progress=progress.append)
    posts = [r for r in api.requests if r["method"] == "POST"]
    assert [p["path"] for p in posts] == [f"{PREFIX}/idx/insert"] * 3
    assert [p["body"].count(b"\n") for p in posts] == [5000, 5000, 2001]
    assert all(p["headers"]["Content-Type"] == "application/x-ndjson" for p in posts)
    assert (res.count, res.mutation_id, progress) == (12001, "m3", [5000, 10000, 12001])
    # every value arrives as the exact float32 the local store would keep
    sent = {r["id"]: r for p in posts for r in map(json.loads, p["body"].splitlines())}
    for r in recs[:50]:
        assert np.array_equal(np.array(sent[r["id"]]["values"], dtype=np.float32), np.array(r["values"], np.float32))
        assert sent[r["id"]].get("namespace") == r.get("namespace") and sent[r["id"]]["metadata"] == r["metadata"]


def test_float32_max_is_sent_as_exact_float64_text(rb: RemoteBackend, api: FakeAPI) -> None:
    f32max = float(np.finfo(np.float32).max)
    rb.upsert("idx", ndjson([{"id": "m", "values": [f32max, -f32max, 0.1]}, {"id": "n", "values": [0.1, 2, 3]}]))
    body = [r for r in api.requests if r["method"] == "POST"][0]["body"]
    assert body == (b'{"id":"m","values":[3.4028234663852886e+38,-3.4028234663852886e+38,0.10000000149011612]}\n'
                    b'{"id":"n","values":[0.1,2.0,3.0]}\n')


def test_batches_also_respect_a_byte_cap(api: FakeAPI) -> None:
    rb = RemoteBackend(ACCOUNT, base_url=api.base, token="t", batch_bytes=200)
    rb.upsert("idx", ndjson([{"id": f"id-{i}", "values": [1, 2, 3]} for i in range(10)]))
    sizes = [len(r["body"]) for r in api.requests if r["method"] == "POST"]
    assert sum(sizes) > 200 and all(s <= 200 for s in sizes) and len(api.vectors) == 10


def test_a_bad_line_anywhere_sends_nothing(rb: RemoteBackend, api: FakeAPI) -> None:
    recs = [{"id": f"v{i}", "values": vec(i)} for i in range(6000)] + [{"id": "bad", "values": [1, 2]}]
    with pytest.raises(errors.InvalidVector) as e:
        rb.insert("idx", ndjson(recs), source="in.ndjson")
    assert e.value.message.startswith("in.ndjson:6001: ") and e.value.code == 40012
    assert [r["method"] for r in api.requests] == ["GET"]  # only the index lookup for its dimensions


def test_discard_skips_bad_lines_and_reports_them(rb: RemoteBackend, api: FakeAPI) -> None:
    data = io.BytesIO(b'{"id":"a","values":[1,2,3]}\nnot json\n{"id":"b","values":[1]}\n')
    res = rb.insert("idx", data, source="f", discard=True)
    assert (res.count, res.discarded, sorted(api.vectors)) == (1, 2, ["a"])
    assert res.errors[0].startswith("f:2: ") and res.errors[1].startswith("f:3: ")
    assert api.requests[-1]["path"] == f"{PREFIX}/idx/insert?unparsable-behavior=discard"


def test_every_line_discarded_sends_nothing(rb: RemoteBackend, api: FakeAPI) -> None:
    res = rb.upsert("idx", io.BytesIO(b"nope\n[1]\n"), discard=True)
    assert (res.count, res.discarded, res.mutation_id) == (0, 2, None)
    assert [r["method"] for r in api.requests] == ["GET"]


def test_empty_input_is_an_error(rb: RemoteBackend) -> None:
    with pytest.raises(errors.Unparsable):
        rb.insert("idx", io.BytesIO(b"\n\n"))


def test_insert_into_unknown_index_reads_nothing(rb: RemoteBackend) -> None:
    stream = ndjson([{"id": "a", "values": [1, 2, 3]}])
    with pytest.raises(errors.IndexNotFound):
        rb.insert("nope", stream)
    assert stream.tell() == 0


def test_get_by_ids_chunks_of_20_in_requested_order(rb: RemoteBackend, api: FakeAPI) -> None:
    api.vectors = {f"v{i}": {"id": f"v{i}", "values": vec(i)} for i in range(50)}
    ids = [f"v{i}" for i in range(49, -1, -1)] + ["missing", "v3"]
    res = rb.get_by_ids("idx", ids)
    assert [v["id"] for v in res] == [f"v{i}" for i in range(49, -1, -1)]
    assert [len(json.loads(r["body"])["ids"]) for r in api.requests] == [20, 20, 11]


def test_bad_id_fails_before_any_request(rb: RemoteBackend, api: FakeAPI) -> None:
    with pytest.raises(errors.UsageError) as e:
        rb.get_by_ids("idx", ["ok", "x" * 65])
    assert e.value.code == 40008 and e.value.exit_code == ExitCode.USAGE and api.requests == []


def test_delete_by_ids_chunks_of_100_last_mutation(rb: RemoteBackend, api: FakeAPI) -> None:
    api.vectors = {f"v{i}": {"id": f"v{i}", "values": vec(i)} for i in range(300)}
    res = rb.delete_by_ids("idx", [f"v{i}" for i in range(250)] + ["v0"])
    assert [len(json.loads(r["body"])["ids"]) for r in api.requests] == [100, 100, 50]
    assert (res.count, res.mutation_id, len(api.vectors)) == (250, "m3", 50)


def test_list_iter_and_export(rb: RemoteBackend, api: FakeAPI) -> None:
    api.vectors = {f"v{i:04d}": {"id": f"v{i:04d}", "values": vec(i), "metadata": {"i": i},
                                 **({"namespace": "odd"} if i % 2 else {})} for i in range(2345)}
    page = rb.list_vectors("idx", count=2, cursor="4")
    assert page["vectors"] == [{"id": "v0004"}, {"id": "v0005"}] and page["nextCursor"] == "6"
    assert list(rb.iter_ids("idx", page=1000)) == sorted(api.vectors)
    out = list(rb.export("idx"))
    assert [o["id"] for o in out] == sorted(api.vectors)
    assert out[0] == {"id": "v0000", "values": vec(0), "metadata": {"i": 0}}
    assert list(out[1]) == ["id", "values", "metadata", "namespace"] and out[1]["namespace"] == "odd"
    gets = [r for r in api.requests if r["path"].endswith("/get_by_ids")]
    assert all(len(json.loads(r["body"])["ids"]) <= 20 for r in gets)
    odd = list(rb.export("idx", namespace="odd"))
    assert [o["id"] for o in odd] == [f"v{i:04d}" for i in range(1, 2345, 2)]


def test_export_of_unknown_index_fails_at_once(rb: RemoteBackend) -> None:
    with pytest.raises(errors.IndexNotFound):
        next(rb.export("nope"))


# --- other operations ------------------------------------------------------------------------------
def test_query_bodies(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script += [ok({"count": 0, "matches": []})] * 2
    warnings: list[str] = []
    rb.query("idx", vector=[1.0, 2.0, 3.0], top_k=7, return_values=True, return_metadata="all",
             namespace="ns", filter={"a": {"$gt": 1}}, exact=True, warn=warnings.append)
    rb.query("idx", vector_id="a")
    assert [json.loads(r["body"]) for r in api.requests] == [
        {"topK": 7, "returnValues": True, "returnMetadata": "all", "vector": [1.0, 2.0, 3.0], "namespace": "ns",
         "filter": {"a": {"$gt": 1}}},
        {"topK": 5, "returnValues": False, "returnMetadata": "none", "vectorId": "a"}]
    assert api.requests[0]["headers"]["Content-Type"] == "application/json"
    assert len(warnings) == 1 and "--exact" in warnings[0]


def test_create_index_bodies_and_if_not_exists(rb: RemoteBackend, api: FakeAPI) -> None:
    api.script.append(ok({"name": "n"}))
    rb.create_index("n", dimensions=3, metric="cosine", description="d")
    api.script.append(ok({"name": "p"}))
    rb.create_index("p", preset="@cf/baai/bge-small-en-v1.5")
    assert [json.loads(r["body"]) for r in api.requests] == [
        {"name": "n", "config": {"dimensions": 3, "metric": "cosine"}, "description": "d"},
        {"name": "p", "config": {"preset": "@cf/baai/bge-small-en-v1.5"}}]
    api.script.append(fail(409, 3002, 'vectorize.index.duplicate_name - Index name "idx"'))
    assert rb.create_index("idx", dimensions=3, metric="cosine", if_not_exists=True)["name"] == "idx"
    api.script.append(fail(409, 3002, 'vectorize.index.duplicate_name - Index name "idx"'))
    with pytest.raises(errors.DuplicateIndex) as e:
        rb.create_index("idx", dimensions=4, metric="cosine", if_not_exists=True)
    assert "dimensions 3 != 4" in e.value.message
    with pytest.raises(errors.InvalidConfig):  # validated before any request, as locally
        rb.create_index("q", dimensions=3)


def test_delete_index_if_exists(rb: RemoteBackend, api: FakeAPI) -> None:
    assert rb.delete_index("nope", if_exists=True) is False
    with pytest.raises(errors.IndexNotFound):
        rb.delete_index("nope")
    api.script.append(ok(None))
    assert rb.delete_index("idx") is True
    assert api.requests[-1]["method"] == "DELETE"


def test_metadata_index_operations(rb: RemoteBackend, api: FakeAPI) -> None:
    listed = ok({"metadataIndexes": [{"propertyName": "g", "indexType": "string"}]})
    api.script += [listed, ok({"mutationId": "m9"}), ok({"dimensions": 3, "vectorCount": 4})]
    warnings: list[str] = []
    assert rb.create_metadata_index("idx", "h", "number", if_not_exists=True, warn=warnings.append) == \
        {"mutationId": "m9", "created": True}
    assert json.loads(api.requests[1]["body"]) == {"propertyName": "h", "indexType": "number"}
    assert "4 existing vector(s)" in warnings[0]
    api.script.append(listed)
    assert rb.create_metadata_index("idx", "g", "string", if_not_exists=True)["mutationId"] is None
    api.script.append(listed)
    assert rb.list_metadata_indexes("idx") == {"metadataIndexes": [{"propertyName": "g", "indexType": "string"}]}
    api.script += [listed]
    assert rb.delete_metadata_index("idx", "zz", if_exists=True) == {"mutationId": None, "deleted": False}
    api.script += [ok({"mutationId": "m10"})]
    assert rb.delete_metadata_index("idx", "g") == {"mutationId": "m10", "deleted": True}
    assert json.loads(api.requests[-1]["body"]) == {"propertyName": "g"}
    with pytest.raises(errors.UsageError):
        rb.create_metadata_index("idx", "g", "string", backfill=True)


def test_optimize_is_local_only(rb: RemoteBackend, api: FakeAPI) -> None:
    with pytest.raises(errors.UsageError) as e:
        rb.optimize("idx")
    assert "local-only" in e.value.message and api.requests == []


# --- through the CLI -------------------------------------------------------------------------------
def test_cli_remote_mode_uses_the_env(vz: Any, api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_BASE_URL", api.base)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "tok")
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    r = vz("--remote", "info", "idx", "--json")
    assert r.exit_code == 2 and "CLOUDFLARE_ACCOUNT_ID" in r.stderr and r.stdout == ""
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", ACCOUNT)
    r = vz("--remote", "info", "idx", "--json")
    assert (r.exit_code, r.json()) == (0, {"dimensions": 3, "vectorCount": 0})
    monkeypatch.setenv("VZ_REMOTE", "1")
    r = vz("get", "nope", "--json")
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr == '✘ [ERROR] vectorize.index.not_found - Index name "nope" [code: 3000]\n'
