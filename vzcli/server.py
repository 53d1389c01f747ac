"""`vz serve`: Cloudflare's Vectorize REST API v2 over the local store, as an ASGI app (Starlette).

Every response, errors included, is Cloudflare's envelope `{success, errors, messages, result}`.
Core errors (`VzError`) are translated once, in `VzApp.__call__`, into the envelope plus their HTTP
status; every 4xx also carries `x-should-retry: false`, because the `cloudflare` SDK otherwise
retries a 409 twice. The routing is a small table of regular expressions rather than Starlette's
router, so that unknown routes, wrong methods and bad bodies all get the same envelope, and so a
query costs as little as possible on top of the core (see bench/bench_http.py).

The core is synchronous (SQLite, usearch). Reads run on the event loop thread (a read never waits
for a lock and costs about a millisecond); writes, which may wait for SQLite's write lock, run in
Starlette's thread pool. Each thread keeps its own `LocalBackend`/`Store`, because a `Store` holds
one sqlite3 connection that must not be shared between threads. SQLite's WAL and busy timeout make
requests safe while CLI processes write the same store.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from vzcli import limits
from vzcli.errors import WARN_DISCARDED_LINES, BodyTooLarge, Notice, TooManyIds, UsageError, VzError

API_PREFIX = "/client/v4"
RESET_PATH = "/vz/reset"  # vz only, under API_PREFIX: not a Cloudflare route
INDEXES = "/accounts/{account_id}/vectorize/v2/indexes"

# Codes for failures that happen before a Vectorize operation runs. 7003 and 10000 are
# Cloudflare's generic "no route" and authentication codes; 40026 is Vectorize's "request body"
# code. 7001 for a wrong method is vz's choice: Cloudflare answers one with 10000 ("PUT method not
# allowed for the api_token authentication scheme"), which wrangler would take for an auth failure
# and follow with a whoami. docs/server.md lists every code.
NO_ROUTE = (7003, "No route for the URI")
BAD_METHOD = (7001, "Method not allowed")
AUTH = (10000, "Authentication error")
BAD_JSON = 40026
TOO_MANY_VECTORS = 40007  # same code as too many ids: a per-request item count over the cap


class ApiError(VzError):
    """A request-level failure raised by the HTTP layer itself (never by the core)."""


def _bad_body(detail: str) -> ApiError:
    return ApiError(f"Failed to parse the request body as JSON: {detail}", code=BAD_JSON)


def envelope(result: Any = None, *, errors: list[dict[str, Any]] | None = None,
             messages: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Cloudflare's response envelope: all four keys, always."""
    return {"success": not errors, "errors": errors or [], "messages": messages or [], "result": result}


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def warner(messages: list[dict[str, Any]]) -> Callable[[str], None]:
    """A core `warn` callback that appends each warning to `messages` with its code (README)."""

    def warn(msg: str) -> None:
        assert isinstance(msg, Notice), f"a warning without a code: {msg}"
        messages.append({"code": msg.code, "message": msg.api_message})

    return warn


def error_response(e: VzError, headers: dict[str, str] | None = None) -> Response:
    status = e.status if 400 <= e.status <= 599 else 400
    hdrs = dict(headers or {})
    if status < 500:
        hdrs["x-should-retry"] = "false"
    return OrjsonResponse(envelope(errors=[{"code": e.code, "message": e.message}]), status_code=status,
                          headers=hdrs)


# --- request helpers ----------------------------------------------------------------------------
async def _read_body(request: Request, limit: int = limits.BODY_MAX_BYTES) -> bytes:
    """The whole body, refusing (413) as soon as it passes `limit` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body too large; max is {limits.BODY_MAX_BYTES} bytes (100 MB), "
                        f"got {'at least ' if size else ''}{size} bytes")


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


async def _json_body(request: Request, *, optional: bool = False) -> dict[str, Any]:
    """A JSON object body; a non-JSON content type or unparsable JSON is 40026, as on Cloudflare.
    With `optional`, an empty body is `{}`."""
    if not _is_json_type(request.headers.get("content-type", "")):
        raise ApiError("Expected request with `Content-Type: application/json`", code=BAD_JSON)
    raw = await _read_body(request)
    if optional and not raw.strip():
        return {}
    if not raw.strip():
        raise _bad_body("EOF while parsing a value at line 1 column 0")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise _bad_body(str(e)) from None
    if not isinstance(obj, dict):
        raise _bad_body(f"invalid type: {_json_kind(obj)}, expected an object")
    return obj


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, (int, float)):
        return f"number `{v}`"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "sequence"
    return "map"


def _field(body: dict[str, Any], key: str, kinds: tuple[type, ...], expected: str, *,
           required: bool = False, default: Any = None) -> Any:
    """One typed body field; a wrong type is Cloudflare's 40026 `<field>: invalid type` error."""
    v = body.get(key)
    if v is None:
        if required:
            raise _bad_body(f"missing field `{key}`")
        return default
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        raise _bad_body(f"{key}: invalid type: {_json_kind(v)}, expected {expected}")
    return v


