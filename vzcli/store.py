"""The on-disk store: a SQLite catalog (source of truth) plus one directory of ANN files per index.

Layout::

    <store>/catalog.sqlite3        WAL; every index, record, metadata-index value and mutation
    <store>/indexes/<name>/        derived usearch HNSW files (ann-<n>.usearch), rebuildable

The schema changes only through the numbered migrations in `MIGRATIONS`, applied on open and
recorded in `PRAGMA user_version`. Writers serialise on SQLite's write lock (`BEGIN IMMEDIATE`);
readers never block (WAL).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vzcli.errors import LockTimeout, StoreError

CATALOG = "catalog.sqlite3"
DEFAULT_LOCK_TIMEOUT = 60.0


def json_keys(keys: list[int]) -> str:
    """`keys` as one JSON parameter, for `key IN (SELECT value FROM json_each(?))`: one statement
    for any number of keys (bound parameters are capped), as fast as a placeholder list."""
    return "[" + ",".join(map(str, keys)) + "]"


def now_iso() -> str:
    """Cloudflare's timestamp shape: `2024-07-11T13:02:18.002680Z`."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_mutation_id() -> str:
    return str(uuid.uuid4())


def default_store_path() -> Path:
    env = os.environ.get("VZ_STORE")
    return Path(env) if env else Path.cwd() / ".vz"


# --- migrations -------------------------------------------------------------------------------

def _m001_initial(db: Any) -> None:
    """Indexes, records, metadata indexes and their values, and the mutation log."""
    db["indexes"].create({
        "id": int, "name": str, "description": str, "dimensions": int, "metric": str,
        "dtype": str, "connectivity": int, "expansion_add": int, "expansion_search": int,
        "created_on": str, "modified_on": str, "vector_count": int, "last_mutation": int,
        "ann_file": str, "ann_max_key": int, "ann_nodes": int, "ann_dead": int,
        "ann_tombstones": int, "ann_seq": int,
    }, pk="id", not_null={"name", "dimensions", "metric", "dtype", "created_on", "modified_on"},
        defaults={"vector_count": 0, "ann_max_key": 0, "ann_nodes": 0, "ann_dead": 0,
                  "ann_tombstones": 0, "dtype": "f32", "connectivity": 16, "expansion_add": 128,
                  "expansion_search": 64})
    db["indexes"].create_index(["name"], unique=True)
    # key is the usearch key: AUTOINCREMENT so a key is never reused, even after deletes.
    db.execute("""CREATE TABLE vectors (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        index_id INTEGER NOT NULL,
        id TEXT NOT NULL,
        namespace TEXT,
        metadata TEXT,
        vec BLOB NOT NULL
    )""")
    db.execute("CREATE UNIQUE INDEX vectors_id ON vectors(index_id, id)")
    db.execute("CREATE INDEX vectors_ns ON vectors(index_id, namespace, key)")
    db["metadata_indexes"].create({
        "id": int, "index_id": int, "property_name": str, "index_type": str, "created_on": str,
    }, pk="id", not_null={"index_id", "property_name", "index_type", "created_on"})
    db["metadata_indexes"].create_index(["index_id", "property_name"], unique=True)
    # One row per (metadata index, vector) whose value had the index's type when written.
    db.execute("""CREATE TABLE mvals (
        prop_id INTEGER NOT NULL,
        val NOT NULL,
        key INTEGER NOT NULL,
        PRIMARY KEY (prop_id, val, key)
    ) WITHOUT ROWID""")
    db.execute("CREATE INDEX mvals_key ON mvals(key, prop_id)")
    # Keys of deleted or replaced records whose nodes may still sit in the ANN file.
    db.execute("""CREATE TABLE dead_keys (
        index_id INTEGER NOT NULL,
        key INTEGER NOT NULL,
        PRIMARY KEY (index_id, key)
    ) WITHOUT ROWID""")
    db["mutations"].create({
        "seq": int, "uuid": str, "index_id": int, "kind": str, "count": int, "created_on": str,
    }, pk="seq", not_null={"uuid", "index_id", "kind", "count", "created_on"})
    db["mutations"].create_index(["index_id", "seq"])


MIGRATIONS: list[Callable[[Any], None]] = [_m001_initial]
SCHEMA_VERSION = len(MIGRATIONS)


