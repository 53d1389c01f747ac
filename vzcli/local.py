"""The local backend: every Vectorize operation over a `Store`.

Results have exactly the shapes of Cloudflare's REST API v2 `result` payloads, so the CLI, the
HTTP server and the remote backend share one interface (see `backend.py`).
"""

from __future__ import annotations

import base64
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson

from vzcli import limits
from vzcli.backend import WriteResult
from vzcli.errors import (
    WARN_UNCOVERED_VECTORS,
    WARN_UNINDEXED_FILTER,
    BadCursor,
    DuplicateIndex,
    IndexNotFound,
    InvalidConfig,
    InvalidFilter,
    InvalidVector,
    MetadataIndexError,
    Notice,
    QueryDimensionMismatch,
    StoreError,
    TopKTooLarge,
    Unparsable,
    UsageError,
    VectorNotFound,
    VzError,
)
from vzcli.filters import extract, to_index_value  # light: no numpy
from vzcli.store import Store, json_keys, now_iso

Warn = Callable[[str], None]
CURSOR_TTL = 3600
CHUNK = 2000


def _noop(_: str) -> None:
    pass


def _row(conn: sqlite3.Connection | None, name: str) -> dict[str, Any]:
    limits.check_index_name(name)
    if conn is None:
        raise IndexNotFound(name)
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    r = cur.fetchone()
    if r is None:
        raise IndexNotFound(name)
    return dict(zip([c[0] for c in cur.description], r, strict=True))


def _index_object(row: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"name": row["name"]}
    if row["description"] is not None:
        obj["description"] = row["description"]
    obj["config"] = {"dimensions": row["dimensions"], "metric": row["metric"]}
    obj["created_on"] = row["created_on"]
    obj["modified_on"] = row["modified_on"]
    return obj


def _meta_indexes(conn: sqlite3.Connection, index_id: int) -> dict[str, tuple[int, str]]:
    return {p: (i, t) for i, p, t in conn.execute(
        "SELECT id, property_name, index_type FROM metadata_indexes WHERE index_id = ? ORDER BY id", (index_id,))}


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


