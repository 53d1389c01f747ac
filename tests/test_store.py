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


def test_new_catalogs_use_16k_pages_and_older_ones_keep_theirs(tmp_path) -> None:
    """SQLite keeps a record whole in one page: 16 KiB pages leave a 768-d record (3.1 KB) little
    room to waste. A catalog that exists keeps its page size (changing it rewrites the file)."""
    s = Store(tmp_path / "new")
    LocalBackend(s).create_index("x", dimensions=2, metric="cosine")
    s.close()
    root = tmp_path / "old"
    root.mkdir()
    with sqlite3.connect(root / "catalog.sqlite3") as c:
        c.execute("PRAGMA page_size = 4096")
        c.execute("PRAGMA user_version = 0")  # an empty catalog that already has its pages
    old = Store(root)
    LocalBackend(old).create_index("x", dimensions=2, metric="cosine")
    old.close()
    for path, size in ((s.catalog_path, 16384), (root / "catalog.sqlite3", 4096)):
        with sqlite3.connect(path) as c:
            assert c.execute("PRAGMA page_size").fetchone()[0] == size
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_namespace_index_holds_only_records_with_a_namespace(tmp_path) -> None:
    """Migration 3: `vectors_ns` is partial, and a catalog of schema 2 gets it on its first write."""
    import io
    import json

    root = tmp_path / "s"
    b = LocalBackend(Store(root))
    b.create_index("x", dimensions=2, metric="cosine")
    lines = "".join(json.dumps({"id": f"v{i}", "values": [1.0, i], **({"namespace": "a"} if i < 3 else {})}) + "\n"
                    for i in range(10))
    b.insert("x", io.BytesIO(lines.encode()))
    b.store.close()
    with sqlite3.connect(root / "catalog.sqlite3") as c:  # back to schema 2's full index
        c.execute("DROP INDEX vectors_ns")
        c.execute("CREATE INDEX vectors_ns ON vectors(index_id, namespace, key)")
        c.execute("PRAGMA user_version = 2")
    b = LocalBackend(Store(root))
    assert [m["id"] for m in b.query("x", vector=[1.0, 1.0], top_k=5, namespace="a")["matches"]] == ["v1", "v2", "v0"]
    b.create_index("y", dimensions=2, metric="cosine")  # the first write migrates
    b.store.close()
    with sqlite3.connect(root / "catalog.sqlite3") as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        sql = c.execute("SELECT sql FROM sqlite_master WHERE name = 'vectors_ns'").fetchone()[0]
        assert sql.endswith("WHERE namespace IS NOT NULL")
        plan = " ".join(r[3] for r in c.execute(
            "EXPLAIN QUERY PLAN SELECT key FROM vectors WHERE index_id = 1 AND namespace = 'a'"))
        assert "vectors_ns" in plan
        assert c.execute("SELECT count(*) FROM vectors INDEXED BY vectors_ns WHERE namespace IS NOT NULL").fetchone() \
            == (3,)
    b = LocalBackend(Store(root))
    assert [m["id"] for m in b.query("x", vector=[1.0, 1.0], top_k=5, namespace="a")["matches"]] == ["v1", "v2", "v0"]


def test_the_first_write_from_another_thread_prepares_through_its_own_connection(tmp_path, monkeypatch) -> None:
    """`vz serve` opens the store on one thread and may write first from another: the catalog must
    then be created and migrated through the writing thread's connection, never through the owner's,
    which its own thread may be using at that moment."""
    import threading

    old = Store(tmp_path / "s")
    LocalBackend(old).create_index("w", dimensions=2, metric="cosine")
    old.close()
    s = Store(tmp_path / "s")
    assert s.conn() is not None  # opened (read-only use so far) on this thread: it owns the connection
    seen: list[tuple[sqlite3.Connection, sqlite3.Connection | None]] = []
    real = Store._prepare_write

    def spy(self: Store, conn: sqlite3.Connection) -> None:
        seen.append((conn, self._conn))
        real(self, conn)

    monkeypatch.setattr(Store, "_prepare_write", spy)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            LocalBackend(s).create_index("x", dimensions=2, metric="cosine")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=write)
    t.start()
    t.join()
    assert not errors
    [(used, owners)] = seen
    assert owners is not None and used is not owners
    assert [i["name"] for i in LocalBackend(s).list_indexes()] == ["w", "x"]  # the owner's thread sees it
    assert _version(s.catalog_path) == SCHEMA_VERSION
