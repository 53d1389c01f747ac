"""Metadata filters: validation (exactly per Cloudflare's docs), SQL compilation, and a reference evaluator.

Semantics (reference/vectorize-api.md §2; the choices the docs leave open are in the README's
Compatibility section):

* implicit `$eq`; operators `$eq $ne $in $nin $lt $lte $gt $gte`; implicit AND across keys;
* a property is filterable only through a metadata index; a clause on a property without one
  matches nothing;
* a vector "has" a property when a value of the metadata index's type was indexed for it when the
  vector was written. A vector lacking the property matches `$eq: null` and `$in` lists holding
  null, and never matches `$ne` or `$nin`;
* a filter value of another type than the metadata index never matches (inside `$in`/`$nin` such
  values are ignored); strings compare on their first 64 bytes, lexicographically by bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from vzcli.errors import InvalidFilter
from vzcli.limits import FILTER_KEY_MAX_CHARS, FILTER_MAX_BYTES, is_utf8, truncate_utf8

SCALAR_OPS = ("$eq", "$ne")
SET_OPS = ("$in", "$nin")
LOWER_OPS = ("$gt", "$gte")
UPPER_OPS = ("$lt", "$lte")
ALL_OPS = SCALAR_OPS + SET_OPS + LOWER_OPS + UPPER_OPS
SQL_CMP = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
# A valid filter is at most 3 levels deep ({"property": {"$in": [values]}}); the limit leaves room
# for the clearer type errors of a few extra levels and stops a deep one before it is re-encoded.
FILTER_MAX_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Clause:
    prop: str
    ops: tuple[tuple[str, Any], ...]  # ((op, value), ...), one or two (a range)


@dataclass(frozen=True, slots=True)
class Filter:
    clauses: tuple[Clause, ...]

    @property
    def props(self) -> list[str]:
        return [c.prop for c in self.clauses]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or _is_number(v)


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def _too_deep() -> InvalidFilter:
    return InvalidFilter(f"filter is nested too deeply: at most {FILTER_MAX_DEPTH} levels of objects and "
                         "arrays are allowed, and a filter needs 3 at most, e.g. {\"genre\": {\"$in\": [\"a\", \"b\"]}}")


def _check_depth(raw: Any) -> None:
    stack = [(raw, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > FILTER_MAX_DEPTH:
            raise _too_deep()
        stack.extend((c, depth + 1) for c in children)


def parse_filter(raw: Any) -> Filter:
    """Validate a decoded filter object; raises InvalidFilter with a message that says how to fix it."""
    if not isinstance(raw, dict) or not raw:
        raise InvalidFilter("filter must be a non-empty JSON object, e.g. {\"genre\": \"drama\"}")
    _check_depth(raw)
    try:
        size = len(orjson.dumps(raw))
    except (TypeError, orjson.JSONEncodeError) as e:
        raise InvalidFilter(f"filter is not valid JSON: {e}") from None
    if size >= FILTER_MAX_BYTES:
        raise InvalidFilter(f"filter must be less than {FILTER_MAX_BYTES} bytes as compact JSON, got {size} bytes")
    clauses = []
    for key, value in raw.items():
        _check_key(key)
        clauses.append(Clause(key, _parse_ops(key, value)))
    return Filter(tuple(clauses))


def parse_query_filter(raw: Any) -> Filter | None:
    """A query's filter: None for no filter. An empty object is no filter too, not an error:
    clients send `filter: {}` on every unfiltered query (Mastra's Vectorize store does, through
    the `cloudflare` SDK) and Cloudflare accepts it (README, Compatibility)."""
    if raw is None or (isinstance(raw, dict) and not raw):
        return None
    return parse_filter(raw)


def load_filter_json(text: str | bytes) -> Any:
    """Decode a filter given as JSON text (the CLI's --filter); InvalidFilter when it is not JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "recursion" in str(e).lower():
            raise _too_deep() from None
        raise InvalidFilter(f"filter is not valid JSON ({e}); quote it for the shell, e.g. "
                            "--filter '{\"genre\": \"drama\", \"year\": {\"$gte\": 2000}}'") from None


def parse_filter_json(text: str) -> Filter:
    return parse_filter(load_filter_json(text))


def _check_key(key: str) -> None:
    if not key:
        raise InvalidFilter("filter keys cannot be empty")
    if not is_utf8(key):
        raise InvalidFilter(f"filter key {key!r} is not valid UTF-8 text")
    if '"' in key:
        raise InvalidFilter(f"filter key {key!r} cannot contain '\"'")
    if key.startswith("$"):
        raise InvalidFilter(f"filter key {key!r} cannot start with '$' (operators go inside a property, "
                            "e.g. {\"year\": {\"$gt\": 2000}}; there is no $and/$or)")
    if len(key) > FILTER_KEY_MAX_CHARS:
        raise InvalidFilter(f"filter key is {len(key)} characters long; at most {FILTER_KEY_MAX_CHARS} allowed")
    if any(not part for part in key.split(".")):
        raise InvalidFilter(f"filter key {key!r} has an empty segment: '.' separates nested properties")


def _parse_ops(key: str, value: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, list):
        raise InvalidFilter(f"filter value for {key!r} is an array; use {{\"$in\": [...]}} to match any of several values")
    if not isinstance(value, dict):
        _check_scalar(key, "$eq", value)
        return (("$eq", value),)
    if not value:
        raise InvalidFilter(f"filter value for {key!r} is an empty object; give an operator such as {{\"$eq\": ...}}")
    for op in value:
        if op not in ALL_OPS:
            if not op.startswith("$"):
                raise InvalidFilter(f"filter value for {key!r} is a nested object; use a dotted key such as "
                                    f"'{key}.{op}' to filter on nested properties")
            raise InvalidFilter(f"unknown operator {op!r} for {key!r}; use one of {', '.join(ALL_OPS)}")
    ops = list(value.items())
    if len(ops) == 2:
        names = {op for op, _ in ops}
        if not (names & set(LOWER_OPS) and names & set(UPPER_OPS)):
            raise InvalidFilter(f"operators {' and '.join(sorted(names))} cannot be combined on {key!r}: only a "
                                "lower bound ($gt/$gte) with an upper bound ($lt/$lte) may share a property")
    elif len(ops) > 2:
        raise InvalidFilter(f"too many operators on {key!r}: at most a lower and an upper bound")
    for op, v in ops:
        if op in SCALAR_OPS:
            _check_scalar(key, op, v)
        elif op in SET_OPS:
            if not isinstance(v, list):
                raise InvalidFilter(f"{op} on {key!r} needs an array of strings, numbers, booleans or null")
            for item in v:
                _check_scalar(key, op, item)
        else:
            if not (isinstance(v, str) or _is_number(v)):
                raise InvalidFilter(f"{op} on {key!r} needs a string or a number, got {_json(v)}")
            _check_finite(key, op, v)
    return tuple(ops)


def _check_scalar(key: str, op: str, v: Any) -> None:
    if not _is_scalar(v):
        raise InvalidFilter(f"{op} on {key!r} needs a string, number, boolean or null, got {_json(v)}")
    _check_finite(key, op, v)


def _check_finite(key: str, op: str, v: Any) -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise InvalidFilter(f"{op} on {key!r} needs a finite number")


# --- typed values -----------------------------------------------------------------------------

def value_type(v: Any) -> str | None:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, str):
        return "string"
    if _is_number(v):
        return "number"
    return None