class LocalBackend:
    """Vectorize over a local store."""

    def __init__(self, store: Store, *, resident: bool = True, maintain: bool = True) -> None:
        """`resident`: this object lives long (a server, a library user), so each ANN file's
        vectors are faulted into memory once (a sequential read) and every query scores from
        them. A one-shot process (the CLI) passes False and reads a query's few rows from SQLite.

        `maintain`: a write merges the ANN file itself when due, before it returns. `vz serve`
        passes False and merges in the background instead (`ann.maintain`), so a write answers
        once SQLite has committed it; queries are exact over the not-yet-merged records meanwhile.
        """
        self.store = store
        self.resident = resident
        self.maintain = maintain

    # --- indexes --------------------------------------------------------------------------------
    def create_index(self, name: str, *, dimensions: int | None = None, metric: str | None = None,
                     preset: str | None = None, description: str | None = None,
                     if_not_exists: bool = False) -> dict[str, Any]:
        limits.check_index_name(name)
        dims, met = limits.resolve_config(dimensions, metric, preset)
        if description is not None and not limits.is_utf8(description):
            raise InvalidConfig(f"description {description!r} is not valid UTF-8 text")
        ts = now_iso()
        with self.store.write() as conn:
            existing = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,)).fetchone()
            if existing is not None:
                row = _row(conn, name)
                if not if_not_exists:
                    raise DuplicateIndex(name)
                diffs = []
                if row["dimensions"] != dims:
                    diffs.append(f"dimensions {row['dimensions']} != {dims}")
                if row["metric"] != met:
                    diffs.append(f"metric {row['metric']} != {met}")
                if description is not None and row["description"] != description:
                    diffs.append(f"description {row['description']!r} != {description!r}")
                if diffs:
                    raise DuplicateIndex(name, "exists with a different configuration: " + ", ".join(diffs))
                return _index_object(row)
            d = self.store.index_dir(name)
            if d.exists():  # left over by a crash between commit and cleanup of an earlier delete
                shutil.rmtree(d, ignore_errors=True)
            conn.execute("""INSERT INTO indexes(name, description, dimensions, metric, created_on, modified_on,
                                                connectivity, expansion_add, expansion_search)
                            VALUES (?,?,?,?,?,?,?,?,?)""", (name, description, dims, met, ts, ts,
                                                          *limits.HNSW_BUILD))
            row = _row(conn, name)
        self.store.index_dir(name).mkdir(parents=True, exist_ok=True)
        return _index_object(row)

    def list_indexes(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            if conn is None:
                return []
            cur = conn.execute("SELECT * FROM indexes ORDER BY name")
            cols = [c[0] for c in cur.description]
            return [_index_object(dict(zip(cols, r, strict=True))) for r in cur.fetchall()]

    def get_index(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return _index_object(_row(conn, name))

    def delete_index(self, name: str, *, if_exists: bool = False) -> bool:
        """Delete an index and its files. Returns False when it did not exist and `if_exists` is set."""
        limits.check_index_name(name)
        if not self.store.exists():
            if if_exists:
                return False
            raise IndexNotFound(name)
        with self.store.write() as conn:
            try:
                row = _row(conn, name)
            except IndexNotFound:
                if if_exists:
                    return False
                raise
            iid = row["id"]
            conn.execute("DELETE FROM mvals WHERE prop_id IN (SELECT id FROM metadata_indexes WHERE index_id = ?)", (iid,))
            conn.execute("DELETE FROM metadata_indexes WHERE index_id = ?", (iid,))
            conn.execute("DELETE FROM vectors WHERE index_id = ?", (iid,))
            conn.execute("DELETE FROM dead_keys WHERE index_id = ?", (iid,))
            conn.execute("DELETE FROM mutations WHERE index_id = ?", (iid,))
            conn.execute("DELETE FROM indexes WHERE id = ?", (iid,))
        shutil.rmtree(self.store.index_dir(name), ignore_errors=True)
        return True

    def info(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = _row(conn, name)
            assert conn is not None
            out: dict[str, Any] = {"dimensions": row["dimensions"], "vectorCount": row["vector_count"]}
            if row["last_mutation"] is not None:
                m = conn.execute("SELECT uuid, created_on FROM mutations WHERE seq = ?", (row["last_mutation"],)).fetchone()
                if m is not None:
                    out["processedUpToDatetime"] = m[1]
                    out["processedUpToMutation"] = m[0]
            return out

    # --- writes ---------------------------------------------------------------------------------
    def insert(self, name: str, stream: BinaryIO, *, source: str = "<input>", discard: bool = False,
               on_progress: Callable[[int], None] | None = None) -> WriteResult:
        return self._write(name, stream, source=source, discard=discard, upsert=False, on_progress=on_progress)

    def upsert(self, name: str, stream: BinaryIO, *, source: str = "<input>", discard: bool = False,
               on_progress: Callable[[int], None] | None = None) -> WriteResult:
        return self._write(name, stream, source=source, discard=discard, upsert=True, on_progress=on_progress)

    def _write(self, name: str, stream: BinaryIO, *, source: str, discard: bool, upsert: bool,
               on_progress: Callable[[int], None] | None) -> WriteResult:
        from vzcli.ndjson import LineError, read_records

        limits.check_index_name(name)
        errors: list[LineError] = []
        result = WriteResult(mutation_id="", count=0)
        if not self.store.exists():
            raise IndexNotFound(name)
        with self.store.write() as conn:
            row = _row(conn, name)
            iid = row["id"]
            props = _meta_indexes(conn, iid)
            records = read_records(stream, row["dimensions"], source, discard=discard, errors=errors)
            chunk: list[Any] = []
            for rec in records:
                chunk.append(rec)
                if len(chunk) >= CHUNK:
                    self._apply(conn, row, props, chunk, upsert, result)
                    if on_progress:
                        on_progress(result.count)
                    chunk = []
            if chunk:
                self._apply(conn, row, props, chunk, upsert, result)
            if result.count == 0 and not errors:
                raise Unparsable(f"{source}: no vectors found; give one JSON object per line, like "
                                 '{"id": "a", "values": [0.1, 0.2]}')
            conn.execute("UPDATE indexes SET vector_count = vector_count + ? WHERE id = ?", (result.net, iid))
            _, result.mutation_id = self.store.record_mutation(conn, iid, "upsert" if upsert else "insert",
                                                               result.count)
        result.discarded = len(errors)
        result.errors = [e.error.message for e in errors]
        self._maintain(name, result.mutation_id)
        return result

    def _apply(self, conn: sqlite3.Connection, row: dict[str, Any], props: dict[str, tuple[int, str]],
               chunk: list[Any], upsert: bool, result: WriteResult) -> None:
        iid = row["id"]
        n_read = len(chunk)
        removed = 0
        kept: list[tuple[Any, int]] = []  # (record, key) of identical records left in place
        if upsert:
            # last occurrence wins within the chunk; earlier chunks were already applied in order
            latest: dict[str, Any] = {}
            for rec in chunk:
                latest.pop(rec.id, None)
                latest[rec.id] = rec
            chunk = list(latest.values())
            ids_json = orjson.dumps([r.id for r in chunk]).decode()
            current = {vid: (key, ns, md, vec) for key, vid, ns, md, vec in conn.execute(
                "SELECT key, id, namespace, metadata, vec FROM vectors WHERE index_id = ? AND id IN "
                "(SELECT value FROM json_each(?))", (iid, ids_json))}
            # A record identical to the stored one is left alone: re-running an upsert of the same
            # file changes nothing but the mutation log (no key churn, no ANN tombstones).
            same = {r.id for r in chunk if r.id in current and current[r.id][1:] ==
                    (r.namespace, r.metadata_json, r.values.tobytes())}
            if same:
                kept = [(r, current[r.id][0]) for r in chunk if r.id in same]
                chunk = [r for r in chunk if r.id not in same]
                result.unchanged += len(same)
            old = [current[r.id][0] for r in chunk if r.id in current]
            if old:
                self._remove_keys(conn, row, old)
            removed = len(old)
        mv: list[tuple[int, Any, int]] = []
        # A kept record may predate a metadata index; an upsert must still make it filterable on it.
        for rec, key in kept:
            _index_values(props, rec, key, mv)
        if not upsert:
            # insert keeps what is stored, and the first of repeated ids in the input
            ids_json = orjson.dumps([r.id for r in chunk]).decode()
            seen = {vid for (vid,) in conn.execute(
                "SELECT id FROM vectors WHERE index_id = ? AND id IN (SELECT value FROM json_each(?))", (iid, ids_json))}
            fresh = []
            for rec in chunk:
                if rec.id not in seen:
                    seen.add(rec.id)
                    fresh.append(rec)
            chunk = fresh
        # Keys are given explicitly (one executemany, not a statement per row): above every key
        # ever used, as AUTOINCREMENT would pick them; this transaction holds the write lock.
        base = conn.execute("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'vectors'), 0), "
                            "coalesce((SELECT max(key) FROM vectors), 0)) + 1").fetchone()[0]
        conn.executemany("INSERT INTO vectors(key, index_id, id, namespace, metadata, vec) VALUES (?,?,?,?,?,?)",
                         [(base + i, iid, r.id, r.namespace, r.metadata_json, r.values.tobytes())
                          for i, r in enumerate(chunk)])
        if props:
            for i, rec in enumerate(chunk):
                _index_values(props, rec, base + i, mv)
        new = len(chunk)
        if mv:
            conn.executemany("INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", mv)
        result.count += n_read
        result.net += new - removed
        if upsert:
            result.inserted += new - removed
            result.replaced += removed
        else:
            result.inserted += new
            result.skipped += n_read - new

    def _remove_keys(self, conn: sqlite3.Connection, row: dict[str, Any], keys: list[int]) -> None:
        keys_json = json_keys(keys)
        conn.execute("DELETE FROM mvals WHERE key IN (SELECT value FROM json_each(?)) AND prop_id IN "
                     "(SELECT id FROM metadata_indexes WHERE index_id = ?)", (keys_json, row["id"]))
        conn.execute("DELETE FROM vectors WHERE key IN (SELECT value FROM json_each(?))", (keys_json,))
        conn.executemany("INSERT OR IGNORE INTO dead_keys(index_id, key) VALUES (?, ?)", [(row["id"], k) for k in keys])
        in_file = sum(1 for k in keys if k <= row["ann_max_key"])
        if in_file:
            conn.execute("UPDATE indexes SET ann_dead = ann_dead + ? WHERE id = ?", (in_file, row["id"]))

    def delete_by_ids(self, name: str, ids: Iterable[str]) -> WriteResult:
        id_list = list(dict.fromkeys(ids))
        for vid in id_list:
            _check_id_arg(vid)
        if not self.store.exists():
            raise IndexNotFound(name)
        result = WriteResult(mutation_id="", count=len(id_list))
        with self.store.write() as conn:
            row = _row(conn, name)
            keys: list[int] = []
            for i in range(0, len(id_list), 5000):
                part = orjson.dumps(id_list[i:i + 5000]).decode()
                keys.extend(k for (k,) in conn.execute(
                    "SELECT key FROM vectors WHERE index_id = ? AND id IN (SELECT value FROM json_each(?))",
                    (row["id"], part)))
            if keys:
                self._remove_keys(conn, row, keys)
            result.deleted = len(keys)
            conn.execute("UPDATE indexes SET vector_count = vector_count - ? WHERE id = ?", (len(keys), row["id"]))
            _, result.mutation_id = self.store.record_mutation(conn, row["id"], "delete", len(keys))
        self._maintain(name, result.mutation_id)
        return result

    def _maintain(self, name: str, mutation_id: str) -> None:
        """Merge the ANN file after a committed write; a failure says the write itself is safe."""
        from vzcli import ann

        if not self.maintain:
            return
        try:
            ann.maintain(self.store, name)
        except (VzError, OSError, RuntimeError, ValueError) as e:
            detail = e.message if isinstance(e, VzError) else (getattr(e, "strerror", None) or str(e))
            cls = type(e) if isinstance(e, StoreError) else StoreError  # keeps 1003 for a lock timeout
            raise cls(f"The write was committed (mutation {mutation_id}), but updating the ANN file of "
                      f"{name!r} failed: {detail}. Queries stay correct (recent writes are searched "
                      "exactly); the next write retries.") from None

    def optimize(self, name: str) -> dict[str, Any]:
        """Merge the delta and drop tombstones: rebuild the ANN file from SQLite."""
        from vzcli import ann

        with self.store.read() as conn:
            _row(conn, name)
        t = time.monotonic()
        did = ann.maintain(self.store, name, force="rebuild")
        with self.store.read() as conn:
            row = _row(conn, name)
        return {"index": name, "action": did or "none", "vectorCount": row["vector_count"],
                "annNodes": row["ann_nodes"], "seconds": round(time.monotonic() - t, 3)}

    # --- reads ----------------------------------------------------------------------------------
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
        import numpy as np

        from vzcli import search
        from vzcli.filters import compile_filter, from_index_value, parse_query_filter
        from vzcli.records import check_namespace, check_vector

        check_query_options(top_k, return_values, return_metadata)
        if (vector is None) == (vector_id is None):
            raise UsageError("Either vector or vector-id parameter must be provided, but not both.")
        flt = parse_query_filter(filter)
        if namespace is not None:
            try:
                check_namespace(namespace)
            except InvalidVector as e:  # keep its code (40010), as the README documents
                raise UsageError(e.message, code=e.code) from None
        with self.store.read() as conn:
            row = _row(conn, name)
            assert conn is not None
            if vector_id is not None:
                _check_id_arg(vector_id)
                r = conn.execute("SELECT vec FROM vectors WHERE index_id = ? AND id = ?", (row["id"], vector_id)).fetchone()
                if r is None:
                    raise VectorNotFound(f'vector with id "{vector_id}" not found in index "{name}"')
                q = np.frombuffer(r[0], dtype=np.float32)
            else:
                q = check_vector(vector, row["dimensions"], "", code=QueryDimensionMismatch.code, what="query vector")
            # the metadata indexes matter only to a filter and to returnMetadata "indexed"
            props = _meta_indexes(conn, row["id"]) if flt is not None or return_metadata == "indexed" else {}
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
            index_dir = self.store.index_dir(name)
            hits, plan = search.search(conn, row, index_dir, q, int(top_k), namespace, comp, exact=exact,
                                       resident=self.resident)
            details = self._match_details(conn, row, plan, hits, return_values, return_metadata)
            if details is None:
                # a key of the HNSW file was deleted without being counted: search again, checking keys
                hits, plan = search.search(conn, row, index_dir, q, int(top_k), namespace, comp, exact=exact,
                                           recheck=True, resident=self.resident)
                details = self._match_details(conn, row, plan, hits, return_values, return_metadata)
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
                m: dict[str, Any] = {"id": vid, "score": search.score_of(row["metric"], dist)}
                if return_values:
                    m["values"] = _vec_list(vec[0])
                if return_metadata == "all":
                    m["metadata"] = orjson.loads(md) if md else {}
                elif return_metadata == "indexed":
                    m["metadata"] = indexed.get(key, {})
                if ns is not None:
                    m["namespace"] = ns
                matches.append(m)
            return {"count": len(matches), "matches": matches}

    def _match_details(self, conn: sqlite3.Connection, row: dict[str, Any], plan: Any, hits: list[tuple[float, int]],
                       values: bool, metadata: str) -> dict[int, tuple[Any, ...]] | None:
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
        if plan.trusted and dead_among(conn, row["id"], list(known)):
            return None
        rest = [k for k in keys if k not in known]
        details = _details(conn, rest, values) if rest else {}
        if known:
            import numpy as np

            vecs: list[Any] = [None] * len(known)
            if values:
                _, mat = fv.split(np.asarray(list(known), dtype=np.int64))
                vecs = [v.tobytes() for v in mat]
            for (key, (vid, ns)), vec in zip(known.items(), vecs, strict=True):
                details[key] = (vid, ns, None, vec) if values else (vid, ns, None)
        return details

    # --- metadata indexes -----------------------------------------------------------------------
    def create_metadata_index(self, name: str, property_name: str, index_type: str, *, backfill: bool = False,
                              if_not_exists: bool = False, warn: Warn = _noop) -> dict[str, Any]:
        from vzcli.filters import _check_key, extract, to_index_value

        if index_type not in limits.METADATA_TYPES:
            raise UsageError(f"type must be one of {', '.join(limits.METADATA_TYPES)}, got {index_type!r}")
        try:
            _check_key(property_name)
        except InvalidFilter as e:
            raise UsageError(f"invalid property name: {e.message}") from None
        if not self.store.exists():
            raise IndexNotFound(name)
        with self.store.write() as conn:
            row = _row(conn, name)
            existing = _meta_indexes(conn, row["id"])
            if property_name in existing:
                if if_not_exists and existing[property_name][1] == index_type:
                    return {"mutationId": None, "created": False}
                raise MetadataIndexError(
                    f'metadata index for property "{property_name}" already exists on "{name}" '
                    f"(type {existing[property_name][1]}); delete it first to change its type")
            if len(existing) >= limits.MAX_METADATA_INDEXES:
                raise MetadataIndexError(f'index "{name}" already has {limits.MAX_METADATA_INDEXES} metadata indexes, '
                                         "the maximum; delete one first")
            cur = conn.execute("INSERT INTO metadata_indexes(index_id, property_name, index_type, created_on) "
                               "VALUES (?,?,?,?)", (row["id"], property_name, index_type, now_iso()))
            pid = cur.lastrowid
            assert pid is not None
            covered = 0
            if backfill:
                batch: list[tuple[int, Any, int]] = []
                for key, md in conn.execute("SELECT key, metadata FROM vectors WHERE index_id = ? AND metadata IS NOT NULL",
                                            (row["id"],)):
                    iv = to_index_value(extract(orjson.loads(md), property_name), index_type)
                    if iv is not None:
                        batch.append((pid, iv, key))
                    if len(batch) >= 10000:
                        conn.executemany("INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", batch)
                        covered += len(batch)
                        batch = []
                conn.executemany("INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", batch)
                covered += len(batch)
            _, mid = self.store.record_mutation(conn, row["id"], "create_metadata_index", 1)
        uncovered = 0 if backfill else row["vector_count"]
        if uncovered:
            what = (f"{uncovered} existing vector(s) in {name!r} are not covered by the new metadata index on "
                    f"{property_name!r}: they stay unfilterable on it until re-upserted (as on Cloudflare).")
            warn(Notice(WARN_UNCOVERED_VECTORS, f"{what} Pass --backfill to index them now.",
                        f"{what} Upsert them again (POST .../indexes/{name}/upsert) to index them."))
        return {"mutationId": mid, "created": True, "backfilled": covered, "uncovered": uncovered}

    def list_metadata_indexes(self, name: str) -> dict[str, Any]:
        with self.store.read() as conn:
            row = _row(conn, name)
            assert conn is not None
            return {"metadataIndexes": [{"propertyName": p, "indexType": t}
                                        for p, (_, t) in _meta_indexes(conn, row["id"]).items()]}

    def delete_metadata_index(self, name: str, property_name: str, *, if_exists: bool = False) -> dict[str, Any]:
        if not self.store.exists():
            raise IndexNotFound(name)
        with self.store.write() as conn:
            row = _row(conn, name)
            existing = _meta_indexes(conn, row["id"])
            if property_name not in existing:
                if if_exists:
                    return {"mutationId": None, "deleted": False}
                raise MetadataIndexError(f'no metadata index for property "{property_name}" on "{name}"; '
                                         "list its metadata indexes to see which exist", status=404)
            pid = existing[property_name][0]
            conn.execute("DELETE FROM mvals WHERE prop_id = ?", (pid,))
            conn.execute("DELETE FROM metadata_indexes WHERE id = ?", (pid,))
            _, mid = self.store.record_mutation(conn, row["id"], "delete_metadata_index", 1)
        return {"mutationId": mid, "deleted": True}


def check_query_options(top_k: Any, return_values: bool, return_metadata: str) -> None:
    if return_metadata not in ("none", "indexed", "all"):
        raise UsageError(f'returnMetadata must be "none", "indexed" or "all", got {return_metadata!r}', code=40026)
    if isinstance(top_k, bool) or not isinstance(top_k, (int, float)) or top_k != int(top_k) or top_k < 1:
        raise TopKTooLarge(f"top K must be a whole number from 1 to {limits.TOPK_MAX}, got {top_k!r}")
    if return_values or return_metadata == "all":
        if top_k > limits.TOPK_MAX_WITH_DATA:
            raise TopKTooLarge(
                f"with returnValues=true or returnMetadata=all, max top K is {limits.TOPK_MAX_WITH_DATA}, but got "
                f"{int(top_k)}; for a top K up to {limits.TOPK_MAX}, retry with returnValues=false and returnMetadata=indexed")
    elif top_k > limits.TOPK_MAX:
        raise TopKTooLarge(f"max top K is {limits.TOPK_MAX}, but got {int(top_k)}")


def _index_values(props: dict[str, tuple[int, str]], rec: Any, key: int, out: list[tuple[int, Any, int]]) -> None:
    """Append the (metadata index, value, key) rows of record `rec` stored under `key`."""
    if props and rec.metadata:
        for prop, (pid, itype) in props.items():
            iv = to_index_value(extract(rec.metadata, prop), itype)
            if iv is not None:
                out.append((pid, iv, key))


def _check_id_arg(vid: Any) -> None:
    from vzcli.records import check_id

    try:
        check_id(vid)
    except Exception as e:
        raise UsageError(str(e), code=40008) from None


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
