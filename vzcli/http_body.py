"""Reading and parsing request bodies for `vz serve` (vzcli.server).

A body is read once, chunk by chunk as it arrives, into one buffer (`Body`), and everything after
that works in place on that buffer: the multipart field `vectors` is a `Span` of it, the NDJSON
reader (`SpanReader`) copies one line at a time, and the newline count that guards the
5000-vector cap is taken as the chunks arrive. Before, a body was joined from its chunks (a second
copy), split at the multipart boundaries (a third) and sliced again (issue 18 measured four 95 MB
bodies at once at 811 MB; docs/server.md, Security, has this checkout's figures).

Reading is bounded in size (`limits.BODY_MAX_BYTES`, 413) and in time (`timeout` for the whole
body from when its reading starts, 408 and the connection closed); a client that goes away mid-body raises
`ClientGone`, which the app answers with nothing and one log line at most.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from vzcli import limits
from vzcli.errors import BodyTooLarge, VzError

BAD_JSON = 40026
READ_TIMEOUT = (7008, "Request timeout")


class ApiError(VzError):
    """A request-level failure raised by the HTTP layer itself (never by the core)."""


class ClientGone(Exception):
    """The client closed the connection before its request was read: there is no one to answer."""


def bad_body(detail: str) -> ApiError:
    return ApiError(f"Failed to parse the request body as JSON: {detail}", code=BAD_JSON)


def too_large(size: int) -> BodyTooLarge:
    return BodyTooLarge(f"request body too large; max is {limits.BODY_MAX_BYTES} bytes (100 MB), "
                        f"got {'at least ' if size else ''}{size} bytes")


class Body:
    """A request body read into one buffer, with the number of newlines it holds."""

    __slots__ = ("data", "newlines")

    def __init__(self, data: bytearray | bytes, newlines: int) -> None:
        self.data = data
        self.newlines = newlines

    def __len__(self) -> int:
        return len(self.data)


async def read_body(receive: Callable[[], Awaitable[Any]], headers: Any, *,
                    timeout: float | None, limit: int = limits.BODY_MAX_BYTES) -> Body:
    """The whole body, refusing (413) as soon as it passes `limit` bytes, declared or streamed.

    With a declared Content-Length the buffer is allocated once at that size; a chunked body grows
    one bytearray. `timeout` bounds the whole read; then the request fails with 408 (the app sends
    it with `connection: close`, so a client that stalls mid-body loses its connection).
    """
    declared = headers.get("content-length")
    size_hint = int(declared) if declared is not None and declared.isdigit() else None
    if size_hint is not None and size_hint > limit:
        raise too_large(size_hint)
    buf = bytearray()
    newlines = 0
    # asyncio.timeout_at, not wait_for: wait_for (Python 3.11) wraps each receive() in a task of its
    # own (measured: a small query's wall time over HTTP 0.96x, rounds 0.90-1.08x, without it)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    while True:
        if deadline is None:
            message = await receive()
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise ApiError(f"the request body did not arrive within {timeout:g} seconds "
                               "(vz serve --read-timeout)", code=READ_TIMEOUT[0], status=408) from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            if len(buf) + len(chunk) > limit:
                raise too_large(len(buf) + len(chunk))
            buf += chunk
            newlines += chunk.count(b"\n")
        if not message.get("more_body", False):
            return Body(buf, newlines)


# --- JSON bodies ------------------------------------------------------------------------------------
def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json", "text/json") or media.endswith("+json")


def json_object(raw: Body, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object (40026 otherwise); with `optional`, a blank body is `{}`."""
    if not raw.data.strip():
        if optional:
            return {}
        raise bad_body("EOF while parsing a value at line 1 column 0")
    try:
        obj = orjson.loads(raw.data)
    except orjson.JSONDecodeError as e:
        raise bad_body(str(e)) from None
    if not isinstance(obj, dict):
        raise bad_body(f"invalid type: {json_kind(obj)}, expected an object")
    return obj


def json_kind(v: Any) -> str:
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


# --- insert/upsert bodies -------------------------------------------------------------------------
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.I)
_DISPOSITION_NAME = re.compile(rb'name="([^"]*)"', re.I)

Buffer = bytes | bytearray