def _ids(body: dict[str, Any], cap: int) -> list[str]:
    ids = _field(body, "ids", (list,), "a sequence", default=[])
    for v in ids:
        if not isinstance(v, str):
            raise _bad_body(f"ids: invalid type: {_json_kind(v)}, expected a string")
    if len(ids) > cap:
        raise TooManyIds(f"too many ids in payload; max id count is {cap}, got {len(ids)}")
    return ids


def _query_param(request: Request, key: str) -> str | None:
    vals = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(key)
    return vals[-1] if vals else None


# --- insert/upsert bodies -------------------------------------------------------------------------
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.I)
_DISPOSITION_NAME = re.compile(rb'name="([^"]*)"', re.I)


def ndjson_payload(body: bytes, content_type: str) -> bytes:
    """The NDJSON inside an insert/upsert body.

    Accepted, whatever the content type says: multipart/form-data with the field `vectors`
    (wrangler's and Cloudflare's documented form), raw NDJSON (x-ndjson, json, octet-stream: the
    `cloudflare` SDK sends application/json) and a JSON *string* holding NDJSON (what the SDK sends
    when given a `str`).
    """
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return _multipart_field(body, content_type, "vectors")
    head = body.lstrip()[:1]
    if head == b'"':
        try:
            s = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if isinstance(s, str):
            return s.encode("utf-8")
    return body


