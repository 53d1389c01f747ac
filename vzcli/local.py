"""The local backend: every Vectorize operation over a `Store`.

Results have exactly the shapes of Cloudflare's REST API v2 `result` payloads, so the CLI, the
HTTP server and the remote backend share one interface (see `backend.py`).
"""

from __future__ import annotations

import shutil
from typing import Any

import orjson

from vzcli import limits
from vzcli.catalog import index_object as _index_object
from vzcli.catalog import index_row as _row
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.errors import (
    WARN_UNCOVERED_VECTORS,
    DuplicateIndex,
    IndexNotFound,
    InvalidConfig,
    InvalidFilter,
    MetadataIndexError,
    Notice,
    UsageError,
)
from vzcli.reads import Reads, Warn, _noop, check_query_options
from vzcli.store import Store, now_iso
from vzcli.writes import Writes

__all__ = ["LocalBackend", "check_query_options"]


class LocalBackend(Reads, Writes):
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

