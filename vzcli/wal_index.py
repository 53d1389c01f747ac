"""Whether anything was committed to the catalog, at the cost of one pread: its wal-index header.

A resident reader (`snapshot.Snapshot`) must see every commit of any process before its next
query. `PRAGMA data_version` tells, but it opens a read transaction, which takes and releases
SQLite's locks on the `-shm` file through fcntl: 3.5 us on a quiet core, ~19 us of a query at
100k x 768 once usearch's search has evicted the caches (bench/RESULTS.md, issue 17 session 5).

The `-shm` file is SQLite's wal-index, and its first 48 bytes are the wal-index header
(https://www.sqlite.org/walformat.html#the_wal_index_header), which every writer rewrites at
every commit: `iChange` counts transactions, `mxFrame` and the checksums follow the log. So:
bytes equal to those read when the snapshot was taken mean no other connection has committed
since (our own commits show in `total_changes`). Only their equality is used, never their meaning;
any doubt is settled by the pragma, which `Snapshot` also asks one query in `RECHECK`, and a
header that ever disagrees with it is never read again for that connection.

**A descriptor of the `-shm` file is never closed.** Closing any descriptor of a file drops every
POSIX lock the process holds on it, SQLite's own included: its DMS lock, whose loss lets another
process re-initialise (truncate) the wal-index under this process's connections, which then die
of SIGBUS in SQLite's own mapping (seen in CI; `tests/test_lean_query.py` now checks the lock
survives). So the header is read with `pread` on a descriptor kept for the life of the process:
one per `-shm` file (by device and inode), at most `MAX_FILES` of them, after which the pragma
answers alone. A `pread` cannot fault the way a mapping of a shrunk file can.

It is used only where it is sound:
- the connection is in WAL mode, and has read once (SQLite then holds the DMS lock for as long
  as the connection is open: no other process can re-initialise or delete the file);
- it was opened read-write (a `mode=ro` or `immutable` connection gets None: the pragma decides);
- the `-shm` file is a regular file, opened without following a symlink.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from pathlib import Path

HEADER = 48  # one copy of WalIndexHdr (SQLite writes the second copy, then this one)
MAX_FILES = 32  # `-shm` files a process keeps a descriptor of (a server has one store)

_FDS: dict[tuple[int, int], int] = {}  # (st_dev, st_ino) -> a descriptor, never closed (see above)
_FDS_LOCK = threading.Lock()


def _descriptor(path: Path) -> int | None:
    """The process's descriptor of the regular file at `path`, opened once and never closed."""
    if not hasattr(os, "pread"):
        return None
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    with _FDS_LOCK:
        fd = _FDS.get((st.st_dev, st.st_ino))
        if fd is not None:
            return fd
        if len(_FDS) >= MAX_FILES:
            return None
        flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            return None
        got = os.fstat(fd)
        _FDS[(got.st_dev, got.st_ino)] = fd  # kept whatever it is: closing it could drop SQLite's locks
        same = (got.st_dev, got.st_ino) == (st.st_dev, st.st_ino) and stat.S_ISREG(got.st_mode)
        return fd if same else None


class WalIndex:
    """Reads of a catalog's wal-index header, for the connections that may use it."""

    def __init__(self, shm_path: Path) -> None:
        self.path = shm_path
        self._fds: dict[int, tuple[sqlite3.Connection, int | None]] = {}
        self._lock = threading.Lock()

    def header(self, conn: sqlite3.Connection) -> bytes | None:
        """The wal-index header as it is now, for `conn`; None when it cannot be trusted."""
        got = self._fds.get(id(conn))
        if got is None or got[0] is not conn:
            got = (conn, self._open(conn))
            with self._lock:
                self._fds[id(conn)] = got
        fd = got[1]
        if fd is None:
            return None
        try:
            head = os.pread(fd, HEADER, 0)
        except OSError:
            return None
        return head if len(head) == HEADER else None

    def refuse(self, conn: sqlite3.Connection) -> None:
        """Never read the header for `conn` (read-only connections; a header that disagreed)."""
        with self._lock:
            self._fds[id(conn)] = (conn, None)

    def forget(self) -> None:
        """Forget the store's connections (they are being closed); the descriptors stay open."""
        with self._lock:
            self._fds = {}

    def _open(self, conn: sqlite3.Connection) -> int | None:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                return None
            conn.execute("PRAGMA data_version").fetchone()  # a read: SQLite opens the -shm and locks it
        except sqlite3.Error:
            return None
        return _descriptor(self.path)