class Span:
    """`data[start:end]` without the copy a slice would make."""

    __slots__ = ("data", "start", "end")

    def __init__(self, data: Buffer, start: int = 0, end: int | None = None) -> None:
        self.data, self.start, self.end = data, start, len(data) if end is None else end

    def tobytes(self) -> bytes:
        return bytes(self.data[self.start:self.end])


def ndjson_payload(body: Buffer, content_type: str) -> Span:
    """Where the NDJSON is inside an insert/upsert body (no copy).

    Accepted, whatever the content type says: multipart/form-data with the field `vectors`
    (wrangler's and Cloudflare's documented form), raw NDJSON (x-ndjson, json, octet-stream: the
    `cloudflare` SDK sends application/json) and a JSON *string* holding NDJSON (what the SDK sends
    when given a `str`; only that one is decoded into a new buffer).
    """
    if content_type.split(";", 1)[0].strip().lower() == "multipart/form-data":
        return _multipart_field(body, content_type, "vectors")
    head = body[:64].lstrip()[:1]
    if head == b'"':
        try:
            s = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Span(body)
        if isinstance(s, str):
            return Span(s.encode("utf-8"))
    return Span(body)


def _multipart_field(data: Buffer, content_type: str, field: str) -> Span:
    """The content of the first part named `field`, found with `find` on the buffer: no part is
    copied (splitting at the boundaries copied the whole body once more)."""
    m = _BOUNDARY.search(content_type)
    if not m:
        raise ApiError("multipart/form-data body without a boundary", code=BAD_JSON)
    delim = b"--" + (m.group(1) or m.group(2)).encode("latin-1")
    names = []
    pos = data.find(delim)
    while pos >= 0:
        start = pos + len(delim)
        if data[start:start + 2] == b"--":  # the closing delimiter
            break
        nxt = data.find(delim, start)
        end = nxt if nxt >= 0 else len(data)
        if data[start:start + 2] == b"\r\n":
            start += 2
        else:
            while start < end and data[start:start + 1] == b"\n":
                start += 1
        sep = data.find(b"\r\n\r\n", start, end)
        if sep >= 0:
            head_end, content = sep, sep + 4
        else:
            sep = data.find(b"\n\n", start, end)
            head_end, content = (sep, sep + 2) if sep >= 0 else (end, end)
        nm = _DISPOSITION_NAME.search(bytes(data[start:head_end]))
        name = nm.group(1).decode("utf-8", "replace") if nm else ""
        if name == field:
            stop = end
            if stop - 2 >= content and data[stop - 2:stop] == b"\r\n":
                stop -= 2
            elif stop - 1 >= content and data[stop - 1:stop] == b"\n":
                stop -= 1
            return Span(data, content, stop)
        names.append(name)
        pos = nxt
    raise ApiError(f"multipart/form-data body has no `{field}` field (got: {', '.join(names) or 'none'}); "
                   "send the NDJSON as the file field `vectors`", code=40023)


def count_records(ndjson: Span, newlines: int | None = None, cap: int = limits.BATCH_MAX) -> int:
    """Non-blank lines in `ndjson`, counted exactly only when the newline count could pass `cap`
    (`newlines`, when given, is an upper bound taken while the body arrived)."""
    if newlines is None:
        newlines = ndjson.data.count(b"\n", ndjson.start, ndjson.end)
    if newlines < cap:
        return cap  # at most `cap` lines: cannot be over
    reader = SpanReader(ndjson)
    n = 0
    while line := reader.readline():
        n += bool(line.strip())
    return n


class SpanReader:
    """A read-only binary stream over a `Span` that copies only what each call returns (the
    NDJSON reader asks for one line at a time), for `LocalBackend.insert`/`upsert`."""

    def __init__(self, span: Span) -> None:
        self._data, self._pos, self._end = span.data, span.start, span.end

    def readline(self, limit: int = -1) -> bytes:
        pos = self._pos
        end = self._end if limit is None or limit < 0 else min(self._end, pos + limit)
        if pos >= end:
            return b""
        nl = self._data.find(b"\n", pos, end)
        stop = end if nl < 0 else nl + 1
        self._pos = stop
        return bytes(self._data[pos:stop])

    def read(self, n: int = -1) -> bytes:
        end = self._end if n is None or n < 0 else min(self._end, self._pos + n)
        out = bytes(self._data[self._pos:end])
        self._pos = end
        return out

    def readable(self) -> bool:
        return True
