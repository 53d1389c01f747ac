"""The on-disk store: a SQLite catalog (source of truth) plus one directory of ANN files per index.

Layout::

    <store>/catalog.sqlite3        WAL; every index, record, metadata-index value and mutation
    <store>/indexes/<name>/        derived usearch HNSW files (ann-<n>.usearch), rebuildable

The schema changes only through the numbered migrations in `MIGRATIONS`, applied by the first
write of a process and recorded in `PRAGMA user_version`; `PRAGMA application_id` marks the file
as vz's (`APPLICATION_ID`). Writers serialise on SQLite's write lock (`BEGIN IMMEDIATE`);
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

from vzcli import envconf
from vzcli.errors import CorruptCatalog, ForeignCatalog, LockTimeout, MissingCatalog, StoreError
from vzcli.wal_index import WalIndex

CATALOG = "catalog.sqlite3"


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
    return envconf.store_dir() or Path.cwd() / ".vz"


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


def _m002_vectors_by_index_key(db: Any) -> None:
    """Each index's records in key order: the delta of one index (`index_id = ? AND key > ?`) is
    found without walking the keys of every other index in the store."""
    db.execute("CREATE INDEX IF NOT EXISTS vectors_key ON vectors(index_id, key)")


def _m003_vectors_ns_partial(db: Any) -> None:
    """Index only the records that have a namespace: a store that uses none (most) saves ~16 bytes
    per record. Queries name a namespace with `namespace = ?`, which a partial index on
    `namespace IS NOT NULL` serves."""
    db.execute("DROP INDEX IF EXISTS vectors_ns")
    db.execute("CREATE INDEX vectors_ns ON vectors(index_id, namespace, key) WHERE namespace IS NOT NULL")


# To add a migration: append `_mNNN_what(db)` to MIGRATIONS. It runs inside the write transaction
# that sets `user_version`; raise OLDEST_READABLE to its number only if read commands cannot use a
# catalog that lacks it (a read never migrates: it asks the user to run a write instead).
MIGRATIONS: list[Callable[[Any], None]] = [_m001_initial, _m002_vectors_by_index_key, _m003_vectors_ns_partial]
SCHEMA_VERSION = len(MIGRATIONS)
OLDEST_READABLE = 1

# `PRAGMA application_id` of every catalog vz creates or migrates: ASCII "vzvz".
APPLICATION_ID = 0x767A767A
# Catalogs written before vz set application_id (schema version 1) are recognised by their tables.
UNMARKED_TABLES = {1: frozenset({"indexes", "vectors", "metadata_indexes", "mvals", "dead_keys", "mutations"})}

VZ, BLANK = "vz", "blank"

# SQLite's page size for new catalogs. A record is its float32 vector plus ~30 bytes, and SQLite
# keeps whole records in a page: with 4 KiB pages a 768-d record (3,102 bytes) fills one page alone
# (25% of the file empty), a 384-d one two to a page, a 128-d one seven. 16 KiB pages waste <6% at
# every common width. Existing catalogs keep theirs (changing it rewrites the whole file).
PAGE_SIZE = 16384


def inspect_catalog(conn: sqlite3.Connection) -> tuple[str, int, str]:
    """(kind, user_version, detail) of the database behind `conn`, read without writing.

    kind is "vz" (marked by vz, or an unmarked catalog of an older vz), "blank" (no tables: vz may
    create its schema there) or "foreign" (detail says what it holds instead).
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")}
    if app_id == APPLICATION_ID:
        return VZ, version, ""
    if app_id != 0:
        return "foreign", version, f"its application_id is {app_id:#010x}, not vz's {APPLICATION_ID:#010x}"
    if not tables and version == 0:
        return BLANK, 0, ""
    if UNMARKED_TABLES.get(version) == tables:
        return VZ, version, ""
    shown = ", ".join(sorted(tables)[:8]) + (", ..." if len(tables) > 8 else "")
    return "foreign", version, f"it holds the tables {shown} (user_version {version})" if tables else \
        f"it has no tables but user_version {version}"


