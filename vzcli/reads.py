"""Reads: query, get by id, list and export; never a write, so any number run at once."""

from __future__ import annotations

import base64
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from vzcli import limits
from vzcli.catalog import check_id_arg as _check_id_arg
from vzcli.catalog import index_row as _row
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.errors import (
    WARN_UNINDEXED_FILTER,
    BadCursor,
    InvalidVector,
    Notice,
    QueryDimensionMismatch,
    TopKTooLarge,
    UsageError,
    VectorNotFound,
    VzError,
)
from vzcli.snapshot import Snapshot, snapshot
from vzcli.store import Store, json_keys

Warn = Callable[[str], None]
CURSOR_TTL = 3600
QUICK_SCAN = 1 << 20  # floats (4 MiB) an exact scan may read in a query `quick_query` calls quick


def _noop(_: str) -> None:
    pass


def _details(conn: sqlite3.Connection, keys: list[int], values: bool) -> dict[int, tuple[Any, ...]]:
    """key -> (id, namespace, metadata[, vec]) of the live records among `keys`."""
    if not keys:
        return {}
    cols = "key, id, namespace, metadata, vec" if values else "key, id, namespace, metadata"
    return {r[0]: r[1:] for r in conn.execute(
        f"SELECT {cols} FROM vectors WHERE key IN (SELECT value FROM json_each(?))", (json_keys(keys),))}


def _vec_list(blob: bytes) -> list[float]:
    import numpy as np

    return np.frombuffer(blob, dtype=np.float32).astype(np.float64).tolist()

