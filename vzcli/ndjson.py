"""Streaming NDJSON reader for vector records: bounded memory, `file:line: reason` errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

from vzcli.errors import InvalidVector, Unparsable, VzError
from vzcli.records import Record, parse_record

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


def read_records(stream: BinaryIO, dims: int, source: str, *, discard: bool = False,
                 errors: list[LineError] | None = None) -> Iterator[Record]:
    """Yield validated records line by line.

    Blank lines, CRLF endings and a missing final newline are fine. The first bad line raises
    (with `source:line:` in the message) unless `discard` is set, in which case bad lines are
    recorded in `errors` and skipped.
    """
    lineno = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            err: VzError = Unparsable(f"line longer than {MAX_LINE_BYTES} bytes")
            # skip the rest of the overlong line
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE_BYTES + 1)
            if not discard:
                raise _located(err, source, lineno)
            if errors is not None:
                errors.append(LineError(lineno, _located(err, source, lineno)))
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
            yield parse_record(obj, dims)
        except (InvalidVector, Unparsable) as e:
            located = _located(e, source, lineno)
            if not discard:
                raise located from None
            if errors is not None:
                errors.append(LineError(lineno, located))


def _short(e: Exception) -> str:
    msg = str(e)
    return msg.split(":", 1)[0] if len(msg) > 80 else msg
