"""`vz doctor`: every check finds its damage, `--repair` fixes what SQLite can rebuild, and a
corrupt ANN file never breaks queries (they fall back to exact search) and is rebuilt by the next write."""

from __future__ import annotations

import json
import random
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest


def _records(n: int, dims: int = 4, seed: int = 1, prefix: str = "v") -> str:
    rng = random.Random(seed)
    return "".join(json.dumps({"id": f"{prefix}{i}", "values": [rng.uniform(-1, 1) for _ in range(dims)],
                               "metadata": {"c": "x" if i % 2 else "y"}}) + "\n" for i in range(n))


@pytest.fixture
def built(vz, store: Path, monkeypatch: pytest.MonkeyPatch):
    """Index `a` (4 dims, cosine, a metadata index on c) with 297 records and an ANN file."""
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    assert vz("create", "a", "--dimensions", "4", "--metric", "cosine").exit_code == 0
    assert vz("create-metadata-index", "a", "--property-name", "c", "--type", "string").exit_code == 0
    assert vz("insert", "a", "--file", "-", input=_records(300)).exit_code == 0
    assert vz("delete-vectors", "a", "--ids", "v1", "v2", "v3").exit_code == 0
    return store


def _db(store: Path) -> sqlite3.Connection:
    return sqlite3.connect(store / "catalog.sqlite3", isolation_level=None)


def _ann(store: Path) -> Path:
    (name,) = _db(store).execute("SELECT ann_file FROM indexes WHERE name = 'a'").fetchone()
    assert name is not None
    return store / "indexes" / "a" / name


def _doctor(vz, *args: str):
    r = vz("doctor", *args, "--json")
    return r.exit_code, r.json()


def _checks(report: dict) -> list[tuple[str | None, str, bool]]:
    return [(p["index"], p["check"], p["repaired"]) for p in report["problems"]]


def _same_as_exact(vz) -> None:
    for q in (["1", "1", "1", "1"], ["-1", "0.5", "0", "2"]):
        a = vz("query", "a", "--vector", *q, "--top-k", "10", "--json")
        b = vz("query", "a", "--vector", *q, "--top-k", "10", "--json", "--exact")
        assert a.exit_code == b.exit_code == 0
        got, want = a.json()["matches"], b.json()["matches"]
        exact_scores = {m["id"]: m["score"] for m in want}
        # HNSW may miss a node now and then (a small usearch graph can leave one unreachable), so
        # require exact scores for what it returns, nothing better than exact, and high overlap.
        assert len(got) == len(want)
        assert [m["score"] for m in got] == sorted((m["score"] for m in got), reverse=True)
        assert got[0]["score"] <= want[0]["score"]
        for m in got:
            if m["id"] in exact_scores:
                assert m["score"] == exact_scores[m["id"]]
        assert len({m["id"] for m in got} & set(exact_scores)) >= 8


def test_healthy_store_reports_nothing(vz, built: Path) -> None:
    code, rep = _doctor(vz)
    assert code == 0
    assert rep == {"store": str(built), "healthy": True, "checked": ["a"], "problems": [], "repairs": []}
    r = vz("doctor", "a")
    assert r.exit_code == 0 and "✅ The store is healthy." in r.stdout


def test_missing_store_and_unknown_index(vz, store: Path) -> None:
    code, rep = _doctor(vz)
    assert (code, rep["healthy"], rep["checked"]) == (0, True, [])
    r = vz("doctor", "nope")
    assert r.exit_code == 1 and "[code: 3000]" in r.stderr
    r = vz("doctor", "Bad_Name")
    assert r.exit_code == 2 and "[code: 3001]" in r.stderr


def test_catalog_damage_is_found_and_repaired(vz, built: Path) -> None:
    db = _db(built)
    db.execute("UPDATE indexes SET vector_count = 5, last_mutation = 77")
    db.execute("INSERT INTO mvals VALUES (1, 'z', 99999)")
    (live,) = db.execute("SELECT key FROM vectors WHERE id = 'v10'").fetchone()
    db.execute("INSERT INTO dead_keys VALUES (1, ?)", (live,))
    db.execute("INSERT INTO vectors(index_id, id, vec) VALUES (42, 'ghost', x'00000000')")
    code, rep = _doctor(vz)
    assert code == 1 and rep["healthy"] is False
    assert sorted(_checks(rep), key=str) == sorted([
        (None, "catalog.orphans:vectors", False), ("a", "catalog.vector_count", False),
        ("a", "catalog.last_mutation", False), ("a", "catalog.mvals", False), ("a", "catalog.dead_keys", False),
        ("a", "ann.counters", False)], key=str)
    r = vz("doctor", "--repair", "--json")
    assert r.exit_code == 0, r.stdout
    rep = r.json()
    assert rep["healthy"] is True and all(p["repaired"] for p in rep["problems"])
    assert "a: recounted vector_count" in rep["repairs"] and "a: rebuilt the ANN file from SQLite" in rep["repairs"]
    assert _doctor(vz) == (0, {"store": str(built), "healthy": True, "checked": ["a"], "problems": [], "repairs": []})
    assert vz("info", "a", "--json").json()["vectorCount"] == 297
    assert db.execute("SELECT count(*) FROM vectors WHERE id = 'ghost'").fetchone() == (0,)
    _same_as_exact(vz)