def _multipart_field(body: bytes, content_type: str, field: str) -> bytes:
    m = _BOUNDARY.search(content_type)
    if not m:
        raise ApiError("multipart/form-data body without a boundary", code=BAD_JSON)
    delim = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    names = []
    for part in body.split(delim)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        part = part[2:] if part.startswith(b"\r\n") else part.lstrip(b"\n")
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = part.partition(b"\n\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        nm = _DISPOSITION_NAME.search(head)
        name = nm.group(1).decode("utf-8", "replace") if nm else ""
        if name == field:
            return content
        names.append(name)
    raise ApiError(f"multipart/form-data body has no `{field}` field (got: {', '.join(names) or 'none'}); "
                   "send the NDJSON as the file field `vectors`", code=40023)


def count_records(ndjson: bytes, cap: int = limits.BATCH_MAX) -> int:
    """Non-blank lines in `ndjson`, counted exactly only when the newline count could pass `cap`."""
    if ndjson.count(b"\n") < cap:
        return cap  # at most `cap` lines: cannot be over
    return sum(1 for line in ndjson.splitlines() if line.strip())


# --- the app ------------------------------------------------------------------------------------
Handler = Callable[..., Any]


class VzApp:
    """The ASGI application. `store` is the store directory; `token` enables bearer auth."""

    def __init__(self, store: str | Path | None = None, *, token: str | None = None) -> None:
        from vzcli.store import default_store_path

        self.store_path = Path(store) if store is not None else default_store_path()
        self.token = token or None
        self._local = threading.local()
        # background ANN maintenance (see `written`): indexes written since their last check
        self._cv = threading.Condition()
        self._dirty: set[str] = set()
        self._busy = False
        self._worker: threading.Thread | None = None
        p = r"/accounts/(?P<account>[^/]+)/vectorize/v2/indexes"
        n = r"/(?P<name>[^/]+)"
        # (regex, {method: handler}); the first regex that matches decides 404 vs 405
        self.routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = [
            (re.compile(p), {"GET": self.list_indexes, "POST": self.create_index}),
            (re.compile(p + n), {"GET": self.get_index, "DELETE": self.delete_index}),
            (re.compile(p + n + "/info"), {"GET": self.info}),
            (re.compile(p + n + "/insert"), {"POST": self.insert}),
            (re.compile(p + n + "/upsert"), {"POST": self.upsert}),
            (re.compile(p + n + "/query"), {"POST": self.query}),
            (re.compile(p + n + "/get_by_ids"), {"POST": self.get_by_ids}),
            (re.compile(p + n + "/delete_by_ids"), {"POST": self.delete_by_ids}),
            (re.compile(p + n + "/list"), {"GET": self.list_vectors}),
            (re.compile(p + n + "/metadata_index/create"), {"POST": self.create_metadata_index}),
            (re.compile(p + n + "/metadata_index/list"), {"GET": self.list_metadata_indexes}),
            (re.compile(p + n + "/metadata_index/delete"), {"POST": self.delete_metadata_index}),
        ]

    # one backend per worker thread: a Store's sqlite3 connection must stay on its thread
    def backend(self) -> Any:
        b = getattr(self._local, "backend", None)
        if b is None:
            from vzcli.local import LocalBackend
            from vzcli.store import Store

            b = self._local.backend = LocalBackend(Store(self.store_path), maintain=False)
        return b

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        """Run a read on the event loop thread itself.

        Reads never wait for a lock (WAL snapshots) and a query costs about a millisecond, so
        handing it to a worker thread costs more than it saves: on 2 busy cores the two thread
        switches and the GIL hand-over more than tripled the p50 latency of one client and
        lowered the throughput of two (bench/bench_http.py --quick; docs/server.md).
        """
        return fn(self.backend())

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        """Run a write in the thread pool: it may wait up to VZ_LOCK_TIMEOUT for SQLite's write
        lock (a CLI process writing the same store), and the loop must keep serving reads."""
        return await run_in_threadpool(lambda: fn(self.backend()))

    def written(self, name: str) -> None:
        """After a committed write to `name`: merge its ANN file in the background when due.

        A bulk load through the API (wrangler sends 5000 records per request) would otherwise
        merge the whole file on every request. One daemon thread merges, one index at a time;
        the writes that arrive during a merge are covered by the next. The thread is not tied to
        an event loop, and a process that exits mid-merge loses only that work (files are
        published by rename; leftovers are swept).
        """
        with self._cv:
            self._dirty.add(name)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._maintain_worker, name="vz-maintain", daemon=True)
                self._worker.start()
            self._cv.notify_all()

    def _maintain_worker(self) -> None:
        while True:
            with self._cv:
                while not self._dirty:
                    self._busy = False
                    self._cv.notify_all()
                    self._cv.wait()
                name = self._dirty.pop()
                self._busy = True
            self._maintain_now(name)

    def _maintain_now(self, name: str) -> None:
        import logging

        from vzcli import ann

        try:
            ann.maintain(self.backend().store, name)
        except (VzError, OSError, RuntimeError, ValueError) as e:
            detail = e.message if isinstance(e, VzError) else str(e)
            logging.getLogger("vz.serve").warning(
                "updating the ANN file of %r failed: %s; queries stay correct (recent writes are "
                "searched exactly) and the next write retries", name, detail)

    def idle(self, timeout: float | None = None) -> bool:
        """Block until no background merge is queued or running (for tests and benchmarks)."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._dirty and not self._busy, timeout)

    # --- ASGI ---
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await self.dispatch(request)
        except VzError as e:
            response = error_response(e)
        except Exception as e:  # a bug: still an envelope, never a traceback page
            import logging

            logging.getLogger("vz.serve").exception("internal error")
            response = OrjsonResponse(envelope(errors=[{"code": 1000, "message": f"internal error: "
                                                        f"{type(e).__name__}: {e}"}]), status_code=500)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await run_in_threadpool(_warm_up)
                try:
                    # open the catalog on the loop thread (reads run there), so a pending schema
                    # migration, or a store vz cannot read, shows now rather than in a request
                    self.backend().store.conn()
                except VzError as e:
                    await send({"type": "lifespan.startup.failed", "message": f"{e.message} [code: {e.code}]"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.backend().store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _authorised(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
        else:
            given = request.headers.get("x-auth-key", "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def dispatch(self, request: Request) -> Response:
        if not self._authorised(request):
            return error_response(ApiError(AUTH[1], code=AUTH[0], status=401))
        path = request.scope["path"]  # already percent-decoded; cheaper than request.url
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX):]
        elif path != "/openapi.json":
            return error_response(ApiError(NO_ROUTE[1], code=NO_ROUTE[0], status=404))
        if path == RESET_PATH:
            return await self._reset_route(request)
        if path == "/openapi.json":
            if request.method not in ("GET", "HEAD"):
                return error_response(ApiError(BAD_METHOD[1], code=BAD_METHOD[0], status=405),
                                      headers={"allow": "GET, HEAD"})
            return OrjsonResponse(openapi_document())
        for rx, methods in self.routes:
            m = rx.fullmatch(path)
            if m is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                return error_response(ApiError(BAD_METHOD[1], code=BAD_METHOD[0], status=405),
                                      headers={"allow": ", ".join(methods)})
            messages: list[dict[str, Any]] = []
            kw = {k: v for k, v in m.groupdict().items() if k != "account"}
            result = await handler(request, messages, **kw)
            return OrjsonResponse(envelope(result, messages=messages))
        return error_response(ApiError(NO_ROUTE[1], code=NO_ROUTE[0], status=404))

    async def _reset_route(self, request: Request) -> Response:
        if request.method != "POST":
            return error_response(ApiError(BAD_METHOD[1], code=BAD_METHOD[0], status=405), headers={"allow": "POST"})
        return OrjsonResponse(envelope(await self.reset(request)))

    async def reset(self, request: Request) -> Any:
        """vz only: delete every index, or every index whose name starts with `prefix`, for test
        harnesses that share one server (docs/server.md). An empty body means every index."""
        prefix = _field(await _json_body(request, optional=True), "prefix", (str,), "a string", default="")

        def reset(b: Any) -> list[str]:
            deleted = []
            for ix in b.list_indexes():
                if ix["name"].startswith(prefix) and b.delete_index(ix["name"], if_exists=True):
                    deleted.append(ix["name"])
            return deleted

        return {"deleted": await self.write(reset)}

    # --- indexes ---
    async def list_indexes(self, request: Request, messages: list[Any]) -> Any:
        return await self.read(lambda b: b.list_indexes())

    async def create_index(self, request: Request, messages: list[Any]) -> Any:
        from vzcli.errors import InvalidConfig

        body = await _json_body(request)
        name = _field(body, "name", (str,), "a string", required=True)
        description = _field(body, "description", (str,), "a string")
        config = _field(body, "config", (dict,), "a map")
        if config is None:
            raise InvalidConfig("Config must be provided")
        dims = _field(config, "dimensions", (int,), "an integer")
        metric = _field(config, "metric", (str,), "a string")
        preset = _field(config, "preset", (str,), "a string")
        return await self.write(lambda b: b.create_index(name, dimensions=dims, metric=metric, preset=preset,
                                                        description=description))

    async def get_index(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self.read(lambda b: b.get_index(name))

    async def delete_index(self, request: Request, messages: list[Any], name: str) -> Any:
        await self.write(lambda b: b.delete_index(name))
        return None

    async def info(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self.read(lambda b: b.info(name))

    # --- vectors ---
    async def insert(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self._write(request, messages, name, upsert=False)

    async def upsert(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self._write(request, messages, name, upsert=True)

    async def _write(self, request: Request, messages: list[Any], name: str, *, upsert: bool) -> Any:
        behaviour = _query_param(request, "unparsable-behavior")
        if behaviour not in (None, "", "error", "discard"):
            raise ApiError(f'unparsable-behavior must be "error" or "discard", got {behaviour!r}', code=BAD_JSON)
        body = await _read_body(request)
        payload = ndjson_payload(body, request.headers.get("content-type", ""))
        n = count_records(payload)
        if n > limits.BATCH_MAX:
            raise ApiError(f"too many vectors in payload; max vector count is {limits.BATCH_MAX}, got {n}",
                           code=TOO_MANY_VECTORS)
        discard = behaviour == "discard"

        def write(b: Any) -> Any:
            fn = b.upsert if upsert else b.insert
            return fn(name, BytesIO(payload), source="request body", discard=discard)

        res = await self.write(write)
        self.written(name)
        if res.discarded:
            messages.append({"code": WARN_DISCARDED_LINES, "message": f"discarded {res.discarded} unparsable "
                                                                     "line(s): " + "; ".join(res.errors[:10])})
        return {"mutationId": res.mutation_id}

    async def query(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await _json_body(request)
        vector = _field(body, "vector", (list,), "a sequence")  # its elements: the core checks (40006)
        vector_id = _field(body, "vectorId", (str,), "a string")
        top_k = _field(body, "topK", (int, float), "a number", default=limits.TOPK_DEFAULT)
        return_values = _field(body, "returnValues", (bool,), "a boolean", default=False)
        rm = body.get("returnMetadata")
        if rm is not None and not isinstance(rm, str):
            raise _bad_body("returnMetadata: expected value")
        return_metadata = rm if rm is not None else "none"
        if return_metadata not in ("none", "indexed", "all"):
            raise _bad_body(f"returnMetadata: unknown variant `{return_metadata}`, expected one of "
                            "`none`, `indexed`, `all`")
        namespace = _field(body, "namespace", (str,), "a string")
        flt = body.get("filter")
        return await self.read(lambda b: b.query(
            name, vector=vector, vector_id=vector_id, top_k=top_k, return_values=return_values,
            return_metadata=return_metadata, namespace=namespace, filter=flt, warn=warner(messages)))

    async def get_by_ids(self, request: Request, messages: list[Any], name: str) -> Any:
        ids = _ids(await _json_body(request), limits.GET_BY_IDS_MAX)
        return await self.read(lambda b: b.get_by_ids(name, ids))

    async def delete_by_ids(self, request: Request, messages: list[Any], name: str) -> Any:
        ids = _ids(await _json_body(request), limits.DELETE_BY_IDS_MAX)
        res = await self.write(lambda b: b.delete_by_ids(name, ids))
        self.written(name)
        return {"mutationId": res.mutation_id}

    async def list_vectors(self, request: Request, messages: list[Any], name: str) -> Any:
        raw = _query_param(request, "count")
        count = limits.LIST_COUNT_DEFAULT
        if raw not in (None, ""):
            try:
                count = int(raw)
            except ValueError:
                raise UsageError(f"count must be between 1 and {limits.LIST_COUNT_MAX}, got {raw!r}",
                                 code=40051) from None
        cursor = _query_param(request, "cursor") or None
        return await self.read(lambda b: b.list_vectors(name, count=count, cursor=cursor))

    # --- metadata indexes ---
    async def create_metadata_index(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await _json_body(request)
        prop = _field(body, "propertyName", (str,), "a string", required=True)
        itype = _field(body, "indexType", (str,), "a string", required=True)
        res = await self.write(lambda b: b.create_metadata_index(name, prop, itype, warn=warner(messages)))
        return {"mutationId": res["mutationId"]}

    async def list_metadata_indexes(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self.read(lambda b: b.list_metadata_indexes(name))

    async def delete_metadata_index(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await _json_body(request)
        prop = _field(body, "propertyName", (str,), "a string", required=True)
        res = await self.write(lambda b: b.delete_metadata_index(name, prop))
        return {"mutationId": res["mutationId"]}


def _warm_up() -> None:
    """Import what the first query needs (numpy, usearch, the planner) before accepting requests."""
    import vzcli.filters
    import vzcli.local
    import vzcli.ndjson
    import vzcli.search  # noqa: F401


def create_app(store: str | Path | None = None, *, token: str | None = None) -> VzApp:
    """The ASGI app serving `store` (a directory); with `token`, every request must present it."""
    return VzApp(store, token=token)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3 document of the served API (built on first use; see the end of this module)."""
    global _OPENAPI
    if _OPENAPI is None:
        _OPENAPI = _build_openapi()
    return _OPENAPI


