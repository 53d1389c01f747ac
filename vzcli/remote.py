"""The remote backend: the same `Backend` interface over Cloudflare's Vectorize REST API v2.

Stdlib HTTP only (urllib), so remote mode adds no dependency. Cloudflare's error envelopes become
the typed errors of `errors.py`, so the CLI prints the same messages and exit codes in both modes.
Requests respect Cloudflare's limits (5000 records per insert/upsert request, 20 ids per
get_by_ids, 100 per delete_by_ids) and are retried with exponential backoff and jitter on 429 and
5xx (honouring Retry-After), never on other 4xx. See docs/remote.md.
"""

from __future__ import annotations

import functools
import http.client
import io
import os
import random
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from typing import IO, Any, BinaryIO

import orjson

from vzcli import __version__, limits
from vzcli.backend import WriteResult
from vzcli.errors import (
    AuthError,
    BadCursor,
    BodyTooLarge,
    DuplicateIndex,
    IndexNotFound,
    InvalidConfig,
    InvalidFilter,
    InvalidVector,
    LockTimeout,
    MetadataIndexError,
    QueryDimensionMismatch,
    RemoteError,
    StoreError,
    TooManyIds,
    TopKTooLarge,
    Unparsable,
    UsageError,
    VectorNotFound,
    VzError,
)

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
MAX_REQUEST_BYTES = 50 * 1000 * 1000  # well under Cloudflare's 100 MB upload cap, so a retry stays cheap
EXPORT_PAGE = 1000
EXPORT_WORKERS = 4  # concurrent get_by_ids requests while exporting (Cloudflare rate-limits the API per user)
RETRY_AFTER_MAX = 300.0  # seconds: the longest Retry-After honoured
NETWORK_ERROR = 1000  # vz's code when the API cannot be reached at all

# Cloudflare's codes (and vz serve's own, README "Compatibility") -> the class the local backend raises,
# so a failure has the same exit code in both modes. Anything else becomes a RemoteError.
_ERRORS: dict[int, type[VzError]] = {
    3000: IndexNotFound,
    3001: InvalidConfig,
    3002: DuplicateIndex,
    40000: UsageError,
    40005: BodyTooLarge,
    40006: QueryDimensionMismatch,
    40007: TooManyIds,
    40008: InvalidVector,
    40010: InvalidVector,
    40011: InvalidVector,
    40012: InvalidVector,
    40023: Unparsable,
    40025: TopKTooLarge,
    40026: UsageError,
    40030: InvalidFilter,
    40034: VectorNotFound,
    40040: MetadataIndexError,
    40051: UsageError,
    40052: BadCursor,
    1002: StoreError,
    1003: LockTimeout,
    9106: AuthError,
    10000: AuthError,
}
_RETRY_CODES = {40041}  # Vectorize's "Too Many Requests", which may come with a status other than 429
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def typed_error(code: int, message: str, status: int) -> VzError:
    """The typed error for a remote `{code, message}`, keeping the remote message and code."""
    cls = _ERRORS.get(code, RemoteError)
    err = cls.__new__(cls)  # bypass constructors that build their own message (IndexNotFound, ...)
    VzError.__init__(err, message, code=code, status=status)
    return err