def test_truncated_ann_file_queries_stay_exact_and_next_write_rebuilds(vz, built: Path) -> None:
    path = _ann(built)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])  # cut inside the node section
    _same_as_exact(vz)  # no crash: queries fall back to exact search
    code, rep = _doctor(vz, "a")
    assert code == 1 and _checks(rep) == [("a", "ann.file", False)]
    assert "truncated" in rep["problems"][0]["message"]
    # no --repair: the next write notices the bad file and rebuilds it from SQLite
    assert vz("upsert", "a", "--file", "-", input=_records(1, prefix="new")).exit_code == 0
    assert _ann(built) != path
    assert _doctor(vz)[0] == 0
    _same_as_exact(vz)


def test_missing_and_foreign_ann_files_are_rebuilt(vz, built: Path) -> None:
    # a whole, valid usearch file of the same configuration but other keys: only the key check sees it
    assert vz("create", "b", "--dimensions", "4", "--metric", "cosine").exit_code == 0
    assert vz("insert", "b", "--file", "-", input=_records(150, seed=7)).exit_code == 0
    (bfile,) = _db(built).execute("SELECT ann_file FROM indexes WHERE name = 'b'").fetchone()
    _ann(built).write_bytes((built / "indexes" / "b" / bfile).read_bytes())
    code, rep = _doctor(vz, "a")
    assert code == 1 and _checks(rep) == [("a", "ann.file", False)]
    assert rep["problems"][0]["message"].endswith("holds key 450, beyond ann_max_key 300")
    assert _doctor(vz, "a", "--repair")[0] == 0
    _ann(built).unlink()
    code, rep = _doctor(vz, "a")
    assert code == 1 and rep["problems"][0]["message"].endswith(": missing")
    _same_as_exact(vz)
    code, rep = _doctor(vz, "--repair")
    assert code == 0 and _checks(rep) == [("a", "ann.file", True)]
    _same_as_exact(vz)


def test_a_vector_changed_inside_the_ann_file_is_found_and_rebuilt(vz, built: Path) -> None:
    """Queries score from the file's own vectors; doctor compares every one with SQLite's."""
    import numpy as np

    from vzcli import ann

    path = _ann(built)
    db = _db(built)
    cur = db.execute("SELECT * FROM indexes WHERE name = 'a'")
    row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
    fv = ann._read_file_vectors(path, row, db)
    assert fv is not None
    (key,) = db.execute("SELECT key FROM vectors WHERE id = 'v10'").fetchone()
    pos = int(np.searchsorted(fv.keys, key))
    assert fv.keys[pos] == key and pos not in np.linspace(0, len(fv.keys) - 1, 8, dtype=np.int64)  # not sampled
    slot = int(fv.slots[pos])
    with open(path, "r+b") as f:  # the file stores f16 (the default): 4 values of 2 bytes
        assert fv.mat.dtype == np.float16
        f.seek(8 + slot * 8)
        f.write(np.array([9, 9, 9, 9], dtype=np.float16).tobytes())
    code, rep = _doctor(vz, "a")
    assert code == 1 and _checks(rep) == [("a", "ann.file", False)]
    assert rep["problems"][0]["message"].endswith("1 record(s) whose vector in the file differs from SQLite's")
    code, rep = _doctor(vz, "a", "--repair")
    assert code == 0 and _checks(rep) == [("a", "ann.file", True)]
    assert _doctor(vz, "a")[0] == 0
    _same_as_exact(vz)