class Store:
    """A store on disk. Cheap to construct; the catalog is opened on first use."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        env_timeout = os.environ.get("VZ_LOCK_TIMEOUT")
        self.lock_timeout = lock_timeout if lock_timeout is not None else (
            float(env_timeout) if env_timeout else DEFAULT_LOCK_TIMEOUT)
        self._conn: sqlite3.Connection | None = None
        # threads other than the one that opened `_conn` (vz serve's workers) get a connection
        # each: one connection cannot hold two threads' transactions at once
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    # --- paths ---
    @property
    def catalog_path(self) -> Path:
        return self.path / CATALOG

    def index_dir(self, name: str) -> Path:
        return self.path / "indexes" / name

    def exists(self) -> bool:
        return self.catalog_path.exists()

    # --- connection ---
    def conn(self, *, create: bool = False) -> sqlite3.Connection | None:
        """The catalog connection; None when the store does not exist and `create` is false."""
        if self._conn is not None:
            return self._conn
        if not self.exists():
            if not create:
                return None
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                (self.path / "indexes").mkdir(exist_ok=True)
            except OSError as e:
                raise StoreError(f"Cannot create the store at {self.path}: {e.strerror or e}") from None
        try:
            try:
                conn = self._connect(self.catalog_path)
            except sqlite3.OperationalError:
                if os.access(self.path, os.W_OK):
                    raise
                conn = self._connect_read_only()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"Cannot open the catalog {self.catalog_path}: {e}") from None
        self._conn = conn  # _migrate writes through self.write(), which needs it
        self._owner = threading.get_ident()
        try:
            self._migrate(conn)
        except BaseException:
            # a schema this vz cannot use must stay unusable, not be served on the next call
            self._conn = None
            conn.close()
            raise
        return conn

    def _connect(self, target: str | Path, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=self.lock_timeout,
                               uri=uri)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                try:
                    conn.execute("PRAGMA journal_mode = WAL")
                except sqlite3.OperationalError:
                    pass  # read-only store: stay in its current mode
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = OFF")
            # a bulk insert grows the WAL to its own size; after the checkpoint, give the space back
            conn.execute("PRAGMA journal_size_limit = 67108864")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """Open a store in a directory we cannot write to (read-only mount, other owner).

        A WAL database needs its -shm file: `mode=ro` works while one exists (a writer elsewhere
        has the store open). Without one, `immutable=1` reads the file as it is, which is right
        only when no committed data waits in the -wal file, so that case is refused.
        """
        from urllib.parse import quote

        base = "file:" + quote(str(self.catalog_path.resolve()))
        try:
            return self._connect(base + "?mode=ro", uri=True)
        except sqlite3.OperationalError:
            wal = self.catalog_path.with_name(CATALOG + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(f"The store {self.path} is read-only and its write-ahead log "
                                 f"({wal.name}) holds changes not yet folded into the catalog; run any vz "
                                 "command on it once with write access") from None
            return self._connect(base + "?immutable=1", uri=True)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"The store at {self.path} has schema version {version}, newer than this "
                             f"vz understands ({SCHEMA_VERSION}); upgrade vz")
        import sqlite_utils  # only when a migration is due: it costs start-up time

        db = sqlite_utils.Database(conn)
        with self.write():
            version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
            for number in range(version, SCHEMA_VERSION):
                MIGRATIONS[number](db)
                conn.execute(f"PRAGMA user_version = {number + 1}")

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
            self._local = threading.local()
        for r in readers:
            r.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _thread_conn(self, *, create: bool = False) -> sqlite3.Connection | None:
        """The connection this thread reads and writes through (see `_readers`)."""
        conn = self.conn(create=create)
        if conn is None or threading.get_ident() == self._owner:
            return conn
        local = self._local
        rc: sqlite3.Connection | None = getattr(local, "conn", None)
        if rc is None:
            try:
                rc = self._connect(self.catalog_path)
            except sqlite3.OperationalError:
                rc = self._connect_read_only()
            local.conn = rc
            with self._readers_lock:
                self._readers.append(rc)
        return rc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock; rolled back on any exception."""
        conn = self._thread_conn(create=True)
        assert conn is not None
        start = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _translate(e, self, time.monotonic() - start) from None
        try:
            yield conn
        except sqlite3.DatabaseError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(e, self, time.monotonic() - start) from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(e, self, time.monotonic() - start) from None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection | None]:
        """A consistent read snapshot (a deferred transaction), or None for a missing store."""
        conn = self._thread_conn()
        if conn is None:
            yield None
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def record_mutation(self, conn: sqlite3.Connection, index_id: int, kind: str, count: int) -> tuple[int, str]:
        """Append to the mutation log inside the caller's write transaction."""
        mid = new_mutation_id()
        ts = now_iso()
        cur = conn.execute("INSERT INTO mutations(uuid, index_id, kind, count, created_on) VALUES (?,?,?,?,?)",
                           (mid, index_id, kind, count, ts))
        seq = cur.lastrowid
        assert seq is not None
        conn.execute("UPDATE indexes SET last_mutation = ? WHERE id = ?", (seq, index_id))
        return seq, mid


def _translate(e: sqlite3.DatabaseError, store: Store, waited: float) -> Exception:
    msg = str(e)
    if "locked" in msg or "busy" in msg:
        return LockTimeout(f"The store {store.path} stayed locked by another writer for {waited:.0f}s; "
                           "retry, or raise VZ_LOCK_TIMEOUT (seconds)")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"The store {store.path} is read-only: {msg}")
    if "disk" in msg or "full" in msg:
        # SQLite reports a full disk or a file-size limit (EFBIG) as "disk I/O error" or "disk is full"
        return StoreError(f"Cannot write to the store {store.path}: {msg} (is the disk full?); nothing was changed")
    return StoreError(f"Store error in {store.path}: {msg}")