class _Segment(io.RawIOBase):
    """Bytes [start, start + length) of a file, read in blocks: an upload body that is never in memory whole."""

    def __init__(self, f: IO[bytes], start: int, length: int) -> None:
        self.f, self.pos, self.end = f, start, start + length

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        left = self.end - self.pos
        if n is None or n < 0 or n > left:
            n = left
        self.f.seek(self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data


def _segment(f: IO[bytes], start: int, length: int) -> tuple[_Segment, int]:
    return _Segment(f, start, length), length


class RemoteBackend:
    """Vectorize over Cloudflare's REST API (or anything speaking it, such as `vz serve`)."""

    def __init__(self, account_id: str, *, base_url: str = DEFAULT_BASE_URL, token: str | None = None,
                 api_key: str | None = None, email: str | None = None, retries: int = 5,
                 backoff: float = 0.5, max_delay: float = 30.0, timeout: float = 60.0,
                 batch_records: int = limits.BATCH_MAX, batch_bytes: int = MAX_REQUEST_BYTES,
                 sleep: Callable[[float], None] = time.sleep, notice: Callable[[str], None] | None = None) -> None:
        if api_key and email:  # wrangler: key + email take precedence over a token
            self._auth = {"X-Auth-Key": api_key, "X-Auth-Email": email}
        elif token:
            self._auth = {"Authorization": f"Bearer {token}"}
        else:
            raise UsageError("remote mode needs credentials: set CLOUDFLARE_API_TOKEN "
                             "(or CLOUDFLARE_API_KEY and CLOUDFLARE_EMAIL)")
        if not account_id:
            raise UsageError("remote mode needs CLOUDFLARE_ACCOUNT_ID (your Cloudflare account id)")
        self.base_url = base_url.rstrip("/")
        self._root = f"{self.base_url}/accounts/{urllib.parse.quote(account_id, safe='')}/vectorize/v2/indexes"
        self.retries, self.backoff, self.max_delay, self.timeout = retries, backoff, max_delay, timeout
        self.batch_records, self.batch_bytes = min(batch_records, limits.BATCH_MAX), batch_bytes
        self._sleep, self._notice = sleep, notice
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        # honour HTTPS_PROXY for Cloudflare, but never send loopback traffic (vz serve, tests) through a proxy
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> RemoteBackend:
        """Configure from CLOUDFLARE_API_BASE_URL, CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN
        (or CLOUDFLARE_API_KEY + CLOUDFLARE_EMAIL); missing settings are a usage error (exit 2).
        Long waits before a retry are announced on stderr (silenced by --quiet)."""
        from vzcli import render

        e = os.environ if env is None else env
        return cls(e.get("CLOUDFLARE_ACCOUNT_ID", ""),
                   base_url=e.get("CLOUDFLARE_API_BASE_URL") or DEFAULT_BASE_URL,
                   token=e.get("CLOUDFLARE_API_TOKEN"), api_key=e.get("CLOUDFLARE_API_KEY"),
                   email=e.get("CLOUDFLARE_EMAIL"), notice=render.warn)

    # --- HTTP -----------------------------------------------------------------------------------
    def _url(self, name: str | None, tail: str = "", params: dict[str, Any] | None = None) -> str:
        url = self._root
        if name is not None:
            url += "/" + urllib.parse.quote(name, safe="")  # a name can never reach another path
        url += tail
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        return url

    def _call(self, method: str, name: str | None, tail: str = "", *, params: dict[str, Any] | None = None,
              json: Any = None, body: Callable[[], tuple[Any, int]] | None = None,
              envelope: bool = False) -> Any:
        """One API call: the envelope's `result`, or the typed error; retried on 429, 5xx and lost connections.

        `body` makes a fresh (stream, length) for each attempt, so an upload is re-sent from its start.
        `envelope` returns the whole success envelope instead of its `result`.
        """
        url = self._url(name, tail, params)
        headers = {"User-Agent": f"vz/{__version__}", "Accept": "application/json", **self._auth}
        attempt = 0
        while True:
            data: Any = None
            hdrs = dict(headers)
            if json is not None:
                data = orjson.dumps(json)
                hdrs["Content-Type"] = "application/json"
            elif body is not None:
                data, length = body()
                hdrs["Content-Type"] = "application/x-ndjson"
                hdrs["Content-Length"] = str(length)
            req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
            retry_after: str | None = None
            should_retry = True
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    status, raw = resp.status, resp.read()
            except urllib.error.HTTPError as e:
                status, retry_after = e.code, e.headers.get("Retry-After")
                should_retry = (e.headers.get("x-should-retry") or "").lower() != "false"
                try:
                    raw = e.read()
                finally:
                    e.close()
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                if attempt < self.retries and isinstance(reason, (ConnectionError, TimeoutError,
                                                                  http.client.HTTPException)):
                    self._wait(self._delay(attempt, None), f"{reason}")
                    attempt += 1
                    continue
                raise RemoteError(f"cannot reach {self.base_url}: {reason}", code=NETWORK_ERROR, status=502) from None
            env = _envelope(raw)
            code = _first_code(env)
            retryable = status == 429 or status >= 500 or code in _RETRY_CODES
            if retryable and should_retry and attempt < self.retries:
                self._wait(self._delay(attempt, retry_after), f"HTTP {status}" + (f" (code {code})" if code else ""))
                attempt += 1
                continue
            result = _result(env, status, raw, method, url)
            return env if envelope and isinstance(env, dict) else result

    def _wait(self, secs: float, why: str) -> None:
        if secs >= 2 and self._notice is not None:
            self._notice(f"{self.base_url}: {why}; retrying in {secs:.0f}s")
        self._sleep(secs)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry `attempt + 1`: Retry-After if given (Cloudflare blocks an API user
        for up to five minutes after 1,200 requests in five minutes), else full-jitter backoff."""
        if retry_after:
            try:
                secs = float(retry_after)
            except ValueError:
                try:
                    secs = parsedate_to_datetime(retry_after).timestamp() - time.time()
                except (TypeError, ValueError):
                    secs = -1.0
            if secs >= 0:
                return min(secs, RETRY_AFTER_MAX)
        return random.uniform(0, min(self.max_delay, self.backoff * 2 ** attempt))

    # --- indexes --------------------------------------------------------------------------------
    def create_index(self, name: str, *, dimensions: int | None = None, metric: str | None = None,
                     preset: str | None = None, description: str | None = None,
                     if_not_exists: bool = False) -> dict[str, Any]:
        dims, met = limits.resolve_config(dimensions, metric, preset)  # the same config errors as locally
        body: dict[str, Any] = {"name": name,
                                "config": {"preset": preset} if preset else {"dimensions": dims, "metric": met}}
        if description is not None:
            body["description"] = description
        try:
            return self._call("POST", None, json=body)
        except DuplicateIndex:
            if not if_not_exists:
                raise
        existing = self.get_index(name)
        cfg = existing.get("config") or {}
        diffs = []
        if cfg.get("dimensions") != dims:
            diffs.append(f"dimensions {cfg.get('dimensions')} != {dims}")
        if cfg.get("metric") != met:
            diffs.append(f"metric {cfg.get('metric')} != {met}")
        if description is not None and existing.get("description") != description:
            diffs.append(f"description {existing.get('description')!r} != {description!r}")
        if diffs:
            raise DuplicateIndex(name, "exists with a different configuration: " + ", ".join(diffs))
        return existing

    def list_indexes(self) -> list[dict[str, Any]]:
        # like wrangler's fetchListResult: follow result_info.cursor if the API ever pages this list
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            env = self._call("GET", None, params={"cursor": cursor} if cursor else None, envelope=True)
            out.extend(env.get("result") or [])
            cursor = (env.get("result_info") or {}).get("cursor")
            if not isinstance(cursor, str) or not cursor:
                return out

    def get_index(self, name: str) -> dict[str, Any]:
        return self._call("GET", name)

    def delete_index(self, name: str, *, if_exists: bool = False) -> bool:
        try:
            self._call("DELETE", name)
        except IndexNotFound:
            if if_exists:
                return False
            raise
        return True

    def info(self, name: str) -> dict[str, Any]:
        return self._call("GET", name, "/info")

    def optimize(self, name: str) -> dict[str, Any]:
        raise UsageError("optimize is local-only: Cloudflare maintains its indexes itself; "
                         "run it without --remote (and without VZ_REMOTE) against a local store")

    # --- writes ---------------------------------------------------------------------------------
    def insert(self, name: str, stream: BinaryIO, *, source: str = "<input>", discard: bool = False,
               on_progress: Callable[[int], None] | None = None) -> WriteResult:
        return self._write(name, stream, "/insert", source, discard, on_progress)

    def upsert(self, name: str, stream: BinaryIO, *, source: str = "<input>", discard: bool = False,
               on_progress: Callable[[int], None] | None = None) -> WriteResult:
        return self._write(name, stream, "/upsert", source, discard, on_progress)

    def _write(self, name: str, stream: BinaryIO, tail: str, source: str, discard: bool,
               on_progress: Callable[[int], None] | None) -> WriteResult:
        """Validate the WHOLE input against the index's dimensions, then send it in batches.

        Remote writes cannot be all-or-nothing across requests: a bad line fails before anything is
        sent, but a server-side failure in batch k leaves batches 1..k-1 applied (docs/remote.md).
        """
        from vzcli.ndjson import LineError, read_records

        dims = (self.get_index(name).get("config") or {}).get("dimensions") or self.info(name)["dimensions"]
        errors: list[LineError] = []
        result = WriteResult(mutation_id="", count=0)
        with tempfile.TemporaryFile(prefix="vz-upload-") as tmp:
            batches = self._spool(read_records(stream, int(dims), source, discard=discard, errors=errors), tmp)
            result.discarded = len(errors)
            result.errors = [e.error.message for e in errors]
            if not batches:
                if not errors:
                    raise Unparsable(f"{source}: no vectors found; give one JSON object per line, like "
                                     '{"id": "a", "values": [0.1, 0.2]}')
                result.mutation_id = None  # type: ignore[assignment]  # every line discarded: nothing sent
                return result
            params = {"unparsable-behavior": "discard"} if discard else None
            for start, length, n in batches:
                res = self._call("POST", name, tail, params=params, body=functools.partial(_segment, tmp, start, length))
                result.mutation_id = res["mutationId"]
                result.count += n
                if on_progress:
                    on_progress(result.count)
        return result

    def _spool(self, records: Iterable[Any], tmp: IO[bytes]) -> list[tuple[int, int, int]]:
        """Write validated records as compact NDJSON to `tmp`; return the batches as (offset, bytes, records)."""
        import numpy as np

        from vzcli.records import F32_MAX
        batches: list[tuple[int, int, int]] = []
        start = size = n = 0
        for rec in records:
            values = rec.values
            if np.abs(values).max(initial=0) == F32_MAX:
                # the shortest text of float32 max (3.4028235e38) is read back as a float64 just above it,
                # which a strict server (vz serve) rejects; the exact float64 text is safe everywhere
                values = values.astype(np.float64)
            obj: dict[str, Any] = {"id": rec.id, "values": values}
            if rec.namespace is not None:
                obj["namespace"] = rec.namespace
            if rec.metadata:
                obj["metadata"] = rec.metadata
            # float32 arrays serialise as their shortest float32 text, which parses back to the same float32
            line = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
            if n and (n >= self.batch_records or size + len(line) > self.batch_bytes):
                batches.append((start, size, n))
                start, size, n = start + size, 0, 0
            tmp.write(line)
            size += len(line)
            n += 1
        if n:
            batches.append((start, size, n))
        tmp.flush()
        return batches

    def delete_by_ids(self, name: str, ids: Iterable[str]) -> WriteResult:
        id_list = _checked_ids(ids)
        result = WriteResult(mutation_id="", count=len(id_list))
        for part in _chunks(id_list, limits.DELETE_BY_IDS_MAX) or [[]]:
            result.mutation_id = self._call("POST", name, "/delete_by_ids", json={"ids": part})["mutationId"]
        return result

    # --- reads ----------------------------------------------------------------------------------
    def get_by_ids(self, name: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        id_list = _checked_ids(ids)
        if not id_list:
            return self._call("POST", name, "/get_by_ids", json={"ids": []}) or []
        found: dict[str, dict[str, Any]] = {}
        for part in _chunks(id_list, limits.GET_BY_IDS_MAX):
            for v in self._call("POST", name, "/get_by_ids", json={"ids": part}) or []:
                found[v["id"]] = v
        return [found[v] for v in id_list if v in found]  # the order asked for, as locally

    def list_vectors(self, name: str, *, count: int = limits.LIST_COUNT_DEFAULT,
                     cursor: str | None = None) -> dict[str, Any]:
        return self._call("GET", name, "/list", params={"count": count, "cursor": cursor})

    def iter_ids(self, name: str, page: int = 1000) -> Iterator[str]:
        """Every id, page by page, following nextCursor."""
        for ids in self._id_pages(name, page):
            yield from ids

    def _id_pages(self, name: str, page: int) -> Iterator[list[str]]:
        cursor = None
        while True:
            res = self.list_vectors(name, count=page, cursor=cursor)
            yield [v["id"] for v in res["vectors"]]
            cursor = res.get("nextCursor")
            if not res.get("isTruncated") or not cursor:
                return

    def export(self, name: str, *, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record as `{id, values, metadata, namespace?}` (LocalBackend.export's shape), in list order.

        list-vectors pages of 1000 ids, then get_by_ids in chunks of 20 (a few in flight at once);
        the namespace filter is applied here, since the API cannot list by namespace.
        """
        self.info(name)  # fail fast (IndexNotFound) before the first line is written
        pool = ThreadPoolExecutor(EXPORT_WORKERS)
        try:
            for ids in self._id_pages(name, EXPORT_PAGE):
                parts = pool.map(lambda p: self._call("POST", name, "/get_by_ids", json={"ids": p}) or [],
                                 _chunks(ids, limits.GET_BY_IDS_MAX))
                found = {v["id"]: v for part in parts for v in part}
                for vid in ids:
                    v = found.get(vid)  # deleted since it was listed: left out
                    if v is None or (namespace is not None and v.get("namespace") != namespace):
                        continue
                    obj: dict[str, Any] = {"id": v["id"], "values": v["values"], "metadata": v.get("metadata") or {}}
                    if v.get("namespace") is not None:
                        obj["namespace"] = v["namespace"]
                    yield obj
        finally:  # a reader that stops early (| head) must not wait for queued requests
            pool.shutdown(wait=False, cancel_futures=True)

    def query(self, name: str, *, vector: list[float] | None = None, vector_id: str | None = None,
              top_k: int = limits.TOPK_DEFAULT, return_values: bool = False, return_metadata: str = "none",
              namespace: str | None = None, filter: Any = None, exact: bool = False,
              warn: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
        if (vector is None) == (vector_id is None):
            raise UsageError("Either vector or vector-id parameter must be provided, but not both.")
        if exact:
            warn("--exact is local-only; Cloudflare always searches its approximate index")
        body: dict[str, Any] = {"topK": top_k, "returnValues": return_values, "returnMetadata": return_metadata}
        if vector is not None:
            body["vector"] = vector
        else:
            body["vectorId"] = vector_id
        if namespace is not None:
            body["namespace"] = namespace
        if filter is not None:
            body["filter"] = filter
        env = self._call("POST", name, "/query", json=body, envelope=True)
        _forward(env, warn)  # e.g. vz serve's "filter property has no metadata index"
        return env.get("result")

    # --- metadata indexes -----------------------------------------------------------------------
    def create_metadata_index(self, name: str, property_name: str, index_type: str, *, backfill: bool = False,
                              if_not_exists: bool = False, warn: Callable[[str], None] = lambda _: None
                              ) -> dict[str, Any]:
        if backfill:
            raise UsageError("--backfill is local-only: Cloudflare indexes only vectors written after the "
                             "metadata index; re-upsert older vectors to index them")
        if if_not_exists:
            for m in self.list_metadata_indexes(name)["metadataIndexes"]:
                if m.get("propertyName") == property_name and m.get("indexType") == index_type:
                    return {"mutationId": None, "created": False}
        env = self._call("POST", name, "/metadata_index/create", envelope=True,
                         json={"propertyName": property_name, "indexType": index_type})
        if not _forward(env, warn):  # Cloudflare says nothing about the vectors the new index misses
            count = self.info(name).get("vectorCount", 0)
            if count:
                warn(f"{count} existing vector(s) in {name!r} are not covered by the new metadata index on "
                     f"{property_name!r}: they stay unfilterable on it until re-upserted (as on Cloudflare).")
        return {"mutationId": env["result"]["mutationId"], "created": True}

    def list_metadata_indexes(self, name: str) -> dict[str, Any]:
        res = self._call("GET", name, "/metadata_index/list") or {}
        return {"metadataIndexes": res.get("metadataIndexes") or []}

    def delete_metadata_index(self, name: str, property_name: str, *, if_exists: bool = False) -> dict[str, Any]:
        if if_exists and not any(m.get("propertyName") == property_name
                                 for m in self.list_metadata_indexes(name)["metadataIndexes"]):
            return {"mutationId": None, "deleted": False}
        res = self._call("POST", name, "/metadata_index/delete", json={"propertyName": property_name})
        return {"mutationId": res["mutationId"], "deleted": True}


def _forward(env: dict[str, Any], warn: Callable[[str], None]) -> int:
    """Pass the envelope's `messages` to `warn`; returns how many there were."""
    msgs = [m.get("message") for m in env.get("messages") or [] if isinstance(m, dict) and m.get("message")]
    for m in msgs:
        warn(str(m))
    return len(msgs)


def _envelope(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return None


def _first_code(env: Any) -> int | None:
    if isinstance(env, dict) and env.get("success") is not True:
        errs = env.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict) and isinstance(errs[0].get("code"), int):
            return int(errs[0]["code"])
    return None


def _result(env: Any, status: int, raw: bytes, method: str, url: str) -> Any:
    """The envelope's result; its first error as a typed error; or a RemoteError for anything else.

    As in wrangler, the envelope's `success` decides, not the HTTP status.
    """
    if not raw and status in (204, 205):
        return {}
    if isinstance(env, dict):
        if env.get("success") is True:
            return env.get("result")
        errs = [e for e in env.get("errors") or [] if isinstance(e, dict)]
        if errs:
            first = errs[0]
            message = "; ".join(str(e.get("message", "")) for e in errs)
            code = first.get("code")
            raise typed_error(code if isinstance(code, int) else 1000, message, status)
    snippet = raw[:200].decode("utf-8", "replace").strip()
    raise RemoteError(f"unexpected response to {method} {url}: HTTP {status}" + (f": {snippet}" if snippet else ""),
                      status=status)


def _checked_ids(ids: Iterable[str]) -> list[str]:
    """Unique ids, validated as locally, so a bad id fails before any request with the local error."""
    from vzcli.catalog import check_id_arg as _check_id_arg

    id_list = list(dict.fromkeys(ids))
    for vid in id_list:
        _check_id_arg(vid)
    return id_list


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
