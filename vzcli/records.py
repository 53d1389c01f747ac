"""Vector records: validation of one record as Cloudflare defines it (reference/vectorize-api.md §10)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from vzcli.errors import InvalidVector, Unparsable
from vzcli.limits import MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_NAMESPACE_BYTES, is_utf8, utf8_len

F32_MAX = float(np.finfo(np.float32).max)

# vz's codes for the record errors Cloudflare documents no code for (README, Compatibility).
CODE_ID = 40008
CODE_DIMENSIONS = 40012
CODE_METADATA = 40011
CODE_NAMESPACE = 40010


@dataclass(slots=True)
class Record:
    id: str
    values: np.ndarray  # float32, shape (dims,)
    namespace: str | None
    metadata: dict[str, Any] | None
    metadata_json: str | None  # compact JSON, None when there is no metadata


def check_id(vid: Any) -> str:
    if not isinstance(vid, str):
        raise InvalidVector(f"id must be a string, got {_jtype(vid)}", code=CODE_ID)
    if not is_utf8(vid):
        raise InvalidVector(f"id {vid!r} is not valid UTF-8 text", code=CODE_ID)
    if "\x00" in vid:
        # SQLite's JSON functions cut text at NUL, so "a\u0000b" would match (and upsert or delete) "a"
        raise InvalidVector(f"id {vid!r} contains U+0000 (NUL), which vz does not allow in ids", code=CODE_ID)
    n = utf8_len(vid)
    if n == 0:
        raise InvalidVector("id must not be empty", code=CODE_ID)
    if n > MAX_ID_BYTES:
        raise InvalidVector(f"id too long; max is {MAX_ID_BYTES} bytes, got {n} bytes", code=CODE_ID)
    return vid


def check_namespace(ns: Any) -> str | None:
    if ns is None:
        return None
    if not isinstance(ns, str):
        raise InvalidVector(f"namespace must be a string, got {_jtype(ns)}", code=CODE_NAMESPACE)
    if not is_utf8(ns):
        raise InvalidVector(f"namespace {ns!r} is not valid UTF-8 text", code=CODE_NAMESPACE)
    n = utf8_len(ns)
    if n == 0 or n > MAX_NAMESPACE_BYTES:
        raise InvalidVector(f"namespace must be 1-{MAX_NAMESPACE_BYTES} bytes, got {n} bytes", code=CODE_NAMESPACE)
    return ns


# float32's largest finite value plus half its last unit: anything smaller in magnitude rounds to
# a finite float32 (FLT_MAX itself, as numpy prints it, is 3.4028235e+38)
_F32_ROUNDS_TO_INF = 2.0**128 - 2.0**103


def _screen(m: np.ndarray) -> tuple[Any, Any]:
    """Over the last axis of float32 values: whether each row is finite (a value past float32's
    range became infinite on conversion), and whether it holds a 0 or a 1 (where a boolean may
    hide). The check of a batch (`settle_values`); `_finite_without_bools` is the same check of
    one vector in fewer steps (tests/test_records.py holds the two equal)."""
    return np.isfinite(m).all(axis=-1), ((m == 0) | (m == 1)).any(axis=-1)


_PACKERS: dict[int, struct.Struct] = {}


def _packed(values: list[Any], dims: int) -> bytes | None:
    """The usual case of a list of `dims` numbers, as float32 bytes; None if an item is not a
    number. One pass that takes nothing else (no string, null or nested array; faster than numpy's
    own conversion, which first discovers the list's type and shape, and twice as fast as
    `array.array("f")`, which parses a format string per item) straight to float32: struct's
    native "f" is C's double-to-float conversion, as array's is (checked alike item by item in
    tests/test_records.py), which rounds to nearest: a value becomes infinite exactly when it is
    _F32_ROUNDS_TO_INF or more in magnitude, and NaN stays NaN. Booleans pass as 0.0 and 1.0, so
    only a vector holding one of those needs the (slower) look at each type."""
    packer = _PACKERS.get(dims)
    if packer is None:
        packer = _PACKERS[dims] = struct.Struct(f"@{dims}f")  # native: no overflow check, no padding
    try:
        return packer.pack(*values)
    except (struct.error, TypeError, ValueError, OverflowError):
        return None


# float32 0.0, -0.0 and 1.0 as packed: a vector whose bytes hold none of them holds no boolean
_ZERO, _NEG_ZERO, _ONE = (struct.pack("@f", v) for v in (0.0, -0.0, 1.0))


def _finite_without_bools(raw: bytes, f32: np.ndarray, values: list[Any]) -> bool:
    """`_screen` for one packed vector, in fewer steps (the query path): every value finite, and
    no boolean among `values`, looked for only when the bytes hold a 0 or a 1 (a match across two
    values only costs that look)."""
    if not np.isfinite(f32).all():
        return False
    return not ((_ZERO in raw or _NEG_ZERO in raw or _ONE in raw) and bool in map(type, values))


def check_vector(values: Any, dims: int, vid: str, *, code: int = CODE_DIMENSIONS,
                 what: str = "vector") -> np.ndarray:
    """`values` as float32, exactly `dims` finite numbers that fit in float32."""
    prefix = f'invalid {what} for id="{vid}", ' if vid else f"invalid {what}, "
    if not isinstance(values, list):
        raise InvalidVector(prefix + f"values must be an array of numbers, got {_jtype(values)}", code=code)
    if len(values) != dims:
        raise InvalidVector(prefix + f"expected {dims} dimensions, and got {len(values)} dimensions", code=code)
    raw = _packed(values, dims)
    if raw is not None:
        f32 = np.frombuffer(raw, dtype=np.float32)
        if _finite_without_bools(raw, f32, values):
            return f32
    try:
        arr = np.array(values)
    except (TypeError, ValueError, OverflowError):
        arr = None
    if bool in map(type, values):
        raise InvalidVector(prefix + "values must be numbers, not booleans", code=code)
    if arr is None:
        raise InvalidVector(prefix + "values must all be numbers", code=code)
    if arr.ndim != 1 or arr.dtype.kind not in "fib":
        # strings, nested arrays, nulls, or integers too large for any float
        raise InvalidVector(prefix + "values must all be numbers that fit in float32", code=code)
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InvalidVector(prefix + "values must be finite numbers (no NaN or Infinity)", code=code)
    with np.errstate(over="ignore"):
        f32 = arr.astype(np.float32)
    # a value that rounds to float32's largest finite value (as numpy prints it: 3.4028235e+38) fits
    if not np.isfinite(f32).all():
        raise InvalidVector(prefix + "values must fit in float32 (|x| <= 3.4028235e38)", code=code)
    return f32


def check_metadata(md: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Validated metadata and its compact JSON (None when absent or empty)."""
    if md is None:
        return None, None
    if not isinstance(md, dict):
        raise InvalidVector(f"metadata must be a JSON object, got {_jtype(md)}", code=CODE_METADATA)
    if not md:
        return None, None
    _check_meta_object(md, "")
    try:
        raw = orjson.dumps(md)
    except (TypeError, orjson.JSONEncodeError) as e:
        raise InvalidVector(f"metadata cannot be encoded as JSON: {e}", code=CODE_METADATA) from None
    if len(raw) > MAX_METADATA_BYTES:
        raise InvalidVector(f"metadata too large; max is {MAX_METADATA_BYTES} bytes, got {len(raw)} bytes",
                            code=CODE_METADATA)
    return md, raw.decode()