def to_index_value(v: Any, index_type: str) -> Any:
    """The stored form of `v` for a metadata index of `index_type`, or None if the type differs."""
    if value_type(v) != index_type:
        return None
    if index_type == "string":
        return truncate_utf8(v)
    if index_type == "number":
        return float(v)
    return 1 if v else 0


def from_index_value(v: Any, index_type: str) -> Any:
    if index_type == "boolean":
        return bool(v)
    if index_type == "number":
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    return v


def extract(metadata: dict[str, Any] | None, prop: str) -> Any:
    """Follow a dotted path (`pandas.nice` reads {"pandas": {"nice": ...}}); None when absent."""
    cur: Any = metadata
    for part in prop.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


# --- SQL compilation --------------------------------------------------------------------------

@dataclass(slots=True)
class Compiled:
    """SQL conditions on `vectors v`, with parameters; `unindexed` lists properties with no metadata index.

    `probes` are per-row conditions, one per clause. The most selective positive clause also has a
    *driver*, `SELECT m.key FROM mvals m WHERE ...`, an index range scan that enumerates candidates;
    when the driver is used, its own probe is left out.
    """

    probes: list[tuple[str, list[Any]]] = field(default_factory=list)
    driver: str | None = None
    driver_params: list[Any] = field(default_factory=list)
    driver_probe: int = -1  # index in `probes` of the clause the driver enumerates
    never: bool = False  # some clause can never match
    unindexed: list[str] = field(default_factory=list)

    def where(self, *, drive: bool) -> tuple[str, list[Any]]:
        if self.never:
            return "0", []
        parts: list[str] = []
        params: list[Any] = []
        use_driver = drive and self.driver is not None
        if use_driver:
            parts.append(f"v.key IN ({self.driver})")
            params.extend(self.driver_params)
        for i, (sql, p) in enumerate(self.probes):
            if use_driver and i == self.driver_probe:
                continue
            parts.append(sql)
            params.extend(p)
        return (" AND ".join(parts) if parts else "1"), params

    @property
    def driver_only(self) -> bool:
        """True when the driver alone decides membership (one clause): counts need no join."""
        return self.driver is not None and len(self.probes) == 1 and not self.never