class Reads:
    """The read half of `LocalBackend` (a mixin: `store` and `resident` are set by it)."""

    store: Store
    resident: bool

    def get_by_ids(self, name: str, ids: Iterable[str]) -> list[dict[str, Any]]:
        id_list = list(dict.fromkeys(ids))
        for vid in id_list:
            _check_id_arg(vid)
        with self.store.read() as conn:
            row = _row(conn, name)
            assert conn is not None
            out: dict[str, dict[str, Any]] = {}
            for i in range(0, len(id_list), 5000):
                part = orjson.dumps(id_list[i:i + 5000]).decode()
                for vid, ns, md, vec in conn.execute(
                        "SELECT id, namespace, metadata, vec FROM vectors WHERE index_id = ? AND id IN "
                        "(SELECT value FROM json_each(?))", (row["id"], part)):
                    out[vid] = _vector_object(vid, ns, md, vec)
            return [out[v] for v in id_list if v in out]

    def list_vectors(self, name: str, *, count: int = limits.LIST_COUNT_DEFAULT,
                     cursor: str | None = None) -> dict[str, Any]:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= limits.LIST_COUNT_MAX:
            raise UsageError(f"count must be between 1 and {limits.LIST_COUNT_MAX}, got {count}", code=40051)
        with self.store.read() as conn:
            row = _row(conn, name)
            assert conn is not None
            after = _decode_cursor(cursor, row) if cursor else None
            if after is None:
                rows = conn.execute("SELECT id FROM vectors WHERE index_id = ? ORDER BY id LIMIT ?",
                                    (row["id"], count + 1)).fetchall()
            else:
                rows = conn.execute("SELECT id FROM vectors WHERE index_id = ? AND id > ? ORDER BY id LIMIT ?",
                                    (row["id"], after, count + 1)).fetchall()
            truncated = len(rows) > count
            ids = [r[0] for r in rows[:count]]
            out: dict[str, Any] = {"count": len(ids), "totalCount": row["vector_count"], "isTruncated": truncated}
            if truncated:
                exp = int(time.time()) + CURSOR_TTL
                out["nextCursor"] = _encode_cursor(row, ids[-1], exp)
                out["cursorExpirationTimestamp"] = datetime.fromtimestamp(exp, UTC).isoformat().replace("+00:00", "Z")
            else:
                out["nextCursor"] = None
                out["cursorExpirationTimestamp"] = None
            out["vectors"] = [{"id": i} for i in ids]
            return out

    def iter_ids(self, name: str, page: int = 1000) -> Iterator[str]:
        """Every id in cursor order, page by page (keyset pagination, so it is safe under writes)."""
        cursor = None
        while True:
            res = self.list_vectors(name, count=page, cursor=cursor)
            for v in res["vectors"]:
                yield v["id"]
            if not res["isTruncated"]:
                return
            cursor = res["nextCursor"]

    def export(self, name: str, *, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        """Every record as `{id, values, namespace?, metadata}`, in id order, page by page."""
        with self.store.read() as conn:
            row = _row(conn, name)
        after = ""
        while True:
            with self.store.read() as conn:
                assert conn is not None
                sql = "SELECT id, namespace, metadata, vec FROM vectors WHERE index_id = ? AND id > ?"
                params: list[Any] = [row["id"], after]
                if namespace is not None:
                    sql += " AND namespace = ?"
                    params.append(namespace)
                rows = conn.execute(sql + " ORDER BY id LIMIT 1000", params).fetchall()
            for vid, ns, md, vec in rows:
                yield _vector_object(vid, ns, md, vec)
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    def query(self, name: str, *, vector: list[float] | None = None, vector_id: str | None = None,
              top_k: int = limits.TOPK_DEFAULT, return_values: bool = False, return_metadata: str = "none",
              namespace: str | None = None, filter: Any = None, exact: bool = False,
              warn: Warn = _noop) -> dict[str, Any]:
        check_query_args(top_k, return_values, return_metadata, vector, vector_id)
        if self.resident and vector is not None and (filter is None or filter == {}) and namespace is None and not exact \
                and return_metadata != "indexed":
            answer = self._lean_query(name, vector, int(top_k), return_values, return_metadata == "all")
            if answer is not None:
                return answer
        import numpy as np

        from vzcli import search
        from vzcli.filters import compile_filter, from_index_value, parse_query_filter
        from vzcli.records import check_namespace, check_vector

        flt = parse_query_filter(filter)
        if namespace is not None:
            try:
                check_namespace(namespace)
            except InvalidVector as e:  # keep its code (40010), as the README documents
                raise UsageError(e.message, code=e.code) from None
        with self.store.read() as conn:
            if conn is None:
                _row(conn, name)  # raises IndexNotFound
            assert conn is not None
            snap = snapshot(conn, self.store) if self.resident else None
            assert snap is not None or not self.resident
            row = snap.row(name) if snap is not None else _row(conn, name)
            if vector_id is not None:
                _check_id_arg(vector_id)
                r = conn.execute("SELECT vec FROM vectors WHERE index_id = ? AND id = ?", (row["id"], vector_id)).fetchone()
                if r is None:
                    raise VectorNotFound(f'vector with id "{vector_id}" not found in index "{name}"')
                q = np.frombuffer(r[0], dtype=np.float32)
            else:
                q = check_vector(vector, row["dimensions"], "", code=QueryDimensionMismatch.code, what="query vector")
            # the metadata indexes matter only to a filter and to returnMetadata "indexed"
            props: dict[str, tuple[int, str]] = {}
            if flt is not None or return_metadata == "indexed":
                props = snap.meta(row["id"]) if snap is not None else _meta_indexes(conn, row["id"])
            comp = None
            if flt is not None:
                comp = compile_filter(flt, props)
                for p in comp.unindexed:
                    what = f"filter property {p!r} has no metadata index on {name!r}, so it matches nothing"
                    warn(Notice(WARN_UNINDEXED_FILTER,
                                f"{what}; create one with: vz create-metadata-index {name} --property-name {p} "
                                "--type string|number|boolean",
                                f"{what}; create one with POST .../indexes/{name}/metadata_index/create "
                                f'{{"propertyName": "{p}", "indexType": "string|number|boolean"}}, then upsert '
                                "the vectors again so that it covers them"))
            index_dir = snap.index_dir(self.store, name) if snap is not None else self.store.index_dir(name)
            no_delta = snap is not None and snap.no_delta(row)
            # a resident backend keeps the delta in memory until the next commit (unfiltered queries):
            # the records newer than the file, or every record of an index without one
            delta = snap.delta(row) if snap is not None and not no_delta and namespace is None and comp is None \
                and (row["ann_file"] is not None or search.all_delta(row)) else None
            if snap is not None and delta is not None and search.all_delta(row):
                snap.lean[name] = (row, None, delta, snap.delta_ids.get(row["id"]))  # every record held
            details = None
            if snap is not None and comp is None and namespace is None and not exact \
                    and (no_delta or (delta is not None and len(delta[0]) <= search.SMALL_EXACT)):
                lean = _resident_query(conn, snap, self.store, name, row, q, int(top_k), None if no_delta else delta,
                                       return_values, return_metadata)
                if lean is not None:
                    hits, details = lean
            if details is None:
                opener = (lambda: snap.opened(self.store, name, row)) if snap is not None else None
                hits, plan = search.search(conn, row, index_dir, q, int(top_k), namespace, comp, exact=exact,
                                           resident=self.resident, no_delta=no_delta, delta_rows=delta, opener=opener)
                details = self._match_details(conn, row, plan, hits, return_values, return_metadata, snap)
            if details is None:
                # a key of the HNSW file was deleted without being counted: search again, checking keys
                hits, plan = search.search(conn, row, index_dir, q, int(top_k), namespace, comp, exact=exact,
                                           recheck=True, resident=self.resident)
                details = self._match_details(conn, row, plan, hits, return_values, return_metadata, None)
                assert details is not None
            keys = [k for _, k in hits]
            indexed: dict[int, dict[str, Any]] = {}
            if return_metadata == "indexed" and keys and props:
                names = {pid: (p, t) for p, (pid, t) in props.items()}
                for key, pid, val in conn.execute(
                        "SELECT key, prop_id, val FROM mvals WHERE key IN (SELECT value FROM json_each(?))",
                        [json_keys(keys)]):
                    if pid in names:
                        p, t = names[pid]
                        _set_path(indexed.setdefault(key, {}), p, from_index_value(val, t))
            matches = []
            for dist, key in hits:
                if key not in details:
                    continue
                vid, ns, md, *vec = details[key]
                meta = None
                if return_metadata == "all":
                    meta = orjson.loads(md) if md else {}
                elif return_metadata == "indexed":
                    meta = indexed.get(key, {})
                matches.append(_match(vid, search.score_of(row["metric"], dist), vec[0] if return_values else None,
                                      meta, ns))
            return {"count": len(matches), "matches": matches}

    def quick_query(self, name: str, *, vector: list[float] | None = None, vector_id: str | None = None,
                    top_k: int = limits.TOPK_DEFAULT, return_values: bool = False, return_metadata: str = "none",
                    namespace: str | None = None, filter: Any = None, warn: Warn = _noop) -> dict[str, Any] | None:
        """`query`'s answer when it is sure to take little time; None when it is not (the caller
        then runs `query` where a long read holds nothing else up). `vz serve` answers these on its
        event loop while no other read is in flight: handing a query to a reader thread and back
        costs a lone client ~0.2 ms (docs/server.md, "Threads"). Errors are `query`'s.

        Quick: an unfiltered query that the lean path answers, its snapshot entry filled (if this
        thread has none yet) only from what the process already holds: the index's file opened and
        resident, no key of it deleted, and at most `search.SMALL_EXACT` records newer than it
        (read once per snapshot and held, as `query` holds them); or any query of an index whose
        exact scan reads at most QUICK_SCAN floats. Never quick: whatever could load a file, or
        read a delta or scan an index bigger than that."""
        check_query_args(top_k, return_values, return_metadata, vector, vector_id)
        if not self.resident:
            return None
        lean = vector is not None and vector_id is None and (filter is None or filter == {}) and namespace is None \
            and return_metadata != "indexed"
        if lean:
            answer = self._lean_query(name, vector, int(top_k), return_values, return_metadata == "all")
            if answer is not None:
                return answer
        how = self._quick_plan(name, lean)
        if how == "lean":
            return self._lean_query(name, vector, int(top_k), return_values, return_metadata == "all")
        if how == "small":
            return self.query(name, vector=vector, vector_id=vector_id, top_k=top_k, return_values=return_values,
                              return_metadata=return_metadata, namespace=namespace, filter=filter, warn=warn)
        return None

    def _quick_plan(self, name: str, lean: bool) -> str | None:
        """How `quick_query` may answer: "small" (`query` itself: at most QUICK_SCAN floats to scan,
        or an error it raises at once), "lean" (this thread's snapshot now has the index's lean
        entry), or None (not quickly)."""
        from vzcli import ann, search

        # this thread's snapshot, if nothing was committed since: a small index needs no transaction
        reader = self.store.reader()
        current = snapshot(reader, self.store, make=False) if reader is not None else None
        known = current.rows.get(name) if current is not None else None
        if known is not None and known["vector_count"] * known["dimensions"] <= QUICK_SCAN:
            return "small"
        with self.store.read() as conn:
            if conn is None:
                return "small"  # no store: `query` raises IndexNotFound at once
            snap = snapshot(conn, self.store)
            assert snap is not None
            try:
                row = snap.row(name)
            except VzError:
                return "small"  # `query` raises it (in its own order of checks)
            if row["vector_count"] * row["dimensions"] <= QUICK_SCAN:
                return "small"
            if not lean or row["ann_file"] is None or row["ann_dead"] or not snap.no_dead(row["id"]):
                return None
            held = None
            if not snap.no_delta(row):  # records newer than the file: held beside it if a few
                if row["id"] not in snap.deltas and conn.execute(
                        "SELECT count(*) FROM (SELECT 1 FROM vectors WHERE index_id = ? AND key > ? LIMIT ?)",
                        (row["id"], row["ann_max_key"], search.SMALL_EXACT + 1)).fetchone()[0] > search.SMALL_EXACT:
                    return None
                held = snap.delta(row)
                if held is None or len(held[0]) > search.SMALL_EXACT:
                    return None
            opened = ann.held_file(ann.file_path(snap.index_dir(self.store, name), row["ann_file"]), row)
            fv = opened.fv if opened is not None else None
            if fv is None or not fv.resident or fv.known is None:
                return None
            snap.files[name] = opened
            snap.lean[name] = (row, opened, held, snap.delta_ids.get(row["id"]) if held is not None else None)
            return "lean"

    def _lean_query(self, name: str, vector: Any, k: int, values: bool, metadata: bool) -> dict[str, Any] | None:
        """An unfiltered query's answer without a transaction or a SQLite read, when this thread's
        snapshot is current and an earlier query found the index fit for it (`Snapshot.lean`);
        None otherwise (`query` then takes its general path, which also fills the snapshot in).
        This is the per-query path of `vz serve` and the library (docs/server.md).

        `metadata` (returnMetadata "all") is read from SQLite by key, in one statement: a key's
        metadata never changes (an upsert that changes a record gives it a new key), so any row
        found is the snapshot's; a key not found was deleted since, and the general path answers."""
        from vzcli import search
        from vzcli.records import check_vector

        conn = self.store.reader()
        snap = snapshot(conn, self.store, make=False) if conn is not None else None
        got = snap.lean.get(name) if snap is not None else None
        if got is None:
            return None
        row, opened, held, held_ids = got
        if opened is not None and not search.hnsw_pays(k, row["vector_count"]):
            return None
        q = check_vector(vector, row["dimensions"], "", code=QueryDimensionMismatch.code, what="query vector")
        # an index without a file has every record held
        top = search.held_top(row, q, k, held) if opened is None else search.resident_top(opened, row, q, k, held)
        if top is None:
            return None
        meta: dict[int, Any] = {}
        if metadata:
            assert conn is not None
            meta = dict(conn.execute("SELECT key, metadata FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                                     (json_keys([key for _, key, _ in top]),)))
            if len(meta) < len(top):
                return None
        sign = -1.0 if row["metric"] == "cosine" else 1.0
        matches = []
        fv = opened.fv if opened is not None else None
        for (d, key, _), (vid, ns, vec) in zip(top, _from_memory(top, fv, held, held_ids, values), strict=True):
            md = (orjson.loads(meta[key]) if meta[key] else {}) if metadata else None
            matches.append(_match(vid, sign * d, vec, md, ns))
        return {"count": len(matches), "matches": matches}

    def _match_details(self, conn: sqlite3.Connection, row: dict[str, Any], plan: Any, hits: list[tuple[float, int]],
                       values: bool, metadata: str, snap: Snapshot | None) -> dict[int, tuple[Any, ...]] | None:
        """key -> (id, namespace, metadata[, vec]) of the hits; None if a trusted hit turns out dead.

        A resident backend takes ids, namespaces and values of keys in the ANN file from memory
        (they never change for a key) and asks SQLite only about the delta and, when returned,
        metadata; liveness of a trusted hit is then checked in `dead_keys`.
        """
        from vzcli import ann
        from vzcli.search import dead_among

        keys = [k for _, k in hits]
        fv = plan.fv
        if not (self.resident and fv is not None and fv.resident and metadata != "all"):
            details = _details(conn, keys, values)
            return None if plan.trusted and len(details) < len(keys) else details
        ann.file_info(fv, conn)
        known = fv.info(keys)
        if plan.trusted and not (snap is not None and snap.no_dead(row["id"])) and dead_among(conn, row["id"], list(known)):
            return None
        rest = [k for k in keys if k not in known]
        details = _details(conn, rest, values) if rest else {}
        if known:
            import numpy as np

            vecs: list[Any] = [None] * len(known)
            if values:  # a resident file's vectors are SQLite's float32 (`FileVectors.exact`)
                _, mat = fv.split(np.asarray(list(known), dtype=np.int64))
                vecs = [v.tobytes() for v in mat]
            for (key, (vid, ns)), vec in zip(known.items(), vecs, strict=True):
                details[key] = (vid, ns, None, vec) if values else (vid, ns, None)
        return details


def _resident_query(conn: sqlite3.Connection, snap: Snapshot, store: Store, name: str, row: dict[str, Any],
                    q: Any, k: int, held: tuple[Any, Any] | None, values: bool,
                    metadata: str) -> tuple[list[tuple[float, int]], dict[int, tuple[Any, ...]]] | None:
    """(hits, details) of an unfiltered query in a resident process whose index's file holds no
    deleted key (`search.resident_top`); None when that does not apply (then `search` answers).
    Ids and namespaces of the file's keys come from memory; SQLite is asked only for the metadata
    (`returnMetadata: "all"`) and for records newer than the file."""
    from vzcli import search

    if row["ann_file"] is None or row["ann_dead"] or not search.hnsw_pays(k, row["vector_count"]) \
            or not snap.no_dead(row["id"]):
        return None
    opened = snap.opened(store, name, row)
    top = search.resident_top(opened, row, q, k, held) if opened is not None else None
    if top is None:
        return None
    held_ids = snap.delta_ids.get(row["id"]) if held is not None else None
    snap.lean[name] = (row, opened, held, held_ids)
    hits = [(d, key) for d, key, _ in top]
    if metadata == "all":
        details = _details(conn, [key for _, key in hits], values)
        return (hits, details) if len(details) == len(hits) else None  # else `search` decides
    return hits, {key: (vid, ns, None, vec) if values else (vid, ns, None)
                  for (_, key, _), (vid, ns, vec) in zip(top, _from_memory(top, opened.fv, held, held_ids, values),
                                                         strict=True)}


def _from_memory(top: list[tuple[float, int, int]], fv: Any, held: tuple[Any, Any] | None,
                 held_ids: list[tuple[str, str | None]] | None, values: bool) -> list[tuple[str, str | None, Any]]:
    """(id, namespace, float32 bytes or None) of each of `resident_top`'s hits, from memory: the
    file's (position p >= 0) or the held delta's (row -p - 1). A list, not a generator: this is
    the per-query path, and a generator's resumptions cost more than the list."""
    info, newer, out = fv._info if fv is not None else [], held_ids or [], []
    for _, _, p in top:
        if p >= 0:
            vid, ns = info[p]
            out.append((vid, ns, fv.row_bytes(p) if values else None))
        else:
            assert held is not None
            vid, ns = newer[-p - 1]
            out.append((vid, ns, held[1][-p - 1].tobytes() if values else None))
    return out


def check_query_options(top_k: Any, return_values: bool, return_metadata: str) -> None:
    if return_metadata not in ("none", "indexed", "all"):
        raise UsageError(f'returnMetadata must be "none", "indexed" or "all", got {return_metadata!r}', code=40026)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k != int(top_k) or top_k < 1:
        raise TopKTooLarge(f"top K must be a whole number from 1 to {limits.TOPK_MAX}, got {top_k!r}")
    if return_values or return_metadata == "all":
        if top_k > limits.TOPK_MAX_WITH_DATA:
            raise TopKTooLarge(
                f"with returnValues=true or returnMetadata=all, max top K is {limits.TOPK_MAX_WITH_DATA}, but got "
                f"{top_k!r}; for a top K up to {limits.TOPK_MAX}, retry with returnValues=false and returnMetadata=indexed")
    elif top_k > limits.TOPK_MAX:
        raise TopKTooLarge(f"max top K is {limits.TOPK_MAX}, but got {top_k!r}")


def check_query_args(top_k: Any, return_values: bool, return_metadata: str, vector: Any, vector_id: Any) -> None:
    check_query_options(top_k, return_values, return_metadata)
    if (vector is None) == (vector_id is None):
        raise UsageError("Either vector or vector-id parameter must be provided, but not both.")


def _match(vid: str, score: float, vec: bytes | None, metadata: dict[str, Any] | None,
           ns: str | None) -> dict[str, Any]:
    """One match object, its keys in Cloudflare's order."""
    m: dict[str, Any] = {"id": vid, "score": score}
    if vec is not None:
        m["values"] = _vec_list(vec)
    if metadata is not None:
        m["metadata"] = metadata
    if ns is not None:
        m["namespace"] = ns
    return m


def _vector_object(vid: str, ns: str | None, md: str | None, vec: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": vid, "values": _vec_list(vec), "metadata": orjson.loads(md) if md else {}}
    if ns is not None:
        obj["namespace"] = ns
    return obj


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            return
    d[parts[-1]] = value


def _encode_cursor(row: dict[str, Any], last_id: str, exp: int) -> str:
    raw = orjson.dumps({"i": row["id"], "c": row["created_on"], "a": last_id, "e": exp})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, row: dict[str, Any]) -> str:
    try:
        pad = "=" * (-len(cursor) % 4)
        obj = orjson.loads(base64.urlsafe_b64decode(cursor + pad))
        ok = isinstance(obj, dict) and obj.get("i") == row["id"] and obj.get("c") == row["created_on"] \
            and isinstance(obj.get("a"), str) and isinstance(obj.get("e"), int)
    except (ValueError, orjson.JSONDecodeError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise BadCursor()
    if obj["e"] < time.time():
        raise BadCursor("List vectors cursor has expired; start a new listing without a cursor")
    return str(obj["a"])
