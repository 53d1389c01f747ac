"""`vz doctor`: verify a store (SQLite catalog, records, ANN files) and repair what can be repaired.

SQLite is the source of truth, so everything derived from it can be repaired: counters in the
`indexes` row, orphan metadata-index values, the ANN files (rebuilt from the records) and files
left behind by killed processes. What cannot be derived (a record whose stored values are not
`dims` finite float32 numbers) is reported, never silently dropped; the report then stays
unhealthy and the command exits 1. A catalog that fails `PRAGMA integrity_check` is recovered into
a fresh file by `vzcli/recover.py` (the damaged one is kept beside it), then repaired as usual.

Checks read one consistent snapshot; repairs run in write transactions that recompute from the
tables inside the transaction, so a doctor running next to writers never undoes their work. ANN
files are rebuilt through `ann.maintain` (compare-and-swap publish) and swept under the index's
merge lock, like every other writer does.

A file can be garbage in a way that makes usearch crash the process that maps it (measured: a
few flipped bytes in the node section gave SIGSEGV). So the deep ANN check first maps the file and
searches it in a child process (`python -m vzcli.doctor --probe`); only if that survives does
doctor map it itself to compare its keys with SQLite.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vzcli import ann, limits, published, recover, spawn, usearch_file
from vzcli.errors import CorruptCatalog, IndexNotFound, MissingCatalog, StoreError
from vzcli.store import Store

ERROR = "error"
WARNING = "warning"
PROBE_TIMEOUT = 300.0
MAX_EXAMPLES = 5


@dataclass(slots=True)
class Problem:
    """One finding. `fix` names the repair that removes it, None when it cannot be repaired."""

    index: str | None
    check: str
    message: str
    severity: str = ERROR
    fix: str | None = None
    repaired: bool = False

    def key(self) -> tuple[str | None, str]:
        return self.index, self.check

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "check": self.check, "severity": self.severity, "message": self.message,
                "repairable": self.fix is not None, "repaired": self.repaired}


@dataclass(slots=True)
class Report:
    store: str
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """No error is left (warnings, such as a lagging ANN file, do not count)."""
        return not any(p.severity == ERROR and not p.repaired for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "healthy": self.healthy, "checked": self.checked,
                "problems": [p.to_dict() for p in self.problems], "repairs": self.repairs}


def run(store: Store, name: str | None = None, *, repair: bool = False) -> Report:
    """Check index `name` (or every index and the store itself when None); with `repair`, fix and re-check.

    After a repair each problem found by the first pass is marked `repaired` when the second pass
    no longer finds it; anything the second pass finds that the first did not is added as is.
    """
    if name is not None:
        limits.check_index_name(name)
    report = check(store, name)
    if not repair or not report.problems:
        return report
    if any(p.check == "sqlite.integrity" for p in report.problems):
        if not recover.recover(store, report):
            return report  # nothing could be recovered: the catalog is left as it is
        # the recovered catalog: recount, drop what lost its parent rows, rebuild every ANN file
        middle = check(store, name)
        _repair(store, middle)
        for index in middle.checked:
            done = ann.maintain(store, index, force="rebuild")
            report.repairs.append(f"{index}: rebuilt the ANN file from the recovered catalog" if done else
                                  f"{index}: could not rebuild the ANN file; run doctor again")
        report.repairs.extend(middle.repairs)
    else:
        _repair(store, report)
    after = check(store, name)
    still = {p.key() for p in after.problems}
    for p in report.problems:
        p.repaired = p.key() not in still
    seen = {p.key() for p in report.problems}
    report.problems.extend(p for p in after.problems if p.key() not in seen)
    return report


# --- checks -----------------------------------------------------------------------------------

def check(store: Store, name: str | None = None) -> Report:
    """Every check, no changes. `name` None checks the whole store, including orphan directories."""
    report = Report(store=str(store.path))
    try:
        store.exists()
    except MissingCatalog as e:
        report.problems.append(Problem(None, "store.catalog_missing", e.message))
        return report
    dirs_before = store.index_dirs() if name is None else []
    try:
        with store.read() as conn:
            if conn is None:
                if name is not None:
                    raise IndexNotFound(name)
                return report  # no store yet: nothing to be wrong
            if not _check_sqlite(conn, report):
                return report  # every other check would read the damaged pages
            if name is not None and conn.execute("SELECT 1 FROM indexes WHERE name = ?", (name,)).fetchone() is None:
                raise IndexNotFound(name)
            names = _check_all(store, conn, name, report)
    except CorruptCatalog as e:
        if not any(p.check == "sqlite.integrity" for p in report.problems):
            report.problems.append(Problem(None, "sqlite.integrity", e.message, fix="recover"))
        return report
    for d in dirs_before:
        if d.name not in names:
            report.problems.append(Problem(None, f"files.orphan_dir:{d.name}",
                                           f"directory {d} belongs to no index (left by an interrupted delete)",
                                           WARNING, fix="remove"))
    return report


def _check_all(store: Store, conn: sqlite3.Connection, name: str | None, report: Report) -> set[str]:
    """The checks of a catalog that passed integrity_check; returns every index name (whole-store runs)."""
    _check_orphan_rows(conn, report)
    for row in _rows(conn, name):
        report.checked.append(row["name"])
        _check_catalog(conn, row, report)
        _check_records(conn, row, report)
        _check_ann(store, conn, row, report)
    return {r["name"] for r in _rows(conn, None)} if name is None else set()


def _rows(conn: sqlite3.Connection, name: str | None) -> list[dict[str, Any]]:
    sql, params = "SELECT * FROM indexes", ()  # type: tuple[str, tuple[str, ...]]
    if name is not None:
        sql, params = sql + " WHERE name = ?", (name,)
    cur = conn.execute(sql + " ORDER BY name", params)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def _check_sqlite(conn: sqlite3.Connection, report: Report) -> bool:
    """SQLite's full integrity check (quick_check misses damage inside index pages); False if it fails."""
    try:
        res = [r[0] for r in conn.execute("PRAGMA integrity_check(20)")]
    except sqlite3.DatabaseError as e:
        res = [str(e)]
    if res == ["ok"]:
        return True
    more = " ..." if len(res) > MAX_EXAMPLES else ""
    report.problems.append(Problem(None, "sqlite.integrity",
                                   "the catalog fails PRAGMA integrity_check: " + "; ".join(res[:MAX_EXAMPLES]) + more
                                   + " (vz doctor --repair copies what SQLite can still read into a fresh catalog "
                                     "and keeps the damaged file beside it)", fix="recover"))
    return False


