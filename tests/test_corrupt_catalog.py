"""A catalog with damaged pages: `vz doctor` reports it (exit 1, never an internal error), `--repair`
recovers the readable rows into a fresh catalog, keeps the damaged file and rebuilds the ANN files,
and a write that meets the damage fails with code 1005 and changes nothing.

Pages are damaged deterministically: after a WAL checkpoint, the test walks the b-tree of a table or
index in the file (SQLite's documented page format) and zeroes one chosen page, so the rows it held
are known exactly.
"""

from __future__ import annotations

import gc
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from corehelp import fails

from vzcli.store import APPLICATION_ID

N = 400


def _records() -> str:
    return "".join(json.dumps({"id": f"v{i:03d}", "values": [((i * 7 + j) % 11) - 5 + 0.5 for j in range(8)],
                               "metadata": {"c": f"c{i % 3}", "pad": "x" * 60}}) + "\n" for i in range(N))


@pytest.fixture
def filled(vz: Any, store: Path) -> Path:
    # 4 KiB pages (vz makes 16 KiB ones): the damage below needs the tables spread over several pages
    store.mkdir(parents=True)
    with sqlite3.connect(store / "catalog.sqlite3") as c:
        c.execute("PRAGMA page_size = 4096")
        c.execute("PRAGMA user_version = 0")  # writes the header: an empty catalog with that page size
    assert vz("create", "docs", "--dimensions", "8", "--metric", "euclidean").exit_code == 0
    assert vz("create-metadata-index", "docs", "--property-name", "c", "--type", "string").exit_code == 0
    r = vz("insert", "docs", "--file", "-", "--json", input=_records())
    assert r.exit_code == 0, r.stderr
    return store / "catalog.sqlite3"


def _checkpoint(cat: Path) -> None:
    gc.collect()  # connections of earlier in-process commands
    with sqlite3.connect(cat) as c:
        assert c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0


def _u16(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 2], "big")


def _u32(b: bytes, i: int) -> int:
    return int.from_bytes(b[i:i + 4], "big")


def _varint(b: bytes, i: int) -> tuple[int, int]:
    v = 0
    for n in range(9):
        byte = b[i + n]
        if n == 8:
            return (v << 8) | byte, i + 9
        v = (v << 7) | (byte & 0x7F)
        if byte < 0x80:
            return v, i + n + 1
    raise AssertionError("unreachable")


class Btree:
    """Just enough of SQLite's file format to list a b-tree's leaf pages and a table leaf's rowids."""

    def __init__(self, cat: Path) -> None:
        self.cat = cat
        self.data = cat.read_bytes()
        self.ps = _u16(self.data, 16) or 65536

    def _hdr(self, pg: int) -> int:
        return (pg - 1) * self.ps + (100 if pg == 1 else 0)

    def root(self, name: str) -> int:
        with sqlite3.connect(self.cat) as c:
            return c.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()[0]

    def leaves(self, pg: int) -> list[int]:
        h = self._hdr(pg)
        kind = self.data[h]
        if kind in (0x0D, 0x0A):
            return [pg]
        assert kind in (0x05, 0x02), kind
        off = (pg - 1) * self.ps
        kids = [_u32(self.data, off + _u16(self.data, h + 12 + 2 * i)) for i in range(_u16(self.data, h + 3))]
        return [leaf for kid in [*kids, _u32(self.data, h + 8)] for leaf in self.leaves(kid)]

    def rowids(self, pg: int) -> list[int]:
        h, off = self._hdr(pg), (pg - 1) * self.ps
        assert self.data[h] == 0x0D
        out = []
        for i in range(_u16(self.data, h + 3)):
            _, j = _varint(self.data, off + _u16(self.data, h + 8 + 2 * i))  # payload size
            out.append(_varint(self.data, j)[0])
        return out

    def zero(self, pg: int) -> None:
        with open(self.cat, "r+b") as f:
            f.seek((pg - 1) * self.ps)
            f.write(b"\0" * self.ps)


