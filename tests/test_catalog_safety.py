"""vz never touches a database it did not create: it marks its own catalog (application_id,
user_version), refuses anything else for reads and writes without writing a byte, never migrates
or changes the journal mode on a read, refuses a catalog of a newer vz, and reports a store path
that is a file or a store whose catalog is gone."""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from corehelp import create, fails, rec, write

from vzcli.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, UNMARKED_TABLES

READS = [("list", "--json"), ("info", "docs", "--json"), ("get", "docs", "--json"),
         ("list-vectors", "docs", "--json"), ("export", "docs"), ("doctor", "--json"), ("doctor", "docs")]
WRITES = [("create", "docs", "--dimensions", "3", "--metric", "cosine"), ("delete", "docs", "-y"),
          ("delete-vectors", "docs", "--ids", "a"), ("doctor", "--repair"),
          ("create-metadata-index", "docs", "--property-name", "p", "--type", "string")]


def _state(cat: Path) -> tuple[str, list[str]]:
    """The file's bytes (hashed) and which side files (-wal, -shm, -journal) exist beside it."""
    return (hashlib.sha256(cat.read_bytes()).hexdigest(),
            sorted(p.name for p in cat.parent.iterdir() if p.name != cat.name))


def _quiesce() -> None:
    """Close the connections earlier in-process commands left for the garbage collector."""
    gc.collect()


def _pragmas(cat: Path) -> tuple[int, int, str]:
    with sqlite3.connect(f"file:{cat}?mode=ro", uri=True) as c:
        return (c.execute("PRAGMA application_id").fetchone()[0], c.execute("PRAGMA user_version").fetchone()[0],
                c.execute("PRAGMA journal_mode").fetchone()[0])


def _every_command_refuses(vz: Any, cat: Path, code: int, says: str) -> None:
    before = _state(cat)
    for args in READS + WRITES:
        err = fails(vz(*args), 1, code)
        assert says in err, (args, err)
        assert _state(cat) == before, args
    upsert = vz("upsert", "docs", "--file", "-", input='{"id": "a", "values": [1, 2, 3]}\n')
    fails(upsert, 1, code)
    assert _state(cat) == before


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_another_programs_database_is_refused_without_a_byte_written(vz: Any, store: Path, journal: str) -> None:
    """The issue's case: a program's own table named `indexes`, in its journal mode of choice."""
    store.mkdir()
    cat = store / "catalog.sqlite3"
    with sqlite3.connect(cat) as c:
        c.execute(f"PRAGMA journal_mode = {journal}")
        c.execute("CREATE TABLE indexes (id INTEGER PRIMARY KEY, what TEXT)")
        c.execute("INSERT INTO indexes(what) VALUES ('theirs')")
    c.close()
    assert sorted(p.name for p in store.iterdir()) == ["catalog.sqlite3"]
    _every_command_refuses(vz, cat, 1004, "belongs to another program (it holds the tables indexes "
                                          "(user_version 0)); vz neither reads nor writes it")
    assert _pragmas(cat) == (0, 0, journal)


def test_a_database_with_another_application_id_is_refused(vz: Any, store: Path) -> None:
    store.mkdir()
    cat = store / "catalog.sqlite3"
    with sqlite3.connect(cat) as c:
        c.execute(f"PRAGMA application_id = {0x5F4D4F4E}")  # any other program's mark
    c.close()
    _every_command_refuses(vz, cat, 1004, "its application_id is 0x5f4d4f4e, not vz's 0x767a767a")


def test_vz_tables_with_the_wrong_version_are_not_taken_for_an_old_vz(vz: Any, store: Path) -> None:
    store.mkdir()
    cat = store / "catalog.sqlite3"
    with sqlite3.connect(cat) as c:
        for t in sorted(UNMARKED_TABLES[1]):
            c.execute(f"CREATE TABLE {t} (x)")
        c.execute("PRAGMA user_version = 7")
    c.close()
    _every_command_refuses(vz, cat, 1004, "belongs to another program")


def test_a_file_that_is_not_sqlite_is_refused(vz: Any, store: Path) -> None:
    store.mkdir()
    cat = store / "catalog.sqlite3"
    cat.write_bytes(b"PK\x03\x04 a zip archive, say" * 50)
    _every_command_refuses(vz, cat, 1004, "is not a SQLite database")


def test_new_catalog_is_marked(vz: Any, store: Path) -> None:
    create(vz, "docs", 3)
    assert _pragmas(store / "catalog.sqlite3") == (APPLICATION_ID, SCHEMA_VERSION, "wal")
    assert APPLICATION_ID == int.from_bytes(b"vzvz", "big")