_ORPHANS = {
    "vectors": "SELECT count(*) FROM vectors WHERE index_id NOT IN (SELECT id FROM indexes)",
    "metadata_indexes": "SELECT count(*) FROM metadata_indexes WHERE index_id NOT IN (SELECT id FROM indexes)",
    "mvals": "SELECT count(*) FROM mvals WHERE prop_id NOT IN (SELECT id FROM metadata_indexes)",
    "dead_keys": "SELECT count(*) FROM dead_keys WHERE index_id NOT IN (SELECT id FROM indexes)",
    "mutations": "SELECT count(*) FROM mutations WHERE index_id NOT IN (SELECT id FROM indexes)",
}


def _check_orphan_rows(conn: sqlite3.Connection, report: Report) -> None:
    for table, sql in _ORPHANS.items():
        n = conn.execute(sql).fetchone()[0]
        if n:
            report.problems.append(Problem(None, f"catalog.orphans:{table}",
                                           f"{n} row(s) in {table} belong to no index", fix="delete"))


def _check_catalog(conn: sqlite3.Connection, row: dict[str, Any], report: Report) -> None:
    iid, name = row["id"], row["name"]
    n = conn.execute("SELECT count(*) FROM vectors WHERE index_id = ?", (iid,)).fetchone()[0]
    if row["vector_count"] != n:
        report.problems.append(Problem(name, "catalog.vector_count",
                                       f"vector_count is {row['vector_count']} but the index holds {n} records",
                                       fix="recount"))
    last = conn.execute("SELECT max(seq) FROM mutations WHERE index_id = ?", (iid,)).fetchone()[0]
    if row["last_mutation"] != last:
        report.problems.append(Problem(name, "catalog.last_mutation",
                                       f"last_mutation is {row['last_mutation']} but the newest mutation logged is {last}",
                                       fix="reset"))
    bad = conn.execute("""SELECT count(*) FROM mvals m JOIN metadata_indexes mi ON mi.id = m.prop_id
                          WHERE mi.index_id = ? AND NOT EXISTS
                          (SELECT 1 FROM vectors v WHERE v.key = m.key AND v.index_id = ?)""", (iid, iid)).fetchone()[0]
    if bad:
        report.problems.append(Problem(name, "catalog.mvals",
                                       f"{bad} metadata-index value(s) point at records that do not exist",
                                       fix="delete"))
    live_dead = conn.execute("""SELECT count(*) FROM dead_keys d JOIN vectors v ON v.key = d.key
                                WHERE d.index_id = ?""", (iid,)).fetchone()[0]
    if live_dead:
        report.problems.append(Problem(name, "catalog.dead_keys",
                                       f"{live_dead} live record(s) are marked as deleted in dead_keys "
                                       "(a merge would drop them from the ANN file)", fix="delete+rebuild"))


