"""`vz serve`: Cloudflare's Vectorize REST API v2 over the local store, as an ASGI app.

Every response, errors included, is Cloudflare's envelope `{success, errors, messages, result}`.
Core errors (`VzError`) are translated once, in `VzApp.__call__`, into the envelope plus their HTTP
status; every 4xx also carries `x-should-retry: false`, because the `cloudflare` SDK otherwise
retries a 409 twice. The routing is a small table of regular expressions rather than Starlette's
router, so that unknown routes, wrong methods and bad bodies all get the same envelope, and so a
query costs as little as possible on top of the core (see bench/bench_http.py).

Around the routes: the Host and Origin checks (vzcli.http_security), bodies read once with a size
and time bound and at most `max_bodies` at a time (vzcli.http_body), and the store's catalog
checked on every request, so a store deleted or replaced under the server is reopened.

The core is synchronous (SQLite, usearch). Reads run in a pool of `read_threads` worker threads,
so concurrent queries use every core (usearch releases the GIL while it searches; SQLite WAL
readers never block each other); a read that is sure to be quick is answered on the event loop
itself unless another read is in flight (`VzApp.read`). Writes run one at a time on one writer thread: they may wait for
SQLite's write lock (a CLI process writing the same store) and the readers keep going meanwhile.
Each thread keeps its own `LocalBackend`/`Store` (a `Store` holds one sqlite3 connection).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response

from vzcli import limits
from vzcli.errors import WARN_DISCARDED_LINES, Notice, TooManyIds, UsageError, VzError
from vzcli.http_body import (
    ApiError,
    ClientGone,
    SpanReader,
    bad_body,
    count_records,
    is_json_type,
    json_kind,
    json_object,
    ndjson_payload,
    read_body,
)
from vzcli.http_openapi import API_PREFIX, INDEXES, openapi_document
from vzcli.http_security import HOST_REFUSED, ORIGIN_REFUSED, Guard

__all__ = ["API_PREFIX", "INDEXES", "RESET_PATH", "VzApp", "create_app", "envelope", "ndjson_payload",
           "openapi_document"]

RESET_PATH = "/vz/reset"  # vz only, under API_PREFIX: not a Cloudflare route
READ_TIMEOUT_DEFAULT = 30.0
MAX_BODIES_DEFAULT = 2
SMALL_BODY = 1 << 20  # a body declared this small needs no slot: a query never waits behind an upload

# Codes for failures that happen before a Vectorize operation runs. 7003 and 10000 are
# Cloudflare's generic "no route" and authentication codes; 40026 is Vectorize's "request body"
# code. 7001 for a wrong method is vz's choice: Cloudflare answers one with 10000 ("PUT method not
# allowed for the api_token authentication scheme"), which wrangler would take for an auth failure
# and follow with a whoami. 7008 (timeout), 7010 (Host) and 7011 (Origin) are vz's too.
# docs/server.md lists every code.
NO_ROUTE = (7003, "No route for the URI")
BAD_METHOD = (7001, "Method not allowed")
AUTH = (10000, "Authentication error")
BAD_JSON = 40026
TOO_MANY_VECTORS = 40007  # same code as too many ids: a per-request item count over the cap

log = logging.getLogger("uvicorn.error")  # uvicorn's logger: its level follows --access-log


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
    if status == 408:  # the rest of the body may still be on its way: this connection is done
        hdrs["connection"] = "close"
    return OrjsonResponse(envelope(errors=[{"code": e.code, "message": e.message}]), status_code=status,
                          headers=hdrs)


# --- request helpers ----------------------------------------------------------------------------
def _field(body: dict[str, Any], key: str, kinds: tuple[type, ...], expected: str, *,
           required: bool = False, default: Any = None) -> Any:
    """One typed body field; a wrong type is Cloudflare's 40026 `<field>: invalid type` error."""
    v = body.get(key)
    if v is None:
        if required:
            raise bad_body(f"missing field `{key}`")
        return default
    if not isinstance(v, kinds) or (isinstance(v, bool) and bool not in kinds):
        raise bad_body(f"{key}: invalid type: {json_kind(v)}, expected {expected}")
    return v


