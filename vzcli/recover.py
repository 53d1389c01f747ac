"""Recover a damaged catalog (`vz doctor --repair` when `PRAGMA integrity_check` fails).

Python's sqlite3 has no `.recover`, and the sqlite3 shell may not be installed, so vz copies what
SQLite can still read itself: a fresh catalog gets vz's schema, then every row of every table is
copied by walking rowid ranges. When a range cannot be read (a damaged leaf, or a damaged interior
page hiding several leaves), the walk probes forward for the next readable rowid and goes on from
there; only the rows on damaged pages are lost.

- `vectors`, `indexes`, `metadata_indexes`, `mutations` (rowid tables) are walked as above;
- `mvals` (WITHOUT ROWID) is read in key order; if that read breaks off, it is rebuilt from the
  recovered records' metadata for every metadata index (so records written before their metadata
  index existed become filterable on it: the only way to keep every recorded value);
- `dead_keys` and the ANN bookkeeping are not copied: doctor rebuilds every ANN file from the
  recovered records afterwards;
- the AUTOINCREMENT sequence of `vectors` continues above every key ever seen, so no key is reused.

The new catalog is built beside the store and swapped in by rename; the damaged file (and its -wal)
is kept as `catalog.sqlite3.corrupt-<UTC timestamp>`, named in the report, for a backup tool or the
sqlite3 shell's `.recover`. No other vz process should use the store meanwhile.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from vzcli.store import CATALOG, Store

if TYPE_CHECKING:
    from vzcli.doctor import Report

ROWID_TABLES = ("indexes", "metadata_indexes", "vectors", "mutations")
ANN_RESET = {"ann_file": None, "ann_max_key": 0, "ann_nodes": 0, "ann_dead": 0, "ann_tombstones": 0, "ann_seq": None}
MAX_ROWID = 2**63 - 1
BATCH = 2000


def recover(store: Store, report: Report) -> bool:
    """Replace the store's damaged catalog by what can be read of it. False (and nothing changed)
    when not even one index row could be read."""
    store.close()
    src_path = store.catalog_path
    work = store.path / f".recover-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    fresh = Store(work)
    try:
        try:
            with fresh.write():
                pass  # vz's current schema, marked, in WAL mode
            dst = fresh.conn()
            assert dst is not None
            src = sqlite3.connect("file:" + quote(str(src_path.resolve())) + "?mode=ro", uri=True,
                                  isolation_level=None)
            try:
                counts = _copy(src, dst)
            finally:
                src.close()
            if counts["indexes"][0]:
                dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            fresh.close()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)  # nothing was swapped yet
        raise
    if not counts["indexes"][0]:
        shutil.rmtree(work, ignore_errors=True)
        report.repairs.append("could not read a single index from the damaged catalog; it is left as it is: "
                              "restore a backup, or try the sqlite3 shell's .recover on it")
        return False
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = src_path.with_name(f"{CATALOG}.corrupt-{stamp}")
    n = 1
    while kept.exists():  # never overwrite an earlier damaged file (rename would)
        kept, n = src_path.with_name(f"{CATALOG}.corrupt-{stamp}-{n}"), n + 1
    for suffix in ("-wal", "-shm"):
        side = src_path.with_name(CATALOG + suffix)
        if side.exists():
            side.rename(kept.with_name(kept.name + suffix))
    src_path.rename(kept)
    os.replace(work / CATALOG, src_path)
    shutil.rmtree(work, ignore_errors=True)
    lost = ", ".join(f"{t}: {c} copied" + (f", {g} unreadable range(s) skipped" if g else "")
                     for t, (c, g) in counts.items())
    report.repairs.append(f"recovered the catalog into a fresh file ({lost}); the damaged file is kept as {kept}")
    return True


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    counts: dict[str, tuple[int, int]] = {}
    dst.execute("BEGIN IMMEDIATE")
    try:
        for table in ROWID_TABLES:
            counts[table] = _copy_rowid_table(src, dst, table)
        dst.execute("UPDATE indexes SET " + ", ".join(f"{c} = ?" for c in ANN_RESET), tuple(ANN_RESET.values()))
        counts["mvals"] = _copy_mvals(src, dst)
        _continue_sequence(src, dst)
        dst.execute("COMMIT")
    except BaseException:
        dst.execute("ROLLBACK")
        raise
    return counts


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    except sqlite3.DatabaseError:
        return []


def _copy_rowid_table(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> tuple[int, int]:
    """(rows copied, unreadable ranges skipped) for one rowid table.

    A scan reads fast but dies at the first damaged page, and Python's cursor has already stepped
    past the row it returned last; so after a failure the rows up to the damage are read one by one
    (each lookup seeks straight to its row), then `_next_readable` finds where reading works again.
    """
    cols = [c for c in _columns(dst, table) if c in set(_columns(src, table))]
    if not cols:
        return 0, 1
    listed = ", ".join(cols)
    insert = f"INSERT OR IGNORE INTO {table}(rowid, {listed}) VALUES ({', '.join('?' * (len(cols) + 1))})"
    one = f"SELECT rowid, {listed} FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1"
    start: int | None = -MAX_ROWID - 1
    copied, gaps = 0, 0
    while start is not None:
        batch: list[tuple[Any, ...]] = []
        try:
            for row in src.execute(f"SELECT rowid, {listed} FROM {table} WHERE rowid >= ? ORDER BY rowid", (start,)):
                batch.append(row)
                if len(batch) >= BATCH:
                    copied += _insert(dst, insert, batch)
                    start, batch = batch[-1][0] + 1, []
            return copied + _insert(dst, insert, batch), gaps
        except sqlite3.DatabaseError:
            if batch:
                copied += _insert(dst, insert, batch)
                start = batch[-1][0] + 1
        assert start is not None
        while True:  # one by one up to the damage
            ok, row = _read_from(src, one, start)
            if not ok:
                break
            if row is None:
                return copied, gaps
            copied += _insert(dst, insert, [row])
            start = row[0] + 1
        gaps += 1
        start = _next_readable(src, one, start)
    return copied, gaps


def _insert(dst: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> int:
    before = dst.total_changes
    dst.executemany(sql, rows)
    return dst.total_changes - before


def _read_from(src: sqlite3.Connection, one: str, start: int) -> tuple[bool, tuple[Any, ...] | None]:
    """(whether the first row at rowid >= `start` can be read, that row or None when there is none)."""
    try:
        return True, src.execute(one, (start,)).fetchone()
    except sqlite3.DatabaseError:
        return False, None


def _next_readable(src: sqlite3.Connection, one: str, bad: int) -> int | None:
    """The first rowid after the unreadable start `bad` from which the table reads again; None when
    nothing readable is left.

    Probes bad+1, +2, +4, ... until a probe reads, then bisects back to the smallest such start,
    so the readable rows just after the damaged range are not skipped with it.
    """
    step, first = 1, None
    while True:
        good = min(bad + step, MAX_ROWID)
        ok, row = _read_from(src, one, good)
        if ok:
            first = None if row is None else row[0]
            break
        if good == MAX_ROWID:
            return None
        bad, step = good, step * 2
    while good - bad > 1:  # invariant: reading from `bad` fails, from `good` works
        mid = (bad + good) // 2
        ok, row = _read_from(src, one, mid)
        if ok:
            good, first = mid, None if row is None else row[0]
        else:
            bad = mid
    return first


def _copy_mvals(src: sqlite3.Connection, dst: sqlite3.Connection) -> tuple[int, int]:
    rows: list[tuple[Any, ...]] = []
    try:
        for row in src.execute("SELECT prop_id, val, key FROM mvals ORDER BY prop_id, val, key"):
            rows.append(row)
    except sqlite3.DatabaseError:
        copied = _insert(dst, "INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", rows)
        return copied + _rebuild_mvals(dst), 1
    return _insert(dst, "INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", rows), 0


def _rebuild_mvals(dst: sqlite3.Connection) -> int:
    """Index every recovered record for every metadata index of its index, from its metadata."""
    from vzcli.filters import extract, to_index_value

    added = 0
    for pid, iid, prop, kind in dst.execute(
            "SELECT id, index_id, property_name, index_type FROM metadata_indexes").fetchall():
        batch = []
        for key, md in dst.execute("SELECT key, metadata FROM vectors WHERE index_id = ? AND metadata IS NOT NULL",
                                   (iid,)).fetchall():
            try:
                value = to_index_value(extract(orjson.loads(md), prop), kind)
            except (orjson.JSONDecodeError, TypeError):
                continue  # doctor reports the record's metadata
            if value is not None:
                batch.append((pid, value, key))
        added += _insert(dst, "INSERT OR IGNORE INTO mvals(prop_id, val, key) VALUES (?,?,?)", batch)
    return added


def _continue_sequence(src: sqlite3.Connection, dst: sqlite3.Connection) -> None:
    """Keys are never reused: continue above every key the damaged catalog may have handed out."""
    seen = [dst.execute("SELECT max(key) FROM vectors").fetchone()[0] or 0]
    for sql in ("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'", "SELECT max(ann_max_key) FROM indexes"):
        try:
            r = src.execute(sql).fetchone()
        except sqlite3.DatabaseError:
            continue
        if r is not None and r[0] is not None:
            seen.append(int(r[0]))
    top = max(seen)
    dst.execute("DELETE FROM sqlite_sequence WHERE name = 'vectors'")
    dst.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('vectors', ?)", (top,))