_EXISTS = "EXISTS (SELECT 1 FROM mvals m WHERE m.key = v.key AND m.prop_id = ?{cond})"
_MISSING = "NOT EXISTS (SELECT 1 FROM mvals m WHERE m.key = v.key AND m.prop_id = ?)"


def compile_filter(flt: Filter, meta_indexes: dict[str, tuple[int, str]]) -> Compiled:
    """Compile to SQL. `meta_indexes` maps property name -> (metadata index id, type)."""
    out = Compiled()
    drivers: list[tuple[int, str, list[Any], str, list[Any]]] = []  # (rank, drive sql, params, probe, params)
    for clause in flt.clauses:
        if clause.prop not in meta_indexes:
            out.unindexed.append(clause.prop)
            out.never = True
            continue
        pid, itype = meta_indexes[clause.prop]
        compiled = _compile_clause(clause, pid, itype)
        if compiled is None:
            out.never = True
            continue
        rank, dsql, dparams, psql, pparams = compiled
        drivers.append((rank, dsql, dparams, psql, pparams))
    if out.never:
        return out
    # The most selective positive clause drives candidate enumeration; the rest are probed per row.
    drivers.sort(key=lambda d: d[0])
    for i, (_rank, dsql, dparams, psql, pparams) in enumerate(drivers):
        if i == 0 and dsql:
            out.driver, out.driver_params, out.driver_probe = dsql, dparams, 0
        out.probes.append((psql, pparams))
    return out