def _check_records(conn: sqlite3.Connection, row: dict[str, Any], report: Report) -> None:
    """Every record: values are `dims` finite float32, metadata a JSON object, id and namespace valid."""
    from vzcli.errors import InvalidVector
    from vzcli.records import check_id, check_namespace

    dims, name = row["dimensions"], row["name"]
    bad: dict[str, list[str]] = {"values": [], "metadata": [], "ids": []}
    counts = dict.fromkeys(bad, 0)

    def note(kind: str, vid: Any, why: str) -> None:
        counts[kind] += 1
        if len(bad[kind]) < MAX_EXAMPLES:
            bad[kind].append(f"{vid!r}: {why}")

    cur = conn.execute("SELECT id, namespace, metadata, vec FROM vectors WHERE index_id = ?", (row["id"],))
    while True:
        chunk = cur.fetchmany(8192)
        if not chunk:
            break
        for vid, ns, md, vec in chunk:
            if not isinstance(vec, bytes) or len(vec) != dims * 4:
                note("values", vid, f"{len(vec) if isinstance(vec, bytes) else type(vec).__name__} bytes "
                                    f"of values, expected {dims * 4}")
            elif not np.isfinite(np.frombuffer(vec, dtype=np.float32)).all():
                note("values", vid, "NaN or infinite values")
            if md is not None:
                try:
                    obj = orjson.loads(md)
                    if not isinstance(obj, dict):
                        note("metadata", vid, "metadata is not a JSON object")
                except (orjson.JSONDecodeError, TypeError):
                    note("metadata", vid, "metadata is not valid JSON")
            try:
                check_id(vid)
                check_namespace(ns)
            except InvalidVector as e:
                note("ids", vid, e.message)
    for kind, examples in bad.items():
        if counts[kind]:
            report.problems.append(Problem(
                name, f"records.{kind}",
                f"{counts[kind]} record(s) with invalid {kind} (e.g. {'; '.join(examples)}); re-upsert or "
                f"delete them (vz delete-vectors {name} --ids ...)"))


def _check_ann(store: Store, conn: sqlite3.Connection, row: dict[str, Any], report: Report) -> None:
    name, iid, d = row["name"], row["id"], store.index_dir(row["name"])
    file = row["ann_file"]
    last = row["last_mutation"] or 0
    if (row["ann_seq"] or 0) > last:
        report.problems.append(Problem(name, "ann.seq", f"the ANN file claims mutation {row['ann_seq']}, but the "
                                                        f"newest is {last}", fix="rebuild"))
    in_file_dead = conn.execute("SELECT count(*) FROM dead_keys WHERE index_id = ? AND key <= ?",
                                (iid, row["ann_max_key"])).fetchone()[0]
    if row["ann_dead"] != in_file_dead:
        report.problems.append(Problem(name, "ann.counters", f"ann_dead is {row['ann_dead']} but {in_file_dead} "
                                                             "deleted records are in the ANN file", fix="rebuild"))
    if file is None:
        if row["ann_max_key"] or row["ann_nodes"]:
            report.problems.append(Problem(name, "ann.counters", "the catalog counts ANN nodes but names no file",
                                           fix="rebuild"))
    else:
        problem = _check_ann_file(conn, row, d / file)
        if problem:
            report.problems.append(Problem(name, "ann.file", f"ANN file {file}: {problem}", fix="rebuild"))
    due = ann.needs_work(conn, row, store)
    if due and not any(p.index == name and p.check.startswith("ann.") for p in report.problems):
        delta = ann.delta_count(conn, iid, row["ann_max_key"])
        report.problems.append(Problem(name, "ann.lagging", f"the ANN file is due for a {due} ({delta} record(s) "
                                                            "searched exactly); the next write does it",
                                       WARNING, fix=due))
    _check_orphan_files(d, file, name, report)