def _ids(body: dict[str, Any], cap: int) -> list[str]:
    ids = _field(body, "ids", (list,), "a sequence", default=[])
    for v in ids:
        if not isinstance(v, str):
            raise bad_body(f"ids: invalid type: {json_kind(v)}, expected a string")
    if len(ids) > cap:
        raise TooManyIds(f"too many ids in payload; max id count is {cap}, got {len(ids)}")
    return ids


def _query_param(request: Request, key: str) -> str | None:
    vals = parse_qs(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(key)
    return vals[-1] if vals else None


def _small_body(request: Request) -> bool:
    declared = request.headers.get("content-length")
    return declared is not None and declared.isdigit() and int(declared) <= SMALL_BODY


def _catalog_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --- the app ------------------------------------------------------------------------------------
Handler = Callable[..., Any]


class VzApp:
    """The ASGI application over the store directory `store`.

    `token` enables bearer auth; `host` (the address served), `allow_hosts` and `cors_origins` feed
    the Host and Origin checks; `read_timeout` bounds the time a body takes to arrive (None: no
    bound); `max_bodies` bounds the request bodies held at once; `read_threads` is the number of
    threads that answer reads (0: on the event loop thread).
    """

    def __init__(self, store: str | Path | None = None, *, token: str | None = None, host: str = "127.0.0.1",
                 allow_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (),
                 read_timeout: float | None = READ_TIMEOUT_DEFAULT, max_bodies: int = MAX_BODIES_DEFAULT,
                 read_threads: int | None = None) -> None:
        from vzcli.store import CATALOG, default_store_path

        self.store_path = Path(store) if store is not None else default_store_path()
        self.catalog = self.store_path / CATALOG
        self.token = token or None
        self.guard = Guard(host, allow_hosts, cors_origins)
        self.read_timeout = read_timeout
        self.max_bodies = max(1, max_bodies)
        self.read_threads = (os.cpu_count() or 2) if read_threads is None else max(0, read_threads)
        self._bodies: asyncio.Semaphore | None = None
        self._readers = ThreadPoolExecutor(self.read_threads, "vz-read") if self.read_threads else None
        self._reading = 0  # reads handed to `_readers` and not answered yet (counted on the loop thread)
        self.quick_reads = True  # False: every read goes to the pool, quick or not (tests)
        self._writer = ThreadPoolExecutor(1, "vz-write")
        self._local = threading.local()
        self._backends: list[Any] = []
        self._backends_lock = threading.Lock()
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
            (re.compile(re.escape(RESET_PATH)), {"POST": self.reset}),
        ]

    # one backend per thread: a Store's sqlite3 connection must stay on its thread
    def backend(self) -> Any:
        """This thread's backend, reopened when the catalog file is no longer the one it opened
        (the store was deleted, or replaced by a new catalog at the same path): one stat.

        The (device, inode) pair identifies the file: while this thread's connection holds the old
        catalog open, its inode cannot be reused by a new file. With no catalog at all the backend
        is made anew for each request (it costs no I/O), since one that creates the catalog ends
        up holding it under an identity it never saw."""
        ident = _catalog_identity(self.catalog)
        b = getattr(self._local, "backend", None)
        if b is not None and (ident is None or self._local.identity != ident):
            b.store.close()
            with self._backends_lock:
                self._backends.remove(b)
            b = None
        if b is None:
            from vzcli.local import LocalBackend
            from vzcli.store import Store

            b = self._local.backend = LocalBackend(Store(self.store_path), maintain=False)
            self._local.identity = ident
            with self._backends_lock:
                self._backends.append(b)
        return b

    async def read(self, fn: Callable[[Any], Any], quick: Callable[[Any], Any] | bool = False) -> Any:
        """Run a read on a reader thread (or on the loop thread with read_threads=0).

        `quick`: True if `fn` takes little time whatever the store holds (its size is bounded by
        the API's limits), or a function that answers quickly or returns None (`quick_query`).
        Unless a read is running in the pool, the loop thread runs it itself: the hand-off to a
        reader thread and back costs more than the overlap it buys (~0.2 ms, 16-19% of a lone
        client's query at 1M x 128; four clients got fewer queries answered per second through the
        pool than on the loop, docs/server.md "Threads"). Everything else goes to the pool, so a
        long read never holds up the requests that arrive meanwhile; and while one runs there,
        quick reads go there too (the loop must never wait for a search a reader thread holds)."""
        if self._readers is None:
            return fn(self.backend())
        if quick and self.quick_reads and not self._reading:
            if quick is True:
                return fn(self.backend())
            got = quick(self.backend())
            if got is not None:
                return got
        self._reading += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, lambda: fn(self.backend()))
        finally:
            self._reading -= 1

    async def write(self, fn: Callable[[Any], Any]) -> Any:
        """Run a write on the writer thread: writes are serialised, and one may wait up to
        VZ_LOCK_TIMEOUT for SQLite's write lock (a CLI process) while the readers go on."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, lambda: fn(self.backend()))

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
        from vzcli import ann

        try:
            ann.maintain(self.backend().store, name)
        except (VzError, OSError, RuntimeError, ValueError) as e:
            detail = e.message if isinstance(e, VzError) else str(e)
            log.warning("updating the ANN file of %r failed: %s; queries stay correct (recent writes are "
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
        origin = request.headers.get("origin")
        try:
            response = await self.dispatch(request, origin)
        except ClientGone:
            # nobody to answer; one line at INFO (shown with --access-log), never a traceback
            client = scope.get("client") or ("?", 0)
            log.info("%s:%s - client went away before sending the whole request (%s %s)", client[0], client[1],
                     scope.get("method"), scope.get("path"))
            return
        except VzError as e:
            response = error_response(e)
        except Exception as e:  # a bug: still an envelope, never a traceback page
            log.exception("internal error")
            response = OrjsonResponse(envelope(errors=[{"code": 1000, "message": f"internal error: "
                                                        f"{type(e).__name__}: {e}"}]), status_code=500)
        if origin is not None:
            response.headers.update(self.guard.cors_headers(origin))
        await response(scope, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        try:
            await self._lifespan_messages(receive, send)
        except asyncio.CancelledError:
            # uvicorn stopped without shutting the app down: a stop signal during its start-up makes
            # it skip its shutdown, and asyncio then cancels this task (uvicorn would log that as an
            # "Exception in 'lifespan' protocol" with a traceback). Close here, and say nothing.
            self.close()

    async def _lifespan_messages(self, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await asyncio.get_running_loop().run_in_executor(None, _warm_up)
                try:
                    # open the catalog now, so a pending schema migration, or a store vz cannot
                    # read, shows at start rather than in a request
                    await self.read(lambda b: b.store.conn())
                except VzError as e:
                    await send({"type": "lifespan.startup.failed", "message": f"{e.message} [code: {e.code}]"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """Stop the worker threads (after what they are running) and close every thread's store."""
        for pool in (self._readers, self._writer):
            if pool is not None:
                pool.shutdown(wait=True)
        with self._backends_lock:
            for b in self._backends:
                b.store.close()  # connections are opened with check_same_thread=False
            self._backends.clear()

    def _authorised(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("authorization", "")
        if given[:7].lower() == "bearer ":
            given = given[7:].strip()
        else:
            given = request.headers.get("x-auth-key", "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _refusal(self, request: Request, origin: str | None) -> Response | None:
        """403 for a request a web page may have sent: a Host not ours (DNS rebinding), or an
        Origin not listed. Checked before anything else, the token included."""
        hosts = request.headers.getlist("host")
        if not self.guard.host_allowed(hosts):
            return error_response(ApiError(self.guard.host_refusal(hosts), code=HOST_REFUSED, status=403))
        if not self.guard.origin_allowed(origin, request.headers.get("sec-fetch-site")):
            return error_response(ApiError(self.guard.origin_refusal(origin), code=ORIGIN_REFUSED, status=403))
        return None

    async def dispatch(self, request: Request, origin: str | None = None) -> Response:
        refused = self._refusal(request, origin)
        if refused is not None:
            return refused
        if request.method == "OPTIONS" and origin is not None:  # a preflight from a listed origin
            return Response(status_code=204, headers=self.guard.preflight_headers(
                origin, request.headers.get("access-control-request-headers")))
        if not self._authorised(request):
            return error_response(ApiError(AUTH[1], code=AUTH[0], status=401))
        path = request.scope["path"]  # already percent-decoded; cheaper than request.url
        if path.startswith(API_PREFIX):
            path = path[len(API_PREFIX):]
        elif path != "/openapi.json":
            return error_response(ApiError(NO_ROUTE[1], code=NO_ROUTE[0], status=404))
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
            if request.method == "POST" and not _small_body(request):  # hold one of the `max_bodies` slots
                if self._bodies is None:
                    self._bodies = asyncio.Semaphore(self.max_bodies)
                async with self._bodies:
                    result = await handler(request, messages, **kw)
            else:
                result = await handler(request, messages, **kw)
            return OrjsonResponse(envelope(result, messages=messages))
        return error_response(ApiError(NO_ROUTE[1], code=NO_ROUTE[0], status=404))

    # --- bodies ---
    async def _body(self, request: Request) -> Any:
        return await read_body(request.receive, request.headers, timeout=self.read_timeout)

    async def _json_body(self, request: Request, *, optional: bool = False) -> dict[str, Any]:
        """A JSON object body; a non-JSON content type or unparsable JSON is 40026, as on Cloudflare."""
        if not is_json_type(request.headers.get("content-type", "")):
            raise ApiError("Expected request with `Content-Type: application/json`", code=BAD_JSON)
        return json_object(await self._body(request), optional=optional)

    # --- vz only ---
    async def reset(self, request: Request, messages: list[Any]) -> Any:
        """Delete every index, or every index whose name starts with `prefix`, for test harnesses
        that share one server (docs/server.md). An empty body means every index."""
        prefix = _field(await self._json_body(request, optional=True), "prefix", (str,), "a string", default="")

        def reset(b: Any) -> list[str]:
            deleted = []
            for ix in b.list_indexes():
                if ix["name"].startswith(prefix) and b.delete_index(ix["name"], if_exists=True):
                    deleted.append(ix["name"])
            return deleted

        return {"deleted": await self.write(reset)}

    # --- indexes ---
    async def list_indexes(self, request: Request, messages: list[Any]) -> Any:
        return await self.read(lambda b: b.list_indexes(), quick=True)

    async def create_index(self, request: Request, messages: list[Any]) -> Any:
        from vzcli.errors import InvalidConfig

        body = await self._json_body(request)
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
        return await self.read(lambda b: b.get_index(name), quick=True)

    async def delete_index(self, request: Request, messages: list[Any], name: str) -> Any:
        await self.write(lambda b: b.delete_index(name))
        return None

    async def info(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self.read(lambda b: b.info(name), quick=True)

    # --- vectors ---
    async def insert(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self._write(request, messages, name, upsert=False)

    async def upsert(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self._write(request, messages, name, upsert=True)

    async def _write(self, request: Request, messages: list[Any], name: str, *, upsert: bool) -> Any:
        behaviour = _query_param(request, "unparsable-behavior")
        if behaviour not in (None, "", "error", "discard"):
            raise ApiError(f'unparsable-behavior must be "error" or "discard", got {behaviour!r}', code=BAD_JSON)
        body = await self._body(request)
        payload = ndjson_payload(body.data, request.headers.get("content-type", ""))
        n = count_records(payload, body.newlines if payload.data is body.data else None)
        if n > limits.BATCH_MAX:
            raise ApiError(f"too many vectors in payload; max vector count is {limits.BATCH_MAX}, got {n}",
                           code=TOO_MANY_VECTORS)
        discard = behaviour == "discard"

        def write(b: Any) -> Any:
            fn = b.upsert if upsert else b.insert
            return fn(name, SpanReader(payload), source="request body", discard=discard)

        res = await self.write(write)
        self.written(name)
        if res.discarded:
            messages.append({"code": WARN_DISCARDED_LINES, "message": f"discarded {res.discarded} unparsable "
                                                                     "line(s): " + "; ".join(res.errors[:10])})
        return {"mutationId": res.mutation_id}

    async def query(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await self._json_body(request)
        vector = _field(body, "vector", (list,), "a sequence")  # its elements: the core checks (40006)
        vector_id = _field(body, "vectorId", (str,), "a string")
        top_k = _field(body, "topK", (int, float), "a number", default=limits.TOPK_DEFAULT)
        return_values = _field(body, "returnValues", (bool,), "a boolean", default=False)
        rm = body.get("returnMetadata")
        if rm is not None and not isinstance(rm, str):
            raise bad_body("returnMetadata: expected value")
        return_metadata = rm if rm is not None else "none"
        if return_metadata not in ("none", "indexed", "all"):
            raise bad_body(f"returnMetadata: unknown variant `{return_metadata}`, expected one of "
                           "`none`, `indexed`, `all`")
        namespace = _field(body, "namespace", (str,), "a string")
        flt = body.get("filter")
        args = dict(vector=vector, vector_id=vector_id, top_k=top_k, return_values=return_values,
                    return_metadata=return_metadata, namespace=namespace, filter=flt, warn=warner(messages))
        return await self.read(lambda b: b.query(name, **args), quick=lambda b: b.quick_query(name, **args))

    async def get_by_ids(self, request: Request, messages: list[Any], name: str) -> Any:
        ids = _ids(await self._json_body(request), limits.GET_BY_IDS_MAX)
        return await self.read(lambda b: b.get_by_ids(name, ids), quick=True)

    async def delete_by_ids(self, request: Request, messages: list[Any], name: str) -> Any:
        ids = _ids(await self._json_body(request), limits.DELETE_BY_IDS_MAX)
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
        return await self.read(lambda b: b.list_vectors(name, count=count, cursor=cursor), quick=True)

    # --- metadata indexes ---
    async def create_metadata_index(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await self._json_body(request)
        prop = _field(body, "propertyName", (str,), "a string", required=True)
        itype = _field(body, "indexType", (str,), "a string", required=True)
        res = await self.write(lambda b: b.create_metadata_index(name, prop, itype, warn=warner(messages)))
        return {"mutationId": res["mutationId"]}

    async def list_metadata_indexes(self, request: Request, messages: list[Any], name: str) -> Any:
        return await self.read(lambda b: b.list_metadata_indexes(name), quick=True)

    async def delete_metadata_index(self, request: Request, messages: list[Any], name: str) -> Any:
        body = await self._json_body(request)
        prop = _field(body, "propertyName", (str,), "a string", required=True)
        res = await self.write(lambda b: b.delete_metadata_index(name, prop))
        return {"mutationId": res["mutationId"]}


def _warm_up() -> None:
    """Import what the first query needs (numpy, usearch, the planner) before accepting requests."""
    import vzcli.filters
    import vzcli.local
    import vzcli.ndjson
    import vzcli.search  # noqa: F401


def check_options(host: str = "127.0.0.1", allow_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (),
                  **_: Any) -> None:
    """Raise UsageError for what `create_app` would refuse (a bad VZ_* variable, Host or Origin
    option), without making an app: `vz serve --workers` checks in the parent, before forking."""
    from vzcli import envconf

    envconf.check_all()
    Guard(host, allow_hosts, cors_origins)


def create_app(store: str | Path | None = None, *, token: str | None = None, **options: Any) -> VzApp:
    """The ASGI app serving `store` (a directory); with `token`, every request must present it.
    `options` are VzApp's: host, allow_hosts, cors_origins, read_timeout, max_bodies, read_threads.
    Raises UsageError for a bad VZ_* variable, as the CLI does before any command."""
    check_options(**options)
    return VzApp(store, token=token, **options)
