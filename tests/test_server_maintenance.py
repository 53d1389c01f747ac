"""`vz serve` merges ANN files in a background thread, so a write answers once SQLite commits.

Queries are exact over records the file does not hold yet, so answers never depend on whether
a merge has run; `VzApp.idle()` waits for the merge thread, so nothing here sleeps.
"""

from __future__ import annotations

import json
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from vzcli.server import create_app

BASE = "/client/v4/accounts/0123456789abcdef0123456789abcdef/vectorize/v2/indexes"
DIMS = 8


def _catalog(store: Path) -> tuple[int, int, int]:
    con = sqlite3.connect(store / "catalog.sqlite3")
    try:
        max_key, ann_nodes = con.execute("SELECT ann_max_key, ann_nodes FROM indexes WHERE name = 'm'").fetchone()
        top = con.execute("SELECT max(key) FROM vectors").fetchone()[0]
        return max_key, ann_nodes, top
    finally:
        con.close()


def test_writes_answer_before_the_merge_and_queries_are_exact_throughout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "250")
    store = tmp_path / "store"
    app = create_app(store)
    client = TestClient(app, base_url="http://127.0.0.1")
    assert client.post(BASE, json={"name": "m", "config": {"dimensions": DIMS, "metric": "euclidean"}}).status_code == 200
    r = client.post(f"{BASE}/m/metadata_index/create", json={"propertyName": "b", "indexType": "number"})
    assert r.status_code == 200
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((1000, DIMS)).astype(np.float32)
    for b in range(4):
        body = "\n".join(json.dumps({"id": f"v{i}", "values": vecs[i].tolist(), "metadata": {"b": b}})
                         for i in range(b * 250, b * 250 + 250))
        r = client.post(f"{BASE}/m/insert", content=body.encode(), headers={"content-type": "application/x-ndjson"})
        assert r.status_code == 200 and r.json()["success"] is True
        # Whatever the merge thread has done so far, the nearest record of each batch to one of its
        # vectors is that record (250 candidates: the planner searches them exactly, reading the
        # vectors from the ANN file or from SQLite, wherever each one is by then).
        for i in (b * 250, b * 250 + 249):
            got = client.post(f"{BASE}/m/query", json={"vector": vecs[i].tolist(), "topK": 1,
                                                       "filter": {"b": b}}).json()["result"]
            assert got["matches"][0]["id"] == f"v{i}" and got["matches"][0]["score"] == 0.0
    assert app.idle(timeout=120)
    max_key, nodes, top = _catalog(store)
    assert max_key == top and nodes == 1000  # the file holds every record: nothing left in the delta
    r = client.post(f"{BASE}/m/delete_by_ids", json={"ids": [f"v{i}" for i in range(100)]})
    assert r.status_code == 200
    assert app.idle(timeout=120)
    got = client.post(f"{BASE}/m/query", json={"vector": vecs[5].tolist(), "topK": 3}).json()["result"]
    assert [m["id"] for m in got["matches"]] and all(int(m["id"][1:]) >= 100 for m in got["matches"])
    info = client.get(f"{BASE}/m/info").json()["result"]
    assert info["vectorCount"] == 900