def _compile_clause(c: Clause, pid: int, itype: str) -> tuple[int, str, list[Any], str, list[Any]] | None:
    """(rank, drive sql or "", drive params, probe sql, probe params), or None if it never matches."""
    ops = dict(c.ops)
    drive = "SELECT m.key FROM mvals m WHERE m.prop_id = ?{cond}"
    if "$eq" in ops:
        v = ops["$eq"]
        if v is None:
            return 9, "", [], _MISSING, [pid]
        iv = to_index_value(v, itype)
        if iv is None:
            return None
        return 0, drive.format(cond=" AND m.val = ?"), [pid, iv], _EXISTS.format(cond=" AND m.val = ?"), [pid, iv]
    if "$ne" in ops:
        v = ops["$ne"]
        if v is None:
            return 8, "", [], _EXISTS.format(cond=""), [pid]
        iv = to_index_value(v, itype)
        if iv is None:
            return None
        return 7, "", [], _EXISTS.format(cond=" AND m.val != ?"), [pid, iv]
    if "$in" in ops:
        items = ops["$in"]
        typed = _typed_unique(items, itype)
        has_null = any(x is None for x in items)
        if not typed and not has_null:
            return None
        marks = ",".join("?" * len(typed))
        if has_null:
            probe = _MISSING if not typed else f"({_MISSING} OR {_EXISTS.format(cond=f' AND m.val IN ({marks})')})"
            return 9, "", [], probe, [pid] + ([pid, *typed] if typed else [])
        cond = f" AND m.val IN ({marks})"
        return 1, drive.format(cond=cond), [pid, *typed], _EXISTS.format(cond=cond), [pid, *typed]
    if "$nin" in ops:
        typed = _typed_unique(ops["$nin"], itype)
        if not typed:
            return 8, "", [], _EXISTS.format(cond=""), [pid]
        marks = ",".join("?" * len(typed))
        return 7, "", [], _EXISTS.format(cond=f" AND m.val NOT IN ({marks})"), [pid, *typed]
    # a range: one or two bounds
    conds, params = [], []
    for op, v in c.ops:
        iv = to_index_value(v, itype)
        if iv is None or itype == "boolean":
            return None
        conds.append(f" AND m.val {SQL_CMP[op]} ?")
        params.append(iv)
    cond = "".join(conds)
    return 2, drive.format(cond=cond), [pid, *params], _EXISTS.format(cond=cond), [pid, *params]


def _typed_unique(items: list[Any], itype: str) -> list[Any]:
    out: list[Any] = []
    for x in items:
        iv = to_index_value(x, itype) if x is not None else None
        if iv is not None and iv not in out:
            out.append(iv)
    return out


# --- reference evaluator ----------------------------------------------------------------------

def evaluate(flt: Filter, indexed: dict[str, Any], meta_types: dict[str, str]) -> bool:
    """Brute-force evaluation against a vector's indexed values (`prop -> stored value`, absent when
    not indexed). The planner's SQL must agree with this for every filter and every vector."""
    for c in flt.clauses:
        if c.prop not in meta_types:
            return False
        itype = meta_types[c.prop]
        have = indexed.get(c.prop)
        if not _eval_clause(c, have, itype):
            return False
    return True


def _eval_clause(c: Clause, have: Any, itype: str) -> bool:
    ops = dict(c.ops)
    if "$eq" in ops:
        v = ops["$eq"]
        if v is None:
            return have is None
        iv = to_index_value(v, itype)
        return iv is not None and have is not None and have == iv
    if "$ne" in ops:
        v = ops["$ne"]
        if v is None:
            return have is not None
        iv = to_index_value(v, itype)
        return iv is not None and have is not None and have != iv
    if "$in" in ops:
        typed = _typed_unique(ops["$in"], itype)
        if have is None:
            return any(x is None for x in ops["$in"])
        return have in typed
    if "$nin" in ops:
        typed = _typed_unique(ops["$nin"], itype)
        return have is not None and have not in typed
    if have is None or itype == "boolean":
        return False
    for op, v in c.ops:
        iv = to_index_value(v, itype)
        if iv is None:
            return False
        if itype == "string":
            a, b = have.encode("utf-8", "surrogatepass"), iv.encode("utf-8", "surrogatepass")
        else:
            a, b = have, iv
        ok = {"$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]
        if not ok:
            return False
    return True
