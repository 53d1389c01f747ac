"""What a long-lived process holds of its indexes (`published.RESIDENT`, VZ_RESIDENT_MB).

A resident backend (`vz serve`'s workers, a library `LocalBackend(resident=True)`) keeps the float32
copy of an index's records and their ids in memory: ~4 x dims + 256 bytes per record. Within the
budget nothing changes; past it a file is searched without a copy and queries read what they
return from SQLite, with the same answers. An index's newer file takes over its older file's
share, and a superseded file leaves the process's cache at once (it stayed until seven other
opens pushed it out: up to eight copies of one index after eight merges).
"""

from __future__ import annotations

import io
import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest
from corehelp import SearchCalls

from vzcli import ann, published, snapshot
from vzcli.local import LocalBackend
from vzcli.store import Store

DIMS = 128
N = 3000  # 3000 x (4 x 128 + 256) bytes: 2.2 MiB of budget per index


def _lines(start: int, n: int, seed: int, ns: str | None = None) -> io.BytesIO:
    rng = np.random.default_rng(seed)
    return io.BytesIO("".join(json.dumps({"id": f"v{i}", "values": rng.standard_normal(DIMS).astype(np.float32).tolist(),
                                          **({"namespace": ns} if ns else {}), "metadata": {"i": i}}) + "\n"
                              for i in range(start, start + n)).encode())


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process-wide cache and budget of this test's own."""
    monkeypatch.setattr(published, "RESIDENT", published._Budget())
    monkeypatch.setattr(ann, "_OPEN", {})
    monkeypatch.setattr(ann, "_INFO_DONORS", {})
    monkeypatch.setattr(snapshot, "_TLS", threading.local())
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")


