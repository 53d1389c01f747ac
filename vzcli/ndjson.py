"""Streaming NDJSON reader for vector records: bounded memory, `file:line: reason` errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from vzcli.errors import InvalidVector, Unparsable, VzError
from vzcli.records import Record, parse_record, settle_values

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
    pending: list[tuple[int, Record, list[object]]] = []

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


def _short(e: Exception) -> str:
    msg = str(e)
    return msg.split(":", 1)[0] if len(msg) > 80 else msg