def _scramble_neighbours(path: Path) -> None:
    """Point every level-0 neighbour slot far out of range, keeping the size: usearch segfaults on it."""
    b = bytearray(path.read_bytes())
    rows, bpv = struct.unpack_from("<II", b, 0)
    g = 8 + rows * bpv + 64
    n, m, m0, _, _ = struct.unpack_from("<5Q", b, g)
    levels = np.frombuffer(bytes(b[g + 40:g + 40 + 2 * n]), dtype=np.int16)
    off = g + 40 + 2 * n
    for i in range(n):
        (cnt,) = struct.unpack_from("<I", b, off + 10)
        for j in range(cnt):
            struct.pack_into("<I", b, off + 14 + 4 * j, 0x7FFFFFF0 + j)
        off += 14 + 4 * m0 + int(levels[i]) * (4 + 4 * m)
    assert off == len(b)
    path.write_bytes(bytes(b))


def test_file_that_crashes_usearch_is_probed_in_a_child(vz, built: Path) -> None:
    _scramble_neighbours(_ann(built))
    code, rep = _doctor(vz, "a")  # doctor itself survives
    assert code == 1 and _checks(rep) == [("a", "ann.file", False)]
    assert "crashed" in rep["problems"][0]["message"] or "cannot be searched" in rep["problems"][0]["message"]
    code, rep = _doctor(vz, "a", "--repair")
    assert code == 0 and _checks(rep) == [("a", "ann.file", True)]
    _same_as_exact(vz)


def test_stale_files_and_orphan_directories_are_swept(vz, built: Path) -> None:
    d = built / "indexes" / "a"
    (d / ".tmp-999999-ann-x.usearch").write_bytes(b"partial")  # pid 999999 is not running
    (d / "ann-000000000001-1-abcdef.usearch").write_bytes(b"old")
    (built / "indexes" / "gone").mkdir()
    code, rep = _doctor(vz)
    assert code == 0  # warnings only
    assert sorted(_checks(rep), key=str) == [("a", "files.orphans", False), (None, "files.orphan_dir:gone", False)]
    assert all(p["severity"] == "warning" for p in rep["problems"])
    code, rep = _doctor(vz, "--repair")
    assert code == 0 and all(p["repaired"] for p in rep["problems"])
    assert sorted(p.name for p in d.iterdir()) == sorted([_ann(built).name, "seal-" + _ann(built).name, "merge.lock"])
    assert not (built / "indexes" / "gone").exists()


def test_lagging_ann_file_is_a_warning_and_repair_merges(vz, built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    assert vz("insert", "a", "--file", "-", input=_records(150, prefix="lag")).exit_code == 0
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")  # as if the writer died before its merge
    code, rep = _doctor(vz)
    assert code == 0 and _checks(rep) == [("a", "ann.lagging", False)]
    assert "150 record(s) searched exactly" in rep["problems"][0]["message"]
    code, rep = _doctor(vz, "--repair")
    assert code == 0 and _checks(rep) == [("a", "ann.lagging", True)] and rep["repairs"] == ["a: merge of the ANN file done"]


def test_bad_records_are_reported_never_dropped(vz, built: Path) -> None:
    db = _db(built)
    db.execute("UPDATE vectors SET vec = x'0000' WHERE id = 'v4'")
    db.execute("UPDATE vectors SET vec = ? WHERE id = 'v5'", (np.array([np.nan, 1, 2, 3], np.float32).tobytes(),))
    db.execute("UPDATE vectors SET metadata = '{broken' WHERE id = 'v6'")
    code, rep = _doctor(vz, "a", "--repair")
    assert code == 1 and rep["healthy"] is False
    got = {c: (r, p["message"]) for (_, c, r), p in zip(_checks(rep), rep["problems"], strict=True)}
    assert set(got) == {"records.values", "records.metadata"}
    assert got["records.values"][0] is False and got["records.values"][1].startswith("2 record(s) with invalid values")
    assert "'v4': 2 bytes of values, expected 16" in got["records.values"][1]
    assert "'v5': NaN or infinite values" in got["records.values"][1]
    assert db.execute("SELECT count(*) FROM vectors WHERE id IN ('v4', 'v5', 'v6')").fetchone() == (3,)
    r = vz("doctor", "a", "--repair")
    assert r.exit_code == 1 and "cannot repair" in r.stderr


def test_garbage_catalog_is_a_clear_store_error(vz, store: Path) -> None:
    store.mkdir()
    (store / "catalog.sqlite3").write_bytes(b"this is not a database" * 100)
    r = vz("doctor")
    assert r.exit_code == 1 and "[code: 1004]" in r.stderr and "Traceback" not in r.stderr
