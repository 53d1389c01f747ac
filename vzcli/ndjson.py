"""Streaming NDJSON reader for vector records: bounded memory, `file:line: reason` errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from vzcli.errors import InvalidVector, Unparsable, VzError
from vzcli.records import Record, check_id, check_metadata, check_namespace, parse_record, settle_values

try:
    import simdjson
except ImportError:  # pragma: no cover (a dependency; without it every line takes the orjson path)
    simdjson = None  # type: ignore[assignment]

MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class LineError:
    line: int
    error: VzError


def _located(e: VzError, source: str, line: int) -> VzError:
    """The same error type and code, its message prefixed by `source:line: `."""
    located = type(e).__new__(type(e))
    VzError.__init__(located, f"{source}:{line}: {e.message}", code=e.code, status=e.status,
                     exit_code=e.exit_code)
    return located


BATCH = 256  # records whose values are range-checked together (`records.settle_values`)


def read_records(stream: BinaryIO, dims: int, source: str, *, discard: bool = False,
                 errors: list[LineError] | None = None) -> Iterator[Record]:
    """Yield validated records line by line.

    Blank lines, CRLF endings and a missing final newline are fine. The first bad line raises
    (with `source:line:` in the message) unless `discard` is set, in which case bad lines are
    recorded in `errors` and skipped. Values are range-checked BATCH records at a time: a record
    is yielded once its batch is settled, and errors are still raised (or recorded) in line order.
    """
    lineno = 0
    pending: list[tuple[int, Record, list[object] | bytes]] = []
    parser = simdjson.Parser() if simdjson is not None else None

    def fail(err: VzError, at: int) -> None:
        if not discard:
            raise _located(err, source, at) from None
        if errors is not None:
            errors.append(LineError(at, _located(err, source, at)))

    def settle() -> Iterator[Record]:
        recs = [r for _, r, _ in pending]
        bad = settle_values(recs, [v for _, _, v in pending], dims)
        done = list(pending)
        pending.clear()
        for (at, rec, _), err in zip(done, bad, strict=True):
            if err is None:
                yield rec
            else:
                fail(err, at)

    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            yield from settle()
            return
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # skip the rest of the overlong line
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE_BYTES + 1)
            yield from settle()  # earlier lines' errors come first
            fail(Unparsable(f"line longer than {MAX_LINE_BYTES} bytes"), lineno)
            continue
        line = raw.strip()
        if not line:
            continue
        plain = _plain(parser, line, dims) if parser is not None else None
        if plain is not None:
            pending.append((lineno, plain, line))
            if len(pending) >= BATCH:
                yield from settle()
            continue
        try:
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise Unparsable(f"not valid JSON ({_short(e)}); each line must be one JSON object like "
                                 '{"id": "a", "values": [0.1, 0.2]}') from None
            rec = parse_record(obj, dims, batched=True)
        except (InvalidVector, Unparsable) as e:
            yield from settle()  # earlier lines' errors come first
            fail(e, lineno)
            continue
        pending.append((lineno, rec, obj["values"]))
        if len(pending) >= BATCH:
            yield from settle()


def _plain(parser: Any, line: bytes, dims: int) -> Record | None:
    """The record on `line`, read by simdjson without a Python float per value, if the line is
    plain; None for anything else, which the orjson path reads, and reports, as it always has.

    Plain: a JSON object (no byte order mark) with distinct keys, whose only array is `values`
    (so it is flat: simdjson's `as_buffer` would flatten a nested one), holding `dims` numbers
    (`as_buffer` refuses booleans, nulls and strings), and whose id, namespace and metadata pass
    `parse_record`'s checks. simdjson validates the whole document (UTF-8, escapes, numbers a
    double can hold, no trailing content) before anything is read from it. The values stay
    float64 until `settle_values` converts and range-checks them with the batch."""
    first = line.find(b"[")
    if line[:1] != b"{" or first < 0 or line.find(b"[", first + 1) >= 0:
        return None
    try:
        doc = parser.parse(line)
        if not isinstance(doc, simdjson.Object):
            return None
        keys = list(doc.keys())
        if len(keys) != len(set(keys)) or "id" not in keys or "values" not in keys:
            return None
        vals = doc["values"]
        if not isinstance(vals, simdjson.Array) or len(vals) != dims:
            return None
        values: Any = vals.as_buffer(of_type="d")
        # not `doc.get`: simdjson's raises and catches a KeyError for a missing key (2.3 us a call)
        vid = doc["id"]
        ns = doc["namespace"] if "namespace" in keys else None
        md = doc["metadata"] if "metadata" in keys else None
        meta: Any = md.as_dict() if isinstance(md, simdjson.Object) else md
        del doc, vals, md  # the parser is reused: nothing may still point into its document
        rec = Record(check_id(vid), values, check_namespace(ns), *check_metadata(meta))
    except (ValueError, RuntimeError, TypeError, KeyError, InvalidVector):
        return None
    return rec


def _short(e: Exception) -> str:
    msg = str(e)
    return msg.split(":", 1)[0] if len(msg) > 80 else msg