def _check_ann_file(conn: sqlite3.Connection, row: dict[str, Any], path: Path) -> str | None:
    """None when the file is whole and holds exactly the keys SQLite says it holds; else what is wrong."""
    if not path.exists():
        return "missing"
    if not ann.file_ok(path, row):
        return "truncated, unreadable or made for another configuration"
    crashed = _probe(path, row)
    if crashed:
        return crashed
    Index = usearch_file.index_class()
    idx = Index.restore(str(path), view=True)
    if idx is None:
        return "missing"  # swept between the checks above and here
    keys = np.sort(np.asarray(idx.keys, dtype=np.int64))
    del idx
    want = np.fromiter((k for (k,) in conn.execute(
        """SELECT key FROM vectors WHERE index_id = ? AND key <= ?
           UNION SELECT key FROM dead_keys WHERE index_id = ? AND key <= ? ORDER BY 1""",
        (row["id"], row["ann_max_key"], row["id"], row["ann_max_key"]))), dtype=np.int64)
    if len(keys) and keys[-1] > row["ann_max_key"]:
        return f"holds key {int(keys[-1])}, beyond ann_max_key {row['ann_max_key']}"
    if not np.array_equal(keys, want):
        missing = np.setdiff1d(want, keys).size
        extra = np.setdiff1d(keys, want).size
        return f"{missing} record(s) missing from the file and {extra} unknown key(s) in it"
    return _check_file_vectors(conn, row, path)


def _check_file_vectors(conn: sqlite3.Connection, row: dict[str, Any], path: Path) -> str | None:
    """Queries score from an f32 file's own vectors: every live one must equal SQLite's, byte for
    byte; and shortlist from an f16 file's: every live one must be within `published.F16_EPS`."""
    fv = ann._read_file_vectors(path, row, conn)
    if fv is None:
        return "its vectors cannot be read as the catalog's scalar type says"
    differ = 0
    cur = conn.execute("SELECT key, vec FROM vectors WHERE index_id = ? AND key <= ? ORDER BY key",
                       (row["id"], row["ann_max_key"]))
    while rows := cur.fetchmany(8192):
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        hit, mat = fv.split(keys)
        stored = [r[1] for r, h in zip(rows, hit.tolist(), strict=True) if h]
        valid = [_valid_vec(b, row["dimensions"]) for b in stored]
        if fv.exact:
            same = [v.tobytes() == b for v, b in zip(mat, stored, strict=True)]
        else:  # float16 within the bound (broken SQLite rows are `records.values`' finding)
            f32 = np.zeros(mat.shape, dtype=np.float32)
            f32[valid] = [np.frombuffer(b, dtype=np.float32) for b, ok in zip(stored, valid, strict=True) if ok]
            same = published.close_rows(mat, f32).tolist()
        differ += int((~hit).sum()) + sum(1 for ok, eq in zip(valid, same, strict=True) if ok and not eq)
    return f"{differ} record(s) whose vector in the file differs from SQLite's" if differ else None


def _valid_vec(blob: bytes, dims: int) -> bool:
    """A stored vector doctor can compare; a broken one is `records.values`' finding, not the file's."""
    return len(blob) == 4 * dims and bool(np.isfinite(np.frombuffer(blob, dtype=np.float32)).all())


def _probe(path: Path, row: dict[str, Any]) -> str | None:
    """Map and search the file in a child process, so a crash in usearch cannot take doctor down."""
    args = spawn.argv("vzcli.doctor", "--probe", str(path), str(row["dimensions"]))
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT, env=spawn.env())
    except subprocess.TimeoutExpired:
        return f"searching it did not finish within {PROBE_TIMEOUT:.0f}s"
    if r.returncode == 0:
        return None
    if r.returncode < 0:
        return f"searching it crashed the process (signal {-r.returncode})"
    said = (r.stdout.strip() or r.stderr.strip() or f"exit {r.returncode}").splitlines()[-1]
    return f"cannot be searched: {said}"


def _check_orphan_files(d: Path, keep: str | None, name: str, report: Report) -> None:
    if not d.is_dir():
        return
    try:
        with ann.merge_lock(d, wait=False) as got:
            if not got:
                return  # a merge is publishing right now: its new file is not an orphan yet
            stale = [p.name for p in sorted(d.iterdir()) if p.name != keep and p.name != "merge.lock"
                     and (p.name.startswith("ann-") or (p.name.startswith(".tmp-") and not _tmp_alive(p.name)))]
    except StoreError:
        return  # a read-only store: nothing can be swept, and no writer can be publishing
    if stale:
        report.problems.append(Problem(name, "files.orphans", f"{len(stale)} stale file(s) in {d}: "
                                                              + ", ".join(stale[:MAX_EXAMPLES]), WARNING, fix="sweep"))


def _tmp_alive(fname: str) -> bool:
    try:
        pid = int(fname.split("-")[1])
    except (IndexError, ValueError):
        return False
    return pid > 0 and ann._alive(pid)


# --- repairs ----------------------------------------------------------------------------------