def _ids_by_key(cat: Path) -> dict[int, str]:
    with sqlite3.connect(cat) as c:
        return dict(c.execute("SELECT key, id FROM vectors"))


def _damage_vectors_leaf(cat: Path) -> set[str]:
    """Zero the second leaf of the vectors table; the ids it held."""
    _checkpoint(cat)
    ids = _ids_by_key(cat)
    bt = Btree(cat)
    leaves = bt.leaves(bt.root("vectors"))
    assert len(leaves) >= 4, leaves  # the damage is in the middle of the table
    lost = {ids[k] for k in bt.rowids(leaves[1])}
    assert 0 < len(lost) < N // 4
    bt.zero(leaves[1])
    return lost


def _doctor(vz: Any, *args: str) -> tuple[int, dict[str, Any]]:
    r = vz("doctor", "--json", *args)
    assert r.stdout, r.stderr
    return r.exit_code, r.json()


def test_doctor_reports_damaged_pages(vz: Any, filled: Path) -> None:
    _damage_vectors_leaf(filled)
    code, rep = _doctor(vz)
    assert code == 1 and rep["healthy"] is False and rep["checked"] == [] and rep["repairs"] == []
    [p] = rep["problems"]
    assert {k: p[k] for k in ("index", "check", "severity", "repairable", "repaired")} == {
        "index": None, "check": "sqlite.integrity", "severity": "error", "repairable": True, "repaired": False}
    assert p["message"].startswith("the catalog fails PRAGMA integrity_check: ")
    r = vz("doctor")
    assert (r.exit_code, r.stderr) == (1, "✘ [ERROR] the store has problems; see above\n")
    assert "✘ [sqlite.integrity] the catalog fails PRAGMA integrity_check" in r.stdout
    assert "(vz doctor --repair fixes this)" in r.stdout
    code, rep = _doctor(vz, "docs")  # one index: the catalog-wide check still runs first
    assert code == 1 and [p["check"] for p in rep["problems"]] == ["sqlite.integrity"]


def test_repair_recovers_the_readable_rows_keeps_the_damaged_file_and_rebuilds_ann(
        vz: Any, filled: Path, store: Path) -> None:
    lost = _damage_vectors_leaf(filled)
    damaged = filled.read_bytes()
    max_key = max(_ids_by_key_safe(damaged, store))
    code, rep = _doctor(vz, "--repair")
    assert code == 0 and rep["healthy"] is True, rep
    assert [(p["check"], p["repaired"]) for p in rep["problems"]] == [("sqlite.integrity", True)]
    first = rep["repairs"][0]
    assert first.startswith("recovered the catalog into a fresh file (indexes: 1 copied, metadata_indexes: 1 "
                            f"copied, vectors: {N - len(lost)} copied, 1 unreadable range(s) skipped")
    kept = Path(first.rsplit("the damaged file is kept as ", 1)[1])
    assert kept.parent == store and kept.name.startswith("catalog.sqlite3.corrupt-")
    assert kept.read_bytes() == damaged
    assert "docs: rebuilt the ANN file from the recovered catalog" in rep["repairs"]
    # every readable record is back, exactly; the lost ones are gone
    got = [json.loads(x)["id"] for x in vz("export", "docs").stdout.splitlines()]
    assert got == sorted({f"v{i:03d}" for i in range(N)} - lost)
    assert vz("info", "docs", "--json").json()["vectorCount"] == N - len(lost)
    with sqlite3.connect(filled) as c:
        assert c.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert c.execute("SELECT ann_file IS NOT NULL, ann_nodes FROM indexes").fetchone() == (1, N - len(lost))
    # filters still work (metadata-index values copied), and the ANN answers like exact search
    q = ["query", "docs", "--vector", *["0.5"] * 8, "--top-k", "20", "--filter", '{"c": "c1"}', "--json"]
    ann, exact = vz(*q).json(), vz(*q, "--exact").json()
    assert [m["id"] for m in ann["matches"]] == [m["id"] for m in exact["matches"]]
    assert len(exact["matches"]) == 20 and all(int(m["id"][1:]) % 3 == 1 for m in exact["matches"])
    # a new record gets a key above every key the damaged catalog had handed out
    assert vz("insert", "docs", "--file", "-", input='{"id": "new", "values": [1,1,1,1,1,1,1,1]}\n').exit_code == 0
    with sqlite3.connect(filled) as c:
        assert c.execute("SELECT key FROM vectors WHERE id = 'new'").fetchone()[0] > max_key
    assert _doctor(vz)[0] == 0