def _store(tmp_path: Path, *names: str, dtype: str = "f16") -> Store:
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    for s, name in enumerate(names):
        be.create_index(name, dimensions=DIMS, metric="cosine")
        be.insert(name, _lines(0, N // 2, s))
        be.insert(name, _lines(N // 2, N // 2, s + 10, ns="b"))
    return st


def _resident(name: str) -> list[bool]:
    return [o.fv.resident for k, o in ann._OPEN.items() if f"/{name}/" in k[0].replace("\\", "/") and o.fv]


KWS = ({"top_k": 5}, {"top_k": 7, "return_values": True}, {"top_k": 4, "namespace": "b"},
       {"top_k": 6, "return_metadata": "all", "return_values": True}, {"top_k": 3, "filter": {}})


@pytest.mark.parametrize("dtype", ["f16", "f32"])
def test_past_the_budget_a_resident_backend_answers_from_sqlite_the_same(tmp_path, monkeypatch, fresh, dtype) -> None:
    """The same answers as a one-shot backend, and as the same backend holding the index."""
    monkeypatch.setenv("VZ_ANN_DTYPE", dtype)
    st = _store(tmp_path, "p")
    monkeypatch.setenv("VZ_RESIDENT_MB", "0")
    held, one_shot = LocalBackend(st, resident=True), LocalBackend(st, resident=False)
    qs = np.random.default_rng(3).standard_normal((6, DIMS)).astype(np.float32).tolist()
    over = [held.query("p", vector=q, **kw) for q in qs for kw in KWS]  # type: ignore[arg-type]
    assert over == [one_shot.query("p", vector=q, **kw) for q in qs for kw in KWS]  # type: ignore[arg-type]
    assert _resident("p") == [False] and published.RESIDENT.used == 0
    monkeypatch.setenv("VZ_RESIDENT_MB", "64")  # room again: the next open holds it
    snapshot._TLS.__dict__.clear()  # a new snapshot (as after a commit) opens the file again
    held.query("p", vector=qs[0], top_k=3)
    path = Path(next(iter(ann._OPEN))[0])  # an f32 copy is the whole file, an f16 one the float32 values
    copy = N * DIMS * 4 if dtype == "f16" else path.stat().st_size
    assert _resident("p") == [True] and published.RESIDENT.used == copy + N * published.INFO_BYTES
    calls = SearchCalls(monkeypatch)
    assert [held.query("p", vector=q, **kw) for q in qs for kw in KWS] == over  # type: ignore[arg-type]
    assert calls.n == 6  # only the namespace queries took the general path: the rest were lean


def test_the_budget_is_shared_by_every_index_and_a_merge_keeps_its_indexs_share(tmp_path, monkeypatch, fresh) -> None:
    st = _store(tmp_path, "a", "b")
    one = N * (DIMS * 4 + published.INFO_BYTES)
    monkeypatch.setenv("VZ_RESIDENT_MB", str(math.ceil(1.5 * one / 2 ** 20)))  # room for one index
    held = LocalBackend(st, resident=True)
    q = np.random.default_rng(4).standard_normal(DIMS).tolist()
    held.query("a", vector=q, top_k=3)
    b_answer = held.query("b", vector=q, top_k=3)
    assert _resident("a") == [True] and _resident("b") == [False] and published.RESIDENT.used == one
    assert b_answer == LocalBackend(st, resident=False).query("b", vector=q, top_k=3)
    for r in range(3):  # merges in "a": each newer file takes over the share, the older one leaves
        held.insert("a", _lines(N + 200 * r, 200, 50 + r))
        assert held.query("a", vector=q, top_k=3) == LocalBackend(st, resident=False).query("a", vector=q, top_k=3)
        assert _resident("a") == [True] and _resident("b") == [False]
        assert published.RESIDENT.used == (N + 200 * (r + 1)) * (DIMS * 4 + published.INFO_BYTES)
        assert len(published.RESIDENT.held) == 1


def test_a_superseded_file_leaves_the_cache(tmp_path, monkeypatch, fresh) -> None:
    st = _store(tmp_path, "a")
    held = LocalBackend(st, resident=True)
    q = np.random.default_rng(5).standard_normal(DIMS).tolist()
    names = set()
    for r in range(4):
        held.query("a", vector=q, top_k=3)
        names.update(k[0] for k in ann._OPEN)
        assert len(ann._OPEN) == 1 and _resident("a") == [True]
        held.insert("a", _lines(N + 200 * r, 200, 60 + r))
    assert len(names) == 4  # four files, each replaced the one before


def test_superseded_compares_mutation_numbers_within_one_directory() -> None:
    f = "/s/indexes/a/ann-{:012d}-77-abcdef.usearch".format
    assert ann._superseded(f(5), f(12)) and not ann._superseded(f(12), f(5)) and not ann._superseded(f(5), f(5))
    assert not ann._superseded(f(5), f(12).replace("/a/", "/b/"))


def test_a_new_files_copy_taken_from_the_previous_one_equals_a_full_read(tmp_path, monkeypatch, fresh) -> None:
    """After a merge the float32 copy of the new file is copied from the previous file's, and only
    the merged records are read from SQLite: the same arrays as reading every record, with the
    keys deleted since the previous file was read (dead nodes of the new file) left out."""
    st = _store(tmp_path, "a")
    held = LocalBackend(st, resident=True)
    q = np.random.default_rng(8).standard_normal(DIMS).tolist()
    held.query("a", vector=q, top_k=3)
    donors: list[bool] = []
    real = published.FileVectors._load_exact

    def spy(self, conn, row, donor=None):  # type: ignore[no-untyped-def]
        donors.append(donor is not None)
        real(self, conn, row, donor)

    monkeypatch.setattr(published.FileVectors, "_load_exact", spy)
    for r in range(3):
        if r < 2:  # the third merge only adds: the new file's first keys are the previous file's, in order
            held.delete_by_ids("a", [f"v{i}" for i in range(r * 40, r * 40 + 40)])
            held.upsert("a", _lines(500 + r * 10, 10, 70 + r))  # replaced: new keys, old ones dead
        held.insert("a", _lines(N + 200 * r, 200, 80 + r))  # past the merge threshold: a new file
        held.delete_by_ids("a", [f"v{i}" for i in range(1000 + r * 30, 1000 + r * 30 + 30)])  # dead nodes of it
        held.query("a", vector=q, top_k=3)
        (opened,) = ann._OPEN.values()
        fv = opened.fv
        assert fv.resident and fv.mat32 is not None and fv.have32 is not None
        conn = st.reader()
        dead = conn.execute("SELECT count(*) FROM dead_keys").fetchone()[0]
        full = published.FileVectors(fv.path, fv.keys, fv.slots, fv.mat, fv.head)
        with conn:
            real(full, conn, {"id": 1})
        assert full.have32 is not None and full.mat32 is not None
        assert np.array_equal(fv.have32, full.have32) and np.array_equal(fv.mat32, full.mat32)
        assert int((~full.have32).sum()) == dead > 0  # the dead nodes have no copy, as without the donor
    assert donors == [True, True, True]