def _repair(store: Store, report: Report) -> None:
    kinds = {p.key() for p in report.problems if p.fix}
    if any(ix is None and c.startswith("catalog.orphans:") for ix, c in kinds):
        with store.write() as conn:
            conn.execute("DELETE FROM mvals WHERE prop_id NOT IN (SELECT id FROM metadata_indexes)")
            for table in ("vectors", "metadata_indexes", "dead_keys", "mutations"):
                conn.execute(f"DELETE FROM {table} WHERE index_id NOT IN (SELECT id FROM indexes)")
            conn.execute("DELETE FROM mvals WHERE prop_id NOT IN (SELECT id FROM metadata_indexes)")
        report.repairs.append("deleted catalog rows that belonged to no index")
    for name in report.checked:
        mine = {c for ix, c in kinds if ix == name}
        if not mine:
            continue
        if mine & {"catalog.vector_count", "catalog.last_mutation", "catalog.mvals", "catalog.dead_keys"}:
            with store.write() as conn:
                r = conn.execute("SELECT id FROM indexes WHERE name = ?", (name,)).fetchone()
                if r is None:
                    continue
                iid = r[0]
                if "catalog.vector_count" in mine:
                    conn.execute("UPDATE indexes SET vector_count = (SELECT count(*) FROM vectors WHERE index_id = ?) "
                                 "WHERE id = ?", (iid, iid))
                    report.repairs.append(f"{name}: recounted vector_count")
                if "catalog.last_mutation" in mine:
                    conn.execute("UPDATE indexes SET last_mutation = (SELECT max(seq) FROM mutations WHERE index_id = ?)"
                                 " WHERE id = ?", (iid, iid))
                    report.repairs.append(f"{name}: reset last_mutation to the newest logged mutation")
                if "catalog.mvals" in mine:
                    n = conn.execute("""DELETE FROM mvals WHERE prop_id IN (SELECT id FROM metadata_indexes
                                        WHERE index_id = ?) AND key NOT IN (SELECT key FROM vectors WHERE index_id = ?)""",
                                     (iid, iid)).rowcount
                    report.repairs.append(f"{name}: deleted {n} metadata-index value(s) of missing records")
                if "catalog.dead_keys" in mine:
                    n = conn.execute("DELETE FROM dead_keys WHERE index_id = ? AND key IN "
                                     "(SELECT key FROM vectors WHERE index_id = ?)", (iid, iid)).rowcount
                    report.repairs.append(f"{name}: unmarked {n} live record(s) in dead_keys")
        if mine & {"ann.seq", "ann.counters", "ann.file", "catalog.dead_keys"}:
            done = ann.maintain(store, name, force="rebuild")
            report.repairs.append(f"{name}: rebuilt the ANN file from SQLite" if done else
                                  f"{name}: could not rebuild the ANN file (the index changed meanwhile); run doctor again")
        elif "ann.lagging" in mine:
            done = ann.maintain(store, name)
            if done:
                report.repairs.append(f"{name}: {done} of the ANN file done")
        if "files.orphans" in mine:
            _sweep(store, name)
            report.repairs.append(f"{name}: removed stale files")
    dirs = [c.split(":", 1)[1] for ix, c in kinds if ix is None and c.startswith("files.orphan_dir:")]
    for dname in dirs:
        with store.read() as conn:
            assert conn is not None
            if conn.execute("SELECT 1 FROM indexes WHERE name = ?", (dname,)).fetchone() is not None:
                continue  # created meanwhile
        shutil.rmtree(store.path / "indexes" / dname, ignore_errors=True)
        report.repairs.append(f"removed the directory of deleted index {dname!r}")


def _sweep(store: Store, name: str) -> None:
    d = store.index_dir(name)
    with ann.merge_lock(d, wait=True):
        with store.read() as conn:
            assert conn is not None
            r = conn.execute("SELECT ann_file FROM indexes WHERE name = ?", (name,)).fetchone()
        if r is not None:
            ann.sweep(d, r[0])


# --- child process ----------------------------------------------------------------------------

def _probe_main(path: str, dims: int) -> int:
    Index = usearch_file.index_class()
    try:
        idx = Index.restore(path, view=True)
        if idx is None:
            print("missing")
            return 1
        if len(idx):
            rng = np.random.default_rng(0)
            for q in (np.ones(dims, np.float32), rng.standard_normal(dims).astype(np.float32)):
                idx.search(q, min(10, len(idx)), threads=1)
            np.asarray(idx.keys)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"{type(e).__name__}: {e}")
        return 1
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":  # pragma: no cover - run by _probe in a child process
    if len(sys.argv) == 4 and sys.argv[1] == "--probe":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        sys.exit(_probe_main(sys.argv[2], int(sys.argv[3])))
    print("usage: python -m vzcli.doctor --probe PATH DIMS", file=sys.stderr)
    sys.exit(2)
