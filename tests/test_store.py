"""The store: migrations from a blank store and from an older schema, a newer schema, broken catalogs."""

from __future__ import annotations

import sqlite3

import pytest
from corehelp import create, fails, rec, write

from vzcli.errors import StoreError
from vzcli.local import LocalBackend
from vzcli.store import MIGRATIONS, SCHEMA_VERSION, Store

TABLES = {"indexes", "vectors", "metadata_indexes", "mvals", "dead_keys", "mutations"}


def _tables(path) -> set[str]:
    with sqlite3.connect(path) as c:
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _version(path) -> int:
    with sqlite3.connect(path) as c:
        return c.execute("PRAGMA user_version").fetchone()[0]


def test_blank_store_gets_every_migration(tmp_path) -> None:
    s = Store(tmp_path / "s")
    assert not s.exists()
    with s.write():
        pass
    s.close()
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    assert _version(s.catalog_path) == SCHEMA_VERSION
    assert TABLES <= _tables(s.catalog_path)
    assert (tmp_path / "s" / "indexes").is_dir()
    with sqlite3.connect(s.catalog_path) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_empty_file_at_version_zero_is_upgraded_by_a_write(tmp_path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    sqlite3.connect(root / "catalog.sqlite3").close()  # an empty database, user_version 0
    assert _version(root / "catalog.sqlite3") == 0
    b = LocalBackend(Store(root))
    assert b.list_indexes() == []  # a read never migrates: an empty database reads as an empty store
    b.store.close()
    assert _version(root / "catalog.sqlite3") == 0 and _tables(root / "catalog.sqlite3") == set()
    b = LocalBackend(Store(root))
    b.create_index("y", dimensions=2, metric="cosine")  # the first write migrates
    b.store.close()
    assert _version(root / "catalog.sqlite3") == SCHEMA_VERSION
    assert TABLES <= _tables(root / "catalog.sqlite3")
    b = LocalBackend(Store(root))
    assert b.create_index("x", dimensions=2, metric="cosine")["name"] == "x"


def test_reopening_does_not_migrate_again(tmp_path, vz) -> None:
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 2, 3])])
    assert vz("info", "docs", "--json").json()["vectorCount"] == 1
    assert vz("get-vectors", "docs", "--ids", "a", "--json").json()[0]["values"] == [1.0, 2.0, 3.0]


def test_newer_schema_is_a_clear_store_error(tmp_path, store, vz) -> None:
    create(vz, "docs", 3)
    with sqlite3.connect(store / "catalog.sqlite3") as c:
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    s = Store(store)
    with pytest.raises(StoreError) as ei:
        with s.read():
            pass
    assert f"schema version {SCHEMA_VERSION + 1}" in ei.value.message and "upgrade vz" in ei.value.message
    assert ei.value.code == 1002
    with pytest.raises(StoreError):  # the same Store object (a server's) keeps refusing it
        with s.read():
            pass
    with pytest.raises(StoreError):
        LocalBackend(s).list_indexes()
    err = fails(vz("list", "--json"), 1, 1002)
    assert "newer than this vz understands" in err
    fails(vz("insert", "docs", "--file", "-", input='{"id":"a","values":[1,2,3]}\n'), 1, 1002)
    assert _version(store / "catalog.sqlite3") == SCHEMA_VERSION + 1  # left untouched


def test_garbage_catalog_is_a_store_error(vz, store) -> None:
    store.mkdir()
    (store / "catalog.sqlite3").write_bytes(b"this is not a database" * 100)
    err = fails(vz("list", "--json"), 1, 1004)  # not SQLite: not vz's (ForeignCatalog, a StoreError)
    assert "is not a SQLite database" in err


def test_write_rolls_back_on_error(tmp_path) -> None:
    s = Store(tmp_path / "s")
    b = LocalBackend(s)
    b.create_index("x", dimensions=2, metric="cosine")
    with pytest.raises(RuntimeError):
        with s.write() as c:
            c.execute("UPDATE indexes SET vector_count = 99")
            raise RuntimeError("boom")
    assert b.info("x")["vectorCount"] == 0


def test_lock_timeout_is_code_1003(tmp_path, monkeypatch) -> None:
    root = tmp_path / "s"
    LocalBackend(Store(root)).create_index("x", dimensions=2, metric="cosine")
    holder = sqlite3.connect(root / "catalog.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        monkeypatch.setenv("VZ_LOCK_TIMEOUT", "0.2")
        b = LocalBackend(Store(root))
        import io

        with pytest.raises(StoreError) as ei:
            b.insert("x", io.BytesIO(b'{"id":"a","values":[1,2]}\n'))
        assert ei.value.code == 1003 and "VZ_LOCK_TIMEOUT" in ei.value.message
        # readers are not blocked by the writer
        assert b.info("x") == {"dimensions": 2, "vectorCount": 0}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
