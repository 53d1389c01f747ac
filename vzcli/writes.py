"""Writes: insert, upsert and delete by id, each one SQLite transaction, then ANN upkeep."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, BinaryIO

import orjson

from vzcli import envconf, interrupts, limits
from vzcli.backend import WriteResult
from vzcli.catalog import check_id_arg as _check_id_arg
from vzcli.catalog import index_row as _row
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.errors import IndexNotFound, StoreError, Unparsable, VzError
from vzcli.filters import extract, to_index_value  # light: no numpy
from vzcli.store import Store, json_keys

CHUNK = 2000


class InterruptGuard:
    """What Ctrl-C (SIGINT) does to a write, so that exit 130 means "nothing was written".

    Before the commit it raises KeyboardInterrupt (the transaction rolls back). From the commit
    on the write stands: a signal is only recorded, except that the first one stops an ANN merge
    in progress (the next write or `vz optimize` redoes it). Installed only in the main thread
    over Python's default handler; elsewhere it changes nothing.
    """

    def __init__(self) -> None:
        self.mode = "raise"  # raise | record | stop-merge
        self.pending = False
        self._old: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.mode == "raise":
            if not interrupts.deferred(frame):
                raise KeyboardInterrupt
            return
        self.pending = True
        if self.mode == "stop-merge" and not interrupts.deferred(frame):
            self.mode = "record"
            raise KeyboardInterrupt

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread() and \
                signal.getsignal(signal.SIGINT) in (signal.default_int_handler, interrupts.handler):
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


_GUARD: InterruptGuard | None = None


@contextmanager
def interrupt_guard() -> Iterator[InterruptGuard]:
    """The guard of the writes inside this block (the CLI spans the write and its report with it,
    so that a committed write is reported whenever Ctrl-C comes)."""
    global _GUARD
    if _GUARD is not None:
        yield _GUARD
        return
    with InterruptGuard() as g:
        _GUARD = g
        try:
            yield g
        finally:
            _GUARD = None


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
        bulk = _BulkBuild(self.store, name, stream) if self.maintain else None
        try:
            with interrupt_guard() as guard, self.store.write() as conn:
                row = _row(conn, name)
                iid = row["id"]
                props = _meta_indexes(conn, iid)
                records = read_records(stream, row["dimensions"], source, discard=discard, errors=errors)
                chunk: list[Any] = []
                for rec in records:
                    chunk.append(rec)
                    if len(chunk) >= CHUNK:
                        self._apply(conn, row, props, chunk, upsert, result, bulk)
                        if on_progress:
                            on_progress(result.count)
                        chunk = []
                if chunk:
                    self._apply(conn, row, props, chunk, upsert, result, bulk)
                if result.count == 0 and not errors:
                    raise Unparsable(f"{source}: no vectors found; give one JSON object per line, like "
                                     '{"id": "a", "values": [0.1, 0.2]}')
                conn.execute("UPDATE indexes SET vector_count = vector_count + ? WHERE id = ?", (result.net, iid))
                seq, result.mutation_id = self.store.record_mutation(conn, iid, "upsert" if upsert else "insert",
                                                                     result.count)
                guard.mode = "record"  # the commit follows: from here on the write stands
        except BaseException:
            if bulk is not None:
                bulk.close()
            raise
        result.discarded = len(errors)
        result.errors = [e.error.message for e in errors]
        if bulk is not None:
            bulk.finish(row, seq, result, guard)
        self._maintain(name, result, guard)
        return result

    def _apply(self, conn: sqlite3.Connection, row: dict[str, Any], props: dict[str, tuple[int, str]],
               chunk: list[Any], upsert: bool, result: WriteResult, bulk: _BulkBuild | None = None) -> None:
        iid = row["id"]
        n_read = len(chunk)
        removed = 0
        kept: list[tuple[Any, int]] = []  # (record, key) of identical records left in place
        if upsert:
            ids_json = orjson.dumps(list(dict.fromkeys(r.id for r in chunk))).decode()
            current = {vid: (key, (ns, md, vec)) for key, vid, ns, md, vec in conn.execute(
                "SELECT key, id, namespace, metadata, vec FROM vectors WHERE index_id = ? AND id IN "
                "(SELECT value FROM json_each(?))", (iid, ids_json))}
            # Each line counts once, as if applied in order (earlier chunks already were); only the
            # last occurrence of an id reaches SQLite.
            state = {vid: v for vid, (_, v) in current.items()}
            latest: dict[str, Any] = {}
            for rec in chunk:
                val = (rec.namespace, rec.metadata_json, rec.values.tobytes())
                prev = state.get(rec.id)
                if prev is None:
                    result.inserted += 1
                elif prev == val:
                    result.unchanged += 1
                else:
                    result.replaced += 1
                state[rec.id] = val
                latest.pop(rec.id, None)
                latest[rec.id] = rec
            # A record that ends identical to the stored one is left alone: re-running an upsert of
            # the same file changes nothing but the mutation log (no key churn, no ANN tombstones).
            same = {vid for vid in latest if vid in current and current[vid][1] == state[vid]}
            kept = [(rec, current[vid][0]) for vid, rec in latest.items() if vid in same]
            chunk = [r for r in latest.values() if r.id not in same]
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
        if bulk is not None:
            bulk.feed(conn, row, base, chunk, row["vector_count"] + result.net + len(chunk) - removed)
        if props:
            for i, rec in enumerate(chunk):
                _index_values(props, rec, base + i, mv)
        new = len(chunk)
        if mv:
            conn.executemany("INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", mv)
        result.count += n_read
        result.net += new - removed
        if not upsert:
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
        with interrupt_guard() as guard, self.store.write() as conn:
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
            guard.mode = "record"
        self._maintain(name, result, guard)
        return result

    def _maintain(self, name: str, result: WriteResult, guard: InterruptGuard) -> None:
        """Merge the ANN file after a committed write; a failure says the write itself is safe."""
        from vzcli import ann

        if not self.maintain:
            return
        later = f"queries stay correct (recent writes are searched exactly); the next write or 'vz optimize {name}' retries"
        if guard.pending:
            if not result.notes:
                result.notes.append(f"interrupted after the commit: the ANN file of {name!r} was not updated; {later}.")
            return
        guard.mode = "stop-merge"
        try:
            ann.maintain(self.store, name)
        except KeyboardInterrupt:
            result.notes.append(f"interrupted while updating the ANN file of {name!r}; {later}.")
        except (VzError, OSError, RuntimeError, ValueError) as e:
            detail = e.message if isinstance(e, VzError) else (getattr(e, "strerror", None) or str(e))
            cls = type(e) if isinstance(e, StoreError) else StoreError  # keeps 1003 for a lock timeout
            raise cls(f"The write was committed (mutation {result.mutation_id}), but updating the ANN file of "
                      f"{name!r} failed: {detail}. Queries stay correct (recent writes are searched "
                      "exactly); the next write retries.") from None
        finally:
            guard.mode = "record"

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
                "efConstruction": ann.ef_construction_for(row["ann_nodes"], row["expansion_add"]),
                "annDtype": row["dtype"],
                "seconds": round(time.monotonic() - t, 3)}

class _BulkBuild:
    """A bulk write into an index without an ANN file builds the file while it is written
    (`annbuild`), instead of reading everything back from SQLite after the commit."""

    def __init__(self, store: Store, name: str, stream: BinaryIO | None = None) -> None:
        self.store, self.name = store, name
        self.stream, self.span = stream, _input_span(stream)
        self.builder: Any = None
        self.off = False  # not eligible, or could not start: the usual merge after the commit
        self.dead: list[int] = []
        self._locks = ExitStack()
        self._autocheckpoint: tuple[sqlite3.Connection, int] | None = None

    def feed(self, conn: sqlite3.Connection, row: dict[str, Any], base: int, chunk: list[Any], rows: int) -> None:
        """Records `chunk` were just stored under keys base, base+1, ...; `rows` is the index's size now."""
        import numpy as np

        from vzcli import ann

        if self.builder is not None:
            if chunk:
                try:
                    if not self.builder.add(np.arange(base, base + len(chunk), dtype=np.uint64),
                                            np.stack([r.values for r in chunk]), self.expected(rows)):
                        self.close()  # float16 cannot hold these: the merge after the commit builds f32
                except OSError:  # the builder died: the merge after the commit does its work
                    self.close()
            return
        if self.off or row["ann_file"] is not None or rows < ann.merge_threshold():
            self.off = self.off or row["ann_file"] is not None
            return
        self.off = True
        if not self._locks.enter_context(ann.merge_lock(self.store.index_dir(self.name), wait=False)):
            return  # another process is building this index's file
        from vzcli.annbuild import Builder

        self.dead = [k for (k,) in conn.execute("SELECT key FROM dead_keys WHERE index_id = ?", (row["id"],))]
        # no checkpoint at the commit: copying the write into the database file would keep the
        # builder waiting for the commit frame; `finish` checkpoints while the child builds
        self._autocheckpoint = (conn, conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            self.builder = Builder({**row, "dtype": envconf.ann_dtype()}, self.store.index_dir(self.name))
            cur = conn.execute("SELECT key, vec FROM vectors WHERE index_id = ? ORDER BY key", (row["id"],))
            expect = self.expected(rows)
            while batch := cur.fetchmany(ann.CHUNK):
                if not self.builder.add(np.fromiter((k for k, _ in batch), dtype=np.uint64, count=len(batch)),
                                        np.frombuffer(b"".join(v for _, v in batch), dtype=np.float32)
                                        .reshape(len(batch), -1), expect):
                    return self.close()
        except OSError:
            self.close()

    def expected(self, rows: int) -> int:
        """How many records the index will hold once the input is read (`rows` now): from the
        share of a seekable input read so far, else `rows`. The builder adds every node at the
        ef_construction of that size (`ann.ef_construction_for`), as a rebuild does."""
        if self.span is None or self.stream is None:
            return rows
        start, end = self.span
        try:
            done = self.stream.tell() - start
        except (OSError, ValueError):
            return rows
        return rows if done <= 0 else max(rows, int(rows * (end - start) / done))

    def finish(self, row: dict[str, Any], seq: int, result: WriteResult, guard: InterruptGuard) -> None:
        """After the commit: publish and install the file; on failure the merge that follows rebuilds."""
        from vzcli import ann

        if self.builder is None:
            return self.close()
        guard.mode = "stop-merge"
        try:
            self.builder.commit(seq)
            self._checkpoint()
            new_file = self.builder.result()
            ann.install(self.store, self.name, self.builder.row, None, new_file, self.dead, self.builder.max_key,
                        self.builder.nodes, 0, seq)
        except KeyboardInterrupt:
            result.notes.append(f"interrupted while building the ANN file of {self.name!r}; queries stay correct "
                                f"(recent writes are searched exactly); the next write or 'vz optimize {self.name}' "
                                "builds it.")
        except (VzError, OSError, RuntimeError, ValueError):
            pass  # the merge after the commit rebuilds from SQLite
        finally:
            guard.mode = "record"
            self.close()

    def _checkpoint(self) -> None:
        """Copy the committed write into the database file (what the commit would have done) and
        put the connection's automatic checkpoints back. Inside the write (the builder was dropped
        halfway), only the latter: the commit then checkpoints as any commit does."""
        if self._autocheckpoint is None:
            return
        conn, pages = self._autocheckpoint
        self._autocheckpoint = None
        try:
            if not conn.in_transaction:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # a reader or writer holds it up: the next commit's automatic checkpoint does it
        finally:
            conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def close(self) -> None:
        if self.builder is not None:
            self.builder.abort()
            self.builder = None
        self._checkpoint()
        self._locks.close()


def _input_span(stream: BinaryIO | None) -> tuple[int, int] | None:
    """(position, size) of a seekable input (a file, a buffer); None for a pipe or a terminal."""
    try:
        if stream is None or not stream.seekable():
            return None
        start = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(start)
    except (OSError, ValueError):
        return None
    return (start, end) if end > start else None


def _index_values(props: dict[str, tuple[int, str]], rec: Any, key: int, out: list[tuple[int, Any, int]]) -> None:
    """Append the (metadata index, value, key) rows of record `rec` stored under `key`."""
    if props and rec.metadata:
        for prop, (pid, itype) in props.items():
            iv = to_index_value(extract(rec.metadata, prop), itype)
            if iv is not None:
                out.append((pid, iv, key))