def _old_vz_catalog(store: Path) -> Path:
    """A catalog as the vz before application_id wrote it: schema 1, unmarked, WAL, with data."""
    import sqlite_utils

    store.mkdir()
    (store / "indexes" / "docs").mkdir(parents=True)
    cat = store / "catalog.sqlite3"
    conn = sqlite3.connect(cat, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("""INSERT INTO indexes(name, dimensions, metric, created_on, modified_on, vector_count)
                    VALUES ('docs', 3, 'cosine', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', 1)""")
    conn.execute("INSERT INTO vectors(index_id, id, vec) VALUES (1, 'a', ?)",
                 (b"\x00\x00\x80?\x00\x00\x00@\x00\x00@@",))
    conn.close()
    return cat


def test_previous_schema_reads_without_migrating_and_the_first_write_marks_it(vz: Any, store: Path) -> None:
    cat = _old_vz_catalog(store)
    before = _state(cat)
    assert _pragmas(cat) == (0, 1, "wal")
    assert [i["name"] for i in vz("list", "--json").json()] == ["docs"]
    r = vz("get-vectors", "docs", "--ids", "a", "--json")
    assert r.json() == [{"id": "a", "values": [1.0, 2.0, 3.0], "metadata": {}}]
    # reads changed nothing (SQLite may add its -wal/-shm beside a WAL catalog: vz's own)
    assert _state(cat)[0] == before[0] and _pragmas(cat) == (0, 1, "wal")
    write(vz, "docs", [rec("b", [3, 2, 1])])
    assert _pragmas(cat) == (APPLICATION_ID, SCHEMA_VERSION, "wal")
    assert [r["id"] for r in vz("get-vectors", "docs", "--ids", "a", "b", "--json").json()] == ["a", "b"]


def test_reads_never_change_the_journal_mode(vz: Any, store: Path) -> None:
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 2, 3])])
    cat = store / "catalog.sqlite3"
    _quiesce()
    with sqlite3.connect(cat) as c:
        c.execute("PRAGMA journal_mode = DELETE")
    c.close()
    before = _state(cat)
    for args in READS:
        assert vz(*args).exit_code == 0, args
    assert _pragmas(cat)[2] == "delete" and _state(cat) == before
    write(vz, "docs", [rec("b", [1, 2, 3])])  # a write puts it back in WAL mode
    assert _pragmas(cat)[2] == "wal"


def test_newer_vz_catalog_is_refused_naming_both_versions(vz: Any, store: Path) -> None:
    create(vz, "docs", 3)
    cat = store / "catalog.sqlite3"
    _quiesce()
    with sqlite3.connect(cat) as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
        c.execute("PRAGMA journal_mode = DELETE")  # so the file alone is the whole state
    c.close()
    message = (f"has schema version {SCHEMA_VERSION + 5}, newer than this vz understands ({SCHEMA_VERSION}); "
               "upgrade vz")
    _every_command_refuses(vz, cat, 1002, message)


def test_store_path_that_is_a_file_is_an_error(vz: Any, tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    for args in [("list", "--json"), ("info", "docs"), ("doctor",), ("create", "docs", "--dimensions", "3",
                                                                      "--metric", "cosine"),
                 ("delete", "docs", "-y")]:
        err = fails(vz("--store", str(f), *args), 1, 1002)
        assert f"The store path {f} is a file, not a store directory" in err, args
    assert f.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_missing_catalog_with_index_directories_is_never_empty_or_healthy(vz: Any, store: Path) -> None:
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 2, 3])])
    for p in store.glob("catalog.sqlite3*"):
        p.unlink()
    message = f"The store {store} has index directories (docs) but no catalog (catalog.sqlite3)"
    for args in [("list",), ("list", "--json"), ("info", "docs"), ("create", "other", "--dimensions", "3",
                                                                   "--metric", "cosine"),
                 ("delete", "docs", "-y")]:
        assert message in fails(vz(*args), 1, 1006), args
    r = vz("doctor", "--json")
    assert r.exit_code == 1
    rep = r.json()
    assert rep["healthy"] is False and [(p["check"], p["repairable"]) for p in rep["problems"]] == [
        ("store.catalog_missing", False)]
    assert rep["problems"][0]["message"].startswith(message)
    assert vz("doctor", "--repair").exit_code == 1
    assert not (store / "catalog.sqlite3").exists() and (store / "indexes" / "docs").is_dir()


def test_inspecting_the_catalog_keeps_this_processs_sqlite_locks(vz: Any, store: Path) -> None:
    """Closing a plain descriptor of a database drops every POSIX lock the process holds on it (a
    server's other threads' connections). The inspection must go through SQLite, which defers that."""
    import subprocess
    import sys

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    create(vz, "docs", 3)
    cat = store / "catalog.sqlite3"
    _quiesce()
    with sqlite3.connect(cat) as c:
        c.execute("PRAGMA journal_mode = DELETE")  # a reader holds a SHARED lock on the file itself
    c.close()
    reader = sqlite3.connect(cat, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM indexes").fetchone()  # SHARED lock held from here
    assert [i["name"] for i in LocalBackend(Store(store)).list_indexes()] == ["docs"]  # inspects the file
    probe = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
             "try:\n    c.execute('BEGIN EXCLUSIVE')\n    print('got the lock')\n"
             "except sqlite3.OperationalError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(cat)], capture_output=True, text=True, timeout=60)
    reader.execute("COMMIT")
    reader.close()
    assert r.stdout.strip() == "database is locked"