def _ids_by_key_safe(damaged: bytes, store: Path) -> list[int]:
    """The keys readable in the damaged file (its sequence counter is what matters)."""
    copy = store.parent / "copy.sqlite3"
    copy.write_bytes(damaged)
    with sqlite3.connect(copy) as c:
        return [c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'vectors'").fetchone()[0]]


def _digest(cat: Path) -> tuple[str, list[str]]:
    return hashlib.sha256(cat.read_bytes()).hexdigest(), sorted(
        f"{p.name}:{p.stat().st_size}" for p in cat.parent.iterdir() if p.name.startswith(cat.name + "-"))


def test_write_meeting_the_damage_fails_with_1005_and_changes_nothing(vz: Any, filled: Path) -> None:
    _checkpoint(filled)
    bt = Btree(filled)
    bt.zero(bt.root("vectors_id"))  # every insert/upsert looks its ids up in this index
    before = _digest(filled)
    for cmd in ("insert", "upsert"):
        err = fails(vz(cmd, "docs", "--file", "-", input='{"id": "v001", "values": [1,1,1,1,1,1,1,1]}\n'), 1, 1005)
        assert "is damaged (database disk image is malformed); nothing was changed" in err
        assert "vz doctor --repair" in err
        assert _digest(filled)[0] == before[0]
    fails(vz("delete-vectors", "docs", "--ids", "v001"), 1, 1005)
    fails(vz("get-vectors", "docs", "--ids", "v001"), 1, 1005)  # a read meets it too: coded, no traceback
    assert _digest(filled)[0] == before[0]


def test_damaged_metadata_index_values_are_rebuilt_from_the_records(vz: Any, filled: Path) -> None:
    _checkpoint(filled)
    bt = Btree(filled)
    leaves = bt.leaves(bt.root("mvals"))
    assert len(leaves) >= 2
    bt.zero(leaves[0])
    code, rep = _doctor(vz, "--repair")
    assert code == 0, rep
    assert ", mvals: " in rep["repairs"][0] and "1 unreadable range(s) skipped); the damaged" in rep["repairs"][0], rep
    r = vz("query", "docs", "--vector", *["0.5"] * 8, "--top-k", "50", "--filter", '{"c": "c2"}', "--json", "--exact")
    ids = [m["id"] for m in r.json()["matches"]]
    assert len(ids) == 50 and all(int(i[1:]) % 3 == 2 for i in ids)
    with sqlite3.connect(filled) as c:
        assert c.execute("SELECT count(*) FROM mvals").fetchone()[0] == N


def test_unrecoverable_catalog_is_left_as_it_is(vz: Any, filled: Path) -> None:
    _checkpoint(filled)
    bt = Btree(filled)
    bt.zero(bt.root("indexes"))
    before = _digest(filled)[0]
    code, rep = _doctor(vz, "--repair")
    assert code == 1 and rep["problems"][0]["check"] == "sqlite.integrity" and not rep["problems"][0]["repaired"]
    assert rep["repairs"] == ["could not read a single index from the damaged catalog; it is left as it is: "
                              "restore a backup, or try the sqlite3 shell's .recover on it"]
    assert _digest(filled)[0] == before
    assert sorted(p.name for p in filled.parent.iterdir() if p.name.startswith(".recover")) == []
