"""No cost of one index depends on the size of the others: every statement the write path runs
(insert, upsert, delete, and the ANN merge and rebuild after them) finds its rows through an index,
never by scanning a whole table of records."""

from __future__ import annotations

import io
import re
import sqlite3

import numpy as np
import pytest

from vzcli.local import LocalBackend
from vzcli.store import Store

# tables whose size grows with the records of every index in the store
BIG_TABLES = ("vectors", "mvals", "dead_keys", "mutations", "v")  # v: the query path's alias of vectors
SCAN = re.compile(r"^SCAN (?:TABLE )?(\w+)")
# a key range with no index id walks the keys of every index in the store
KEY_RANGE = re.compile(r"^SEARCH (?:TABLE )?(\w+) USING INTEGER PRIMARY KEY \(rowid[<>]")


def _lines(ids: list[str], rng: np.random.Generator, dims: int = 4, meta: bool = True) -> io.BytesIO:
    out = []
    for vid in ids:
        vals = ",".join(f"{x:.4f}" for x in rng.random(dims) + 0.01)
        md = f',"metadata":{{"tag":"t{len(vid) % 3}","n":{len(vid)}}}' if meta else ""
        out.append(f'{{"id":"{vid}","values":[{vals}]{md}}}')
    return io.BytesIO(("\n".join(out) + "\n").encode())


def _scans(catalog: str, statements: list[str]) -> dict[str, list[str]]:
    """statement -> the steps of its query plan that walk records of other indexes."""
    con = sqlite3.connect(catalog)
    try:
        found: dict[str, list[str]] = {}
        for sql in statements:
            head = sql.lstrip().split(None, 1)[0].upper()
            if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                continue
            plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql)]
            bad = [d for d in plan if (m := SCAN.match(d) or KEY_RANGE.match(d)) and m.group(1) in BIG_TABLES]
            if bad:
                found[sql] = bad
        return found
    finally:
        con.close()


@pytest.mark.parametrize("has_file", [False, True])
def test_write_path_plans_use_indexes(tmp_path, monkeypatch, has_file) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "5")
    store = Store(tmp_path / "s")
    be = LocalBackend(store, resident=False)
    rng = np.random.default_rng(0)
    be.create_index("big", dimensions=4, metric="cosine")
    be.create_index("small", dimensions=4, metric="cosine")
    be.create_metadata_index("small", "tag", "string")
    be.insert("big", _lines([f"b{i}" for i in range(50)], rng))
    if has_file:
        be.insert("small", _lines([f"s{i}" for i in range(10)], rng))
        be.insert("big", _lines([f"c{i}" for i in range(50)], rng))  # keys above small's file
    conn = store.conn()
    assert conn is not None
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        be.upsert("small", _lines([f"s{i}" for i in range(3)] + ["x1", "x2", "x1"], rng))
        be.insert("small", _lines([f"n{i}" for i in range(6)] + ["s1"], rng))
        be.delete_by_ids("small", ["s0", "n1", "nope"])
        be.optimize("small")
    finally:
        conn.set_trace_callback(None)
    assert any("key >" in s for s in seen)  # the delta and merge statements ran
    assert _scans(str(store.catalog_path), seen) == {}


def test_query_plans_use_indexes(tmp_path, monkeypatch) -> None:
    """A query of an index with a file and a delta reads the delta through its own index id: the
    records of an index created later (all keys above the file's) are never walked."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "5")
    store = Store(tmp_path / "s")
    be = LocalBackend(store, resident=False)
    rng = np.random.default_rng(1)
    be.create_index("small", dimensions=4, metric="cosine")
    be.create_metadata_index("small", "tag", "string")
    be.insert("small", _lines([f"s{i}" for i in range(400)], rng))  # above the planner's exact cap
    be.create_index("big", dimensions=4, metric="cosine")
    be.insert("big", _lines([f"b{i}" for i in range(300)], rng))
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "1000")
    be.insert("small", _lines(["d1", "d2", "d3"], rng))  # a delta, keys above big's
    conn = store.conn()
    assert conn is not None
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        q = [0.5, 0.2, 0.1, 0.9]
        be.query("small", vector=q, top_k=5)
        be.query("small", vector=q, top_k=5, namespace="none")
        be.query("small", vector=q, top_k=5, filter={"tag": "t1"})
    finally:
        conn.set_trace_callback(None)
    assert any("key >" in s for s in seen)  # the delta was searched
    assert _scans(str(store.catalog_path), seen) == {}