def _check_meta_object(obj: dict[str, Any], path: str, depth: int = 0) -> None:
    if depth > 32:
        raise InvalidVector("metadata is nested more than 32 levels deep", code=CODE_METADATA)
    for k, v in obj.items():
        where = f"{path}.{k}" if path else k
        if not k:
            raise InvalidVector(f"metadata key at '{path or '(top level)'}' is empty", code=CODE_METADATA)
        if "." in k or '"' in k or k.startswith("$"):
            raise InvalidVector(f"metadata key {k!r} is invalid: keys cannot contain '.' or '\"' or start with '$'",
                                code=CODE_METADATA)
        if isinstance(v, bool) or isinstance(v, str):
            continue
        if isinstance(v, (int, float)):
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidVector(f"metadata value at '{where}' is not a finite number", code=CODE_METADATA)
            continue
        if isinstance(v, dict):
            _check_meta_object(v, where, depth + 1)
            continue
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            continue
        raise InvalidVector(f"metadata value at '{where}' must be a string, number, boolean, string array or "
                            f"object, got {_jtype(v)}", code=CODE_METADATA)


def parse_record(obj: Any, dims: int, *, batched: bool = False) -> Record:
    """Validate one decoded NDJSON object (raises InvalidVector / Unparsable).

    `batched`: leave the values as packed float32 bytes (`_packed`), checked for everything but their
    range and booleans, which `settle_values` checks for many records at once (it costs one numpy
    call a check either way: per batch instead of per record)."""
    if not isinstance(obj, dict):
        raise Unparsable(f"expected a JSON object with \"id\" and \"values\", got {_jtype(obj)}")
    if "id" not in obj:
        raise InvalidVector('missing "id"', code=CODE_ID)
    vid = check_id(obj["id"])
    if "values" not in obj:
        raise InvalidVector(f'invalid vector for id="{vid}", missing "values"', code=CODE_DIMENSIONS)
    values: Any = _numbers(obj["values"], dims, vid) if batched else check_vector(obj["values"], dims, vid)
    ns = check_namespace(obj.get("namespace"))
    md, md_json = check_metadata(obj.get("metadata"))
    return Record(vid, values, ns, md, md_json)


