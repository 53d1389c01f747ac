"""What a resident reader (`vz serve`, a library `LocalBackend`) keeps between two commits.

A `Snapshot` holds what queries need from the catalog that cannot change until the next commit,
so that a query between two writes reads nothing from SQLite but `PRAGMA data_version`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from vzcli.catalog import index_row as _row
from vzcli.catalog import meta_indexes as _meta_indexes
from vzcli.store import Store


class Snapshot:
    """What a query needs from the catalog that cannot change until the next commit.

    Keyed by the connection's `PRAGMA data_version` (bumped by other connections' commits; it
    also pins the read snapshot) and its `total_changes` (bumped by its own): a resident
    backend then skips the catalog row, the metadata indexes, the delta search and the dead-key
    check on every query between two writes. One per thread and connection (queries run on
    several threads in `vz serve`), so nothing here is shared.
    """

    __slots__ = ("conn", "stamp", "rows", "props", "delta_empty", "dead_free", "dirs", "deltas", "delta_ids", "files", "lean",
                 "wal", "unchecked", "held")

    DELTA_CACHE_MAX = 20_000  # records newer than the file kept in memory per index (a merge is due at 2,000)
    DELTA_FLOATS = 1 << 22  # and at most this many of their floats (16 MiB: 2,730 records at 1536-d)
    HELD_FLOATS = 1 << 23  # floats held for all indexes together (32 MiB per thread), however many are queried

    def __init__(self, conn: sqlite3.Connection, stamp: tuple[int, int]) -> None:
        self.conn, self.stamp = conn, stamp
        self.rows: dict[str, dict[str, Any]] = {}
        self.props: dict[int, dict[str, tuple[int, str]]] = {}
        self.delta_empty: dict[int, bool] = {}
        self.dead_free: dict[int, bool] = {}
        self.dirs: dict[str, Path] = {}
        self.deltas: dict[int, tuple[Any, Any] | None] = {}
        self.delta_ids: dict[int, list[tuple[str, str | None]]] = {}  # (id, namespace) of `deltas`' rows
        self.files: dict[str, Any] = {}
        self.held = 0  # floats of `deltas`
        self.wal: bytes | None = None  # the wal-index header when last proved current (`snapshot`)
        self.unchecked = 0  # snapshots returned on the header's word since the pragma last looked
        # index name -> (row, opened, held delta, its ids) when an unfiltered query needs nothing
        # from SQLite: its file is resident and holds no deleted key, and the records newer than
        # it are few and held here (`Reads._lean_query`)
        self.lean: dict[str, tuple[dict[str, Any], Any, Any, list[tuple[str, str | None]] | None]] = {}

    def row(self, name: str) -> dict[str, Any]:
        r = self.rows.get(name)
        if r is None:
            r = self.rows[name] = _row(self.conn, name)
        return r

    def index_dir(self, store: Store, name: str) -> Path:
        d = self.dirs.get(name)
        if d is None:
            d = self.dirs[name] = store.index_dir(name)
        return d

    def opened(self, store: Store, name: str, row: dict[str, Any]) -> Any:
        """The index's file as `search.open_for_query` gives it (an `ann.Opened` or None), opened
        once per snapshot: its identity is checked again after each commit this process sees,
        not on every query (a published file is never written again; a replaced one stays
        unused until then, and its mapping keeps the verified bytes). Ids and namespaces loaded."""
        if name in self.files:
            return self.files[name]
        from vzcli import ann, search

        opened = search.open_for_query(self.conn, row, self.index_dir(store, name), resident=True)
        if opened is not None and opened.fv is not None and opened.fv.resident:
            ann.file_info(opened.fv, self.conn)
        self.files[name] = opened
        return opened

    def meta(self, index_id: int) -> dict[str, tuple[int, str]]:
        p = self.props.get(index_id)
        if p is None:
            p = self.props[index_id] = _meta_indexes(self.conn, index_id)
        return p

    def no_delta(self, row: dict[str, Any]) -> bool:
        """No record is newer than the index's ANN file (nothing to search exactly beside it)."""
        v = self.delta_empty.get(row["id"])
        if v is None:
            v = self.delta_empty[row["id"]] = self.conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM vectors WHERE index_id = ? AND key > ?)",
                (row["id"], row["ann_max_key"])).fetchone()[0] == 1
        return v

    def delta(self, row: dict[str, Any]) -> tuple[Any, Any] | None:
        """(keys, float32 matrix) of the records newer than the index's ANN file (of all of them
        for an index without one), read once per snapshot; None when there are more than
        DELTA_CACHE_MAX, or DELTA_FLOATS floats, or more than what is left of HELD_FLOATS for
        every index of the snapshot (then each query reads them)."""
        if row["id"] in self.deltas:
            return self.deltas[row["id"]]
        import numpy as np

        dims = row["dimensions"]
        most = max(0, min(self.DELTA_CACHE_MAX, self.DELTA_FLOATS // dims, (self.HELD_FLOATS - self.held) // dims))
        rows = self.conn.execute("SELECT key, id, namespace, vec FROM vectors WHERE index_id = ? AND key > ? "
                                 "ORDER BY key LIMIT ?", (row["id"], row["ann_max_key"], most + 1)).fetchall()
        got = None
        if len(rows) <= most:
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            mat = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float32).reshape(len(rows), dims)
            got = (keys, mat)
            self.delta_ids[row["id"]] = [(r[1], r[2]) for r in rows]
            self.held += mat.size
        self.deltas[row["id"]] = got
        return got

    def no_dead(self, index_id: int) -> bool:
        """No key of the index is listed dead (so no key of its file can be)."""
        v = self.dead_free.get(index_id)
        if v is None:
            v = self.dead_free[index_id] = self.conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM dead_keys WHERE index_id = ?)", (index_id,)).fetchone()[0] == 1
        return v


_TLS = threading.local()


RECHECK = 32  # lean queries between two checks of the wal-index header against the pragma


def snapshot(conn: sqlite3.Connection, store: Store | None = None, *, make: bool = True) -> Snapshot | None:
    """This thread's `Snapshot` of `conn`, current as of now (call it first in a read transaction).

    `make=False`: the current one if this thread has it, else None. Outside a transaction the
    check is a read transaction of its own, or, with `store`, a look at the catalog's wal-index
    header (`wal_index`): either way a snapshot returned is one nothing was committed after
    (`Reads._lean_query` relies on it)."""
    snaps: dict[int, Snapshot] | None = getattr(_TLS, "snaps", None)
    if snaps is None:
        snaps = _TLS.snaps = {}
    s = snaps.get(id(conn))
    wal = store.wal_index.header(conn) if store is not None else None  # before the pragma: never newer
    if s is not None and s.conn is conn and not make and wal is not None and wal == s.wal \
            and s.stamp[1] == conn.total_changes and s.unchecked < RECHECK:
        s.unchecked += 1
        return s
    stamp = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
    if s is None or s.conn is not conn or s.stamp != stamp:
        if s is not None and s.conn is conn and s.stamp[1] == stamp[1] and wal is not None and store is not None \
                and store.wal_index.header(conn) == s.wal:
            store.wal_index.refuse(conn)  # another connection committed, and the header did not show it
        if not make:
            return None
        if len(snaps) > 16:
            snaps.clear()
        s = snaps[id(conn)] = Snapshot(conn, stamp)
    s.wal, s.unchecked = wal, 0
    return s
