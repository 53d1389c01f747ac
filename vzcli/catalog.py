"""The catalog rows every operation starts from: an index's row, its API object, its metadata indexes."""

from __future__ import annotations

import sqlite3
from typing import Any

from vzcli import limits
from vzcli.errors import IndexNotFound, UsageError


def index_row(conn: sqlite3.Connection | None, name: str) -> dict[str, Any]:
    limits.check_index_name(name)
    if conn is None:
        raise IndexNotFound(name)
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    r = cur.fetchone()
    if r is None:
        raise IndexNotFound(name)
    return dict(zip([c[0] for c in cur.description], r, strict=True))



def index_object(row: dict[str, Any]) -> dict[str, Any]:
    obj: dict[str, Any] = {"name": row["name"]}
    if row["description"] is not None:
        obj["description"] = row["description"]
    obj["config"] = {"dimensions": row["dimensions"], "metric": row["metric"]}
    obj["created_on"] = row["created_on"]
    obj["modified_on"] = row["modified_on"]
    return obj



def meta_indexes(conn: sqlite3.Connection, index_id: int) -> dict[str, tuple[int, str]]:
    return {p: (i, t) for i, p, t in conn.execute(
        "SELECT id, property_name, index_type FROM metadata_indexes WHERE index_id = ? ORDER BY id", (index_id,))}


def check_id_arg(vid: Any) -> None:
    from vzcli.records import check_id

    try:
        check_id(vid)
    except Exception as e:
        raise UsageError(str(e), code=40008) from None

