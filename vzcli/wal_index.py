"""Whether anything was committed to the catalog, without a syscall: its wal-index header.

A resident reader (`snapshot.Snapshot`) must see every commit of any process before its next
query. `PRAGMA data_version` tells, but it opens a read transaction, which takes and releases
SQLite's locks on the `-shm` file through fcntl: 3.5 us on a quiet core, ~19 us of a query at
100k x 768 once usearch's search has evicted the caches (bench/RESULTS.md, issue 17 session 5).

The `-shm` file is SQLite's wal-index, and its first 48 bytes are the wal-index header
(https://www.sqlite.org/walformat.html#the_wal_index_header), which every writer rewrites at
every commit: `iChange` counts transactions, `mxFrame` and the checksums follow the log. Reading
those bytes through a read-only mapping costs a memory read. So: bytes equal to those read when
the snapshot was taken mean no other connection has committed since (our own commits show in
`total_changes`). Any doubt is settled by the pragma, and a header that ever disagrees with it is
never read again (`Snapshot` checks one query in `RECHECK` against the pragma).

Only the bytes' equality is used, never their meaning, and only where it is sound:
- the connection is in WAL mode, and has read once (so SQLite holds the `-shm` file's DMS lock
  for as long as the connection is open: no other process can then re-initialise the file, which
  it does by truncating it, or delete it);
- it was opened read-write (a `mode=ro` or `immutable` connection gets None: the pragma decides);
- the `-shm` file is a regular file of at least a page, opened without following a symlink.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import stat
import threading
from pathlib import Path

HEADER = 48  # one copy of WalIndexHdr (SQLite writes the second copy, then this one)
_MAP = 4096


class WalIndex:
    """Read-only mappings of a catalog's `-shm` file, one per connection that may use it."""

    def __init__(self, shm_path: Path) -> None:
        self.path = shm_path
        self._maps: dict[int, tuple[sqlite3.Connection, mmap.mmap | None]] = {}
        self._lock = threading.Lock()

    def header(self, conn: sqlite3.Connection) -> bytes | None:
        """The wal-index header as it is now, for `conn`; None when it cannot be trusted."""
        got = self._maps.get(id(conn))
        if got is None or got[0] is not conn:
            got = (conn, self._map(conn))
            with self._lock:
                self._maps[id(conn)] = got
        m = got[1]
        return None if m is None else m[:HEADER]

    def refuse(self, conn: sqlite3.Connection) -> None:
        """Never read the header for `conn` (read-only connections; a header that disagreed)."""
        with self._lock:
            self._maps[id(conn)] = (conn, None)

    def forget(self) -> None:
        """Drop every mapping (the store's connections are being closed)."""
        with self._lock:
            self._maps = {}

    def _map(self, conn: sqlite3.Connection) -> mmap.mmap | None:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                return None
            conn.execute("PRAGMA data_version").fetchone()  # a read: SQLite opens the -shm and locks it
        except sqlite3.Error:
            return None
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size < _MAP:
                return None
            return mmap.mmap(fd, _MAP, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