_OPENAPI: dict[str, Any] | None = None


# --- OpenAPI 3 document -----------------------------------------------------------------------------
def _build_openapi() -> dict[str, Any]:
    from vzcli import __version__

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def ok(result: dict[str, Any]) -> dict[str, Any]:
        return {"description": "Success: the envelope with `result`.", "content": {"application/json": {
            "schema": {"allOf": [ref("Envelope"), {"type": "object", "properties": {"result": result}}]}}}}

    err = {"description": "Failure: the envelope with `errors` (`x-should-retry: false`).",
           "content": {"application/json": {"schema": ref("Failure")}}}
    name_param = {"name": "index_name", "in": "path", "required": True, "schema": {"type": "string"}}
    account_param = {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"},
                     "description": "Any value: the local server has one store for every account."}
    mutation = ref("Mutation")

    def op(op_id: str, summary: str, result: dict[str, Any], *, body: dict[str, Any] | None = None,
           index: bool = True, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {"operationId": op_id, "summary": summary,
                             "parameters": [account_param] + ([name_param] if index else []) + (params or []),
                             "responses": {"200": ok(result), "4XX": err}}
        if body is not None:
            o["requestBody"] = {"required": True, "content": body}
        return o

    def schema_body(name: str) -> dict[str, Any]:
        return {"application/json": {"schema": ref(name)}}

    ndjson_body = {
        "application/x-ndjson": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"type": "string", "format": "binary"},
                             "description": "raw NDJSON (what the cloudflare SDK sends), or a JSON string of it"},
        "multipart/form-data": {"schema": {"type": "object", "required": ["vectors"], "properties": {
            "vectors": {"type": "string", "format": "binary"}}}},
    }
    unparsable = {"name": "unparsable-behavior", "in": "query", "required": False,
                  "schema": {"type": "string", "enum": ["error", "discard"], "default": "error"}}
    base = API_PREFIX + INDEXES
    idx = base + "/{index_name}"
    return {
        "openapi": "3.0.3",
        "info": {"title": "vz: local Cloudflare Vectorize REST API v2", "version": __version__,
                 "description": "Cloudflare's Vectorize V2 REST API served from a local vz store. Every "
                                "response is the envelope {success, errors, messages, result}."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"api_key": []}],
        "paths": {
            base: {
                "get": op("vectorize-list-vectorize-indexes", "List indexes", {"type": "array", "items": ref("Index")},
                          index=False),
                "post": op("vectorize-create-vectorize-index", "Create an index", ref("Index"),
                           body=schema_body("CreateIndex"), index=False),
            },
            idx: {
                "get": op("vectorize-get-vectorize-index", "Get an index", ref("Index")),
                "delete": op("vectorize-delete-vectorize-index", "Delete an index", {"nullable": True}),
            },
            idx + "/info": {"get": op("vectorize-index-info", "Index info", ref("Info"))},
            idx + "/insert": {"post": op("vectorize-insert-vector", "Insert vectors (NDJSON, at most 5000)",
                                         mutation, body=ndjson_body, params=[unparsable])},
            idx + "/upsert": {"post": op("vectorize-upsert-vector", "Upsert vectors (NDJSON, at most 5000)",
                                         mutation, body=ndjson_body, params=[unparsable])},
            idx + "/query": {"post": op("vectorize-query-vector", "Query nearest neighbours", ref("QueryResult"),
                                        body=schema_body("Query"))},
            idx + "/get_by_ids": {"post": op("vectorize-get-vectors-by-id", "Get vectors by id (at most 20)",
                                             {"type": "array", "items": ref("Vector")}, body=schema_body("Ids"))},
            idx + "/delete_by_ids": {"post": op("vectorize-delete-vectors-by-id", "Delete vectors by id (at most 100)",
                                                mutation, body=schema_body("Ids"))},
            idx + "/list": {"get": op("vectorize-list-vectors", "List vector ids", ref("VectorList"), params=[
                {"name": "count", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                            "default": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}}])},
            idx + "/metadata_index/create": {"post": op("vectorize-create-metadata-index", "Create a metadata index",
                                                        mutation, body=schema_body("MetadataIndex"))},
            idx + "/metadata_index/list": {"get": op("vectorize-list-metadata-indexes", "List metadata indexes", {
                "type": "object", "properties": {"metadataIndexes": {"type": "array", "items": ref("MetadataIndex")}}})},
            idx + "/metadata_index/delete": {"post": op("vectorize-delete-metadata-index", "Delete a metadata index",
                                                        mutation, body={"application/json": {"schema": {
                                                            "type": "object", "required": ["propertyName"],
                                                            "properties": {"propertyName": {"type": "string"}}}}})},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "api_key": {"type": "apiKey", "in": "header", "name": "X-Auth-Key"}},
            "schemas": {
                "Message": {"type": "object", "required": ["code", "message"],
                            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}}},
                "Envelope": {"type": "object", "required": ["success", "errors", "messages", "result"],
                             "properties": {"success": {"type": "boolean"},
                                            "errors": {"type": "array", "items": ref("Message")},
                                            "messages": {"type": "array", "items": ref("Message")},
                                            "result": {}}},
                "Failure": {"allOf": [ref("Envelope"), {"type": "object", "properties": {
                    "success": {"type": "boolean", "enum": [False]}, "result": {"nullable": True}}}]},
                "Mutation": {"type": "object", "required": ["mutationId"],
                             "properties": {"mutationId": {"type": "string", "format": "uuid"}}},
                "Config": {"type": "object", "required": ["dimensions", "metric"], "properties": {
                    "dimensions": {"type": "integer", "minimum": limits.MIN_DIMENSIONS,
                                   "maximum": limits.MAX_DIMENSIONS},
                    "metric": {"type": "string", "enum": list(limits.METRICS)}}},
                "CreateIndex": {"type": "object", "required": ["name", "config"], "properties": {
                    "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"},
                    "description": {"type": "string"},
                    "config": {"oneOf": [ref("Config"), {"type": "object", "required": ["preset"], "properties": {
                        "preset": {"type": "string", "enum": list(limits.PRESETS)}}}]}}},
                "Index": {"type": "object", "required": ["name", "config", "created_on", "modified_on"],
                          "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                                         "config": ref("Config"), "created_on": {"type": "string"},
                                         "modified_on": {"type": "string"}}},
                "Info": {"type": "object", "required": ["dimensions", "vectorCount"], "properties": {
                    "dimensions": {"type": "integer"}, "vectorCount": {"type": "integer"},
                    "processedUpToDatetime": {"type": "string"}, "processedUpToMutation": {"type": "string"}}},
                "Query": {"type": "object", "properties": {
                    "vector": {"type": "array", "items": {"type": "number"}},
                    "vectorId": {"type": "string", "description": "query by a stored vector (not in "
                                                                  "Cloudflare's OAS; wrangler sends it)"},
                    "topK": {"type": "number", "default": limits.TOPK_DEFAULT, "maximum": limits.TOPK_MAX},
                    "returnValues": {"type": "boolean", "default": False},
                    "returnMetadata": {"type": "string", "enum": ["none", "indexed", "all"], "default": "none"},
                    "namespace": {"type": "string"}, "filter": {"type": "object"}}},
                "Match": {"type": "object", "required": ["id", "score"], "properties": {
                    "id": {"type": "string"}, "score": {"type": "number"},
                    "values": {"type": "array", "items": {"type": "number"}},
                    "metadata": {"type": "object"}, "namespace": {"type": "string"}}},
                "QueryResult": {"type": "object", "required": ["count", "matches"], "properties": {
                    "count": {"type": "integer"}, "matches": {"type": "array", "items": ref("Match")}}},
                "Ids": {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
                "Vector": {"type": "object", "required": ["id", "values"], "properties": {
                    "id": {"type": "string"}, "values": {"type": "array", "items": {"type": "number"}},
                    "metadata": {"type": "object"}, "namespace": {"type": "string"}}},
                "VectorList": {"type": "object", "required": ["count", "totalCount", "isTruncated", "vectors"],
                               "properties": {
                                   "count": {"type": "integer"}, "totalCount": {"type": "integer"},
                                   "isTruncated": {"type": "boolean"},
                                   "nextCursor": {"type": "string", "nullable": True},
                                   "cursorExpirationTimestamp": {"type": "string", "nullable": True},
                                   "vectors": {"type": "array", "items": {
                                       "type": "object", "required": ["id"],
                                       "properties": {"id": {"type": "string"}}}}}},
                "MetadataIndex": {"type": "object", "required": ["propertyName", "indexType"], "properties": {
                    "propertyName": {"type": "string"},
                    "indexType": {"type": "string", "enum": list(limits.METADATA_TYPES)}}},
            },
        },
    }
