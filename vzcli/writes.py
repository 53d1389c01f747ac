"""Writes: insert, upsert and delete by id, each one SQLite transaction, then ANN upkeep."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

import orjson

from vzcli import limits
from vzcli.backend import WriteResult
from vzcli.catalog import check_id_arg as _check_id_arg
from vzcli.catalog import index_row as _row
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.errors import IndexNotFound, StoreError, Unparsable, VzError
from vzcli.filters import extract, to_index_value  # light: no numpy
from vzcli.store import Store, json_keys

CHUNK = 2000


class Writes:
    """The write half of `LocalBackend` (a mixin: `store` and `maintain` are set by it)."""

    store: Store
    maintain: bool

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
                      f"exactly); the next write or 'vz optimize {name}' retries.") from None

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
                "annNodes": row["ann_nodes"], "efSearch": row["expansion_search"],
                "seconds": round(time.monotonic() - t, 3)}

def _index_values(props: dict[str, tuple[int, str]], rec: Any, key: int, out: list[tuple[int, Any, int]]) -> None:
    """Append the (metadata index, value, key) rows of record `rec` stored under `key`."""
    if props and rec.metadata:
        for prop, (pid, itype) in props.items():
            iv = to_index_value(extract(rec.metadata, prop), itype)
            if iv is not None:
                out.append((pid, iv, key))