def _numbers(values: Any, dims: int, vid: str) -> bytes:
    """`values` as packed float32 (`_packed`) if it is a list of `dims` numbers, else
    `check_vector`'s error. A value past float32's range becomes infinite here, exactly when
    `check_vector` refuses it (C's double-to-float conversion rounds to nearest: infinite from
    _F32_ROUNDS_TO_INF up)."""
    if isinstance(values, list) and len(values) == dims:
        raw = _packed(values, dims)
        if raw is not None:
            return raw
    check_vector(values, dims, vid)  # raises: no other list gets here
    raise AssertionError("unreachable")


def settle_values(records: list[Record], raw: list[list[Any] | bytes], dims: int) -> list[InvalidVector | None]:
    """Finish `parse_record(..., batched=True)` for `records`: each record's values become a
    float32 array, or its entry in the result is the error `check_vector` gives it (None for the
    good ones). `raw`: each record's values list, or the line of a record `ndjson` read with
    simdjson (its values are float64 and cannot hold a boolean; the line is read again only to
    report an error)."""
    if not records:
        return []
    mat = _rows([r.values for r in records], dims)
    ok, zero_one = _screen(mat)
    out: list[InvalidVector | None] = []
    for i, rec in enumerate(records):
        values = raw[i]
        if ok[i] and not (zero_one[i] and not isinstance(values, bytes) and bool in map(type, values)):
            rec.values = mat[i]
            out.append(None)
            continue
        try:
            rec.values = check_vector(orjson.loads(values)["values"] if isinstance(values, bytes) else values,
                                      dims, rec.id)
            out.append(None)
        except InvalidVector as e:
            out.append(e)
    return out


def _rows(parts: list[Any], dims: int) -> np.ndarray:
    """float32 rows from packed float32 parts (`bytes`, `_numbers`) and float64 buffers
    (simdjson's, rounded to nearest as C's double-to-float conversion in `_packed` rounds: a row
    gets the same bits either way)."""
    f32 = [isinstance(p, bytes) for p in parts]
    if all(f32):
        return np.frombuffer(b"".join(parts), dtype=np.float32).reshape(len(parts), dims)
    with np.errstate(over="ignore"):
        if not any(f32):
            return np.frombuffer(b"".join(parts), dtype=np.float64).reshape(len(parts), dims).astype(np.float32)
        return np.stack([np.frombuffer(p, dtype=np.float32 if f else np.float64).astype(np.float32, copy=False)
                         for p, f in zip(parts, f32, strict=True)])


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__