class Store:
    """A store on disk. Cheap to construct; the catalog is opened on first use.

    Opening never writes to a file vz did not make: the catalog is first inspected read-only (its
    header, then a read-only SQLite connection), and a database of another program is refused.
    Reads never migrate and never change the journal mode; the first write of a process marks,
    migrates and switches the catalog to WAL, inside its write lock.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, lock_timeout: float | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.lock_timeout = lock_timeout if lock_timeout is not None else envconf.lock_timeout()
        self._conn: sqlite3.Connection | None = None
        self._writable = False  # the open connection has been checked (and migrated) for writes
        # threads other than the one that opened `_conn` (vz serve's workers) get a connection
        # each: one connection cannot hold two threads' transactions at once
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.wal_index = WalIndex(self.path / (CATALOG + "-shm"))  # commits seen without a syscall

    # --- paths ---
    @property
    def catalog_path(self) -> Path:
        return self.path / CATALOG

    def index_dir(self, name: str) -> Path:
        return self.path / "indexes" / name

    def exists(self) -> bool:
        """Whether the catalog exists; raises when the store path cannot be a store (see `_check_path`)."""
        if self.catalog_path.exists():
            return True
        self._check_path()
        return False

    def index_dirs(self) -> list[Path]:
        """The directories under `indexes/`, sorted (whether or not the catalog knows them)."""
        try:
            return sorted(p for p in (self.path / "indexes").iterdir() if p.is_dir())
        except OSError:
            return []

    # --- connection ---
    def conn(self, *, create: bool = False, prepare: bool = True) -> sqlite3.Connection | None:
        """The catalog connection; None when the store (or its catalog) does not exist yet and
        `create` is false. With `create`, the catalog is created or migrated as needed (through
        this connection, unless `prepare` is false: `_thread_conn` then prepares it through the
        calling thread's own connection)."""
        if self._conn is None:
            kind = self._preflight(create)
            if kind is None:
                return None
            if kind == BLANK and not create:
                return None  # an empty database file: nothing to read, and a read must not claim it
            self._open()
        assert self._conn is not None
        if create and prepare and not self._writable:
            self._prepare_write(self._conn)
        return self._conn

    def _preflight(self, create: bool) -> str | None:
        """Check the store without writing: None (no catalog yet), "vz" or "blank"; else raise."""
        cat = self.catalog_path
        if not cat.exists():
            self._check_path()
            if not create:
                return None
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                (self.path / "indexes").mkdir(exist_ok=True)
            except OSError as e:
                raise StoreError(f"Cannot create the store at {self.path}: {e.strerror or e}") from None
            return BLANK
        if not cat.is_file():
            raise ForeignCatalog(f"The catalog {cat} is not a regular file; vz will not use it")
        # Only through SQLite: closing a plain file descriptor of the catalog would drop the POSIX
        # locks of every SQLite connection this process has on it (a server's other threads).
        wal = cat.with_name(CATALOG + "-wal")
        pending = wal.exists() and wal.stat().st_size > 0
        if cat.stat().st_size == 0 and not pending:
            return BLANK
        from urllib.parse import quote

        base = "file:" + quote(str(cat.resolve()))
        try:
            # immutable=1 reads the file as it is, creating nothing; the header's application_id
            # is written before a catalog ever goes to WAL mode, so it is current there
            kind, detail = self._inspect(base + "?immutable=1", header_only=True)
            if kind == "unmarked":
                # an older vz's catalog, an empty database or another program's: look at its tables
                # (through the -wal, read-only, when one holds commits)
                kind, detail = self._inspect(base + ("?mode=ro" if pending else "?immutable=1"), header_only=False)
        except sqlite3.DatabaseError as e:
            if "not a database" in str(e):
                raise ForeignCatalog(f"The catalog {cat} is not a SQLite database, so it is not vz's; vz will not "
                                     "touch it. Give another --store, or move the file away (if vz made it, it "
                                     "is damaged beyond repair: restore a backup)") from None
            raise _translate(e, self, 0.0) from None
        if kind == "foreign":
            raise self._foreign(detail)
        return kind

    @staticmethod
    def _inspect(uri: str, *, header_only: bool) -> tuple[str, str]:
        ro = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        try:
            if header_only:
                app_id = ro.execute("PRAGMA application_id").fetchone()[0]
                if app_id == APPLICATION_ID:
                    return VZ, ""
                if app_id != 0:
                    return "foreign", f"its application_id is {app_id:#010x}, not vz's {APPLICATION_ID:#010x}"
                return "unmarked", ""
            kind, _, detail = inspect_catalog(ro)
            return kind, detail
        finally:
            ro.close()

    def _check_path(self) -> None:
        """A store without a catalog must be a directory without index directories (a new store)."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"The store path {self.path} is a file, not a store directory; give a directory "
                             "with --store (or VZ_STORE)")
        dirs = self.index_dirs()
        if dirs:
            names = ", ".join(d.name for d in dirs[:5]) + (", ..." if len(dirs) > 5 else "")
            raise MissingCatalog(
                f"The store {self.path} has index directories ({names}) but no catalog ({CATALOG}): the "
                f"catalog was deleted or moved. Restore {CATALOG} from a backup; to start over instead, "
                f"delete {self.path / 'indexes'} (it holds only files derived from the catalog)")

    def _foreign(self, detail: str) -> ForeignCatalog:
        return ForeignCatalog(f"The catalog {self.catalog_path} belongs to another program ({detail}); vz neither "
                              "reads nor writes it. Give another --store, or move the file away")

    def _open(self) -> None:
        try:
            try:
                conn = self._connect(self.catalog_path)
                conn.execute("PRAGMA user_version").fetchone()  # opening is lazy: touch the file now
            except sqlite3.OperationalError:
                if os.access(self.path, os.W_OK):
                    raise
                conn = self._connect_read_only()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"Cannot open the catalog {self.catalog_path}: {e}") from None
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as e:
            conn.close()
            raise _translate(e, self, 0.0) from None
        try:
            self._check_version(version, writing=False)
        except StoreError:
            conn.close()  # a schema this vz cannot use stays unusable, not served on the next call
            raise
        self._conn, self._writable = conn, False
        self._owner = threading.get_ident()

    def _check_version(self, version: int, *, writing: bool) -> None:
        if version > SCHEMA_VERSION:
            raise StoreError(f"The store at {self.path} has schema version {version}, newer than this vz "
                             f"understands ({SCHEMA_VERSION}); upgrade vz")
        if not writing and 0 < version < OLDEST_READABLE:
            raise StoreError(f"The store at {self.path} has schema version {version}, older than this vz reads "
                             f"({OLDEST_READABLE}..{SCHEMA_VERSION}); run any write command (or "
                             "`vz doctor --repair`) once to migrate it")

    def _connect(self, target: str | Path, uri: bool = False) -> sqlite3.Connection:
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=self.lock_timeout,
                               uri=uri)
        try:
            # connection settings only: nothing here writes to the file
            conn.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
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
            conn = self._connect(base + "?mode=ro", uri=True)
            conn.execute("PRAGMA user_version").fetchone()
            self.wal_index.refuse(conn)
            return conn
        except sqlite3.OperationalError:
            wal = self.catalog_path.with_name(CATALOG + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(f"The store {self.path} is read-only and its write-ahead log "
                                 f"({wal.name}) holds changes not yet folded into the catalog; run any vz "
                                 "command on it once with write access") from None
            conn = self._connect(base + "?immutable=1", uri=True)
            self.wal_index.refuse(conn)
            return conn

    def _prepare_write(self, conn: sqlite3.Connection) -> None:
        """Before the first write: under the write lock, check the catalog is vz's (the authoritative
        look, through the WAL), mark it, run due migrations; then make sure it is in WAL mode."""
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file (SQLite ignores it inside a transaction)
        with self._transaction(conn):
            kind, version, detail = inspect_catalog(conn)
            if kind == "foreign":
                raise self._foreign(detail)  # rolled back: nothing was written
            self._check_version(version, writing=True)
            if version < SCHEMA_VERSION:
                import sqlite_utils  # only when a migration is due: it costs start-up time

                db = sqlite_utils.Database(conn)
                for number in range(version, SCHEMA_VERSION):
                    MIGRATIONS[number](db)
                    conn.execute(f"PRAGMA user_version = {number + 1}")
            if kind == BLANK or conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            try:
                conn.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:
                pass  # read-only, or another connection is mid-switch: the next writer retries
        self._writable = True

    def close(self) -> None:
        self.wal_index.forget()
        with self._readers_lock:
            readers, self._readers = self._readers, []
            self._local = threading.local()
        for r in readers:
            r.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._writable = False

    def _thread_conn(self, *, create: bool = False) -> sqlite3.Connection | None:
        """The connection this thread reads and writes through (see `_readers`)."""
        if threading.get_ident() == self._owner:
            return self.conn(create=create)
        # the first write of a store prepares the catalog through the writing thread's own connection:
        # the owner's may be in use by its thread at that very moment (vz serve's reader threads)
        conn = self.conn(create=create, prepare=False)
        if conn is None:
            return conn
        local = self._local
        # a thread that has just opened the store owns `conn`; any other reads through its own
        rc: sqlite3.Connection | None = conn if threading.get_ident() == self._owner else getattr(local, "conn", None)
        if rc is None:
            try:
                rc = self._connect(self.catalog_path)
            except sqlite3.OperationalError:
                rc = self._connect_read_only()
            local.conn = rc
            with self._readers_lock:
                self._readers.append(rc)
        if create and not self._writable:
            self._prepare_write(rc)
        return rc

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock; rolled back on any exception."""
        conn = self._thread_conn(create=True)
        assert conn is not None
        with self._transaction(conn):
            yield conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection) -> Iterator[None]:
        start = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _translate(e, self, time.monotonic() - start) from None
        try:
            yield
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
        except sqlite3.DatabaseError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise _translate(e, self, time.monotonic() - start) from None

    def reader(self) -> sqlite3.Connection | None:
        """This thread's connection, for a statement outside any transaction (`read` for more
        than one); None for a missing store."""
        return self._thread_conn()

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
        except sqlite3.DatabaseError as e:
            raise _translate(e, self, 0.0) from None
        finally:
            if conn.in_transaction:
                try:
                    conn.execute("COMMIT")
                except sqlite3.DatabaseError:  # a damaged catalog can refuse even to end a read
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")

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
    if "malformed" in msg or "not a database" in msg or "corrupt" in msg:
        return CorruptCatalog(f"The catalog {store.catalog_path} is damaged ({msg}); nothing was changed. Run "
                              "`vz doctor` to see the damage and `vz doctor --repair` to recover what SQLite can read")
    if "locked" in msg or "busy" in msg:
        return LockTimeout(f"The store {store.path} stayed locked by another writer for {waited:.0f}s; "
                           "retry, or raise VZ_LOCK_TIMEOUT (seconds)")
    if "readonly" in msg or "read-only" in msg:
        return StoreError(f"The store {store.path} is read-only: {msg}")
    if "disk" in msg or "full" in msg:
        # SQLite reports a full disk or a file-size limit (EFBIG) as "disk I/O error" or "disk is full"
        return StoreError(f"Cannot write to the store {store.path}: {msg} (is the disk full?); nothing was changed")
    return StoreError(f"Store error in {store.path}: {msg}")
