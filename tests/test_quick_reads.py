"""Quick reads: `LocalBackend.quick_query`, and `vz serve` answering a lone quick read on its
event loop instead of handing it to a reader thread (docs/server.md, "Threads")."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from asgi_call import acall, call
from corehelp import SearchCalls

from vzcli import ann, reads, search, wal_index
from vzcli.catalog import index_row
from vzcli.errors import WARN_UNINDEXED_FILTER, IndexNotFound, InvalidVector, TopKTooLarge, UsageError
from vzcli.local import LocalBackend
from vzcli.server import create_app
from vzcli.store import Store

DIMS = 16
N = 600
BASE = "/client/v4/accounts/acct/vectorize/v2/indexes"
HDRS = [("host", "localhost"), ("content-type", "application/json")]


def _lines(n: int, seed: int, start: int = 0) -> io.BytesIO:
    rng = np.random.default_rng(seed)
    return io.BytesIO("".join(json.dumps({"id": f"v{i}", "values": rng.standard_normal(DIMS).round(4).tolist(),
                                          "metadata": {"g": i % 5}}) + "\n"
                              for i in range(start, start + n)).encode())


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100")
    monkeypatch.setattr(wal_index, "MAX_FILES", len(wal_index._FDS) + 4)  # as tests/test_lean_query.py
    ann._OPEN.clear()  # no file held by the process yet


def _store(tmp_path: Path) -> Store:
    st = Store(tmp_path / "store")
    be = LocalBackend(st)
    be.create_index("p", dimensions=DIMS, metric="cosine")
    be.create_metadata_index("p", "g", "number")
    be.insert("p", _lines(N, 7))
    assert be.get_index("p") and st.conn().execute("SELECT ann_file IS NOT NULL FROM indexes").fetchone()[0] == 1
    return st


def _q(seed: int) -> list[float]:
    return np.random.default_rng(seed).standard_normal(DIMS).round(4).tolist()


Calls = SearchCalls


def test_a_big_index_is_quick_only_once_the_process_holds_its_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(reads, "QUICK_SCAN", 0)  # every index counts as big
    st = _store(tmp_path)
    one_shot = LocalBackend(st, resident=False)
    first = LocalBackend(Store(st.path))
    assert first.quick_query("p", vector=_q(1), top_k=5) is None  # the file is not resident yet
    assert first.query("p", vector=_q(1), top_k=5) == one_shot.query("p", vector=_q(1), top_k=5)
    # another backend (its own connection and snapshot) answers from the file the first made resident
    other = LocalBackend(Store(st.path))
    calls = Calls(monkeypatch)
    for seed in range(2, 8):
        for kw in ({"top_k": 5}, {"top_k": 3, "return_values": True}, {"top_k": 4, "return_metadata": "all"},
                   {"top_k": 2, "filter": {}}):
            got = other.quick_query("p", vector=_q(seed), **kw)  # type: ignore[arg-type]
            assert calls.n == 0  # the lean path answered
            assert got is not None and got == one_shot.query("p", vector=_q(seed), **kw)  # type: ignore[arg-type]
            calls.n = 0
    # what the lean path does not answer is not quick in a big index: `query` answers it elsewhere
    for kw in ({"filter": {"g": 1}}, {"namespace": "x"}, {"return_metadata": "indexed"}, {"vector_id": "v3"}):
        args: dict[str, Any] = {"vector": _q(9), **kw} if "vector_id" not in kw else kw
        assert other.quick_query("p", top_k=3, **args) is None
    assert LocalBackend(Store(st.path), resident=False).quick_query("p", vector=_q(1)) is None


def test_a_few_records_newer_than_the_file_are_held_and_more_are_not_quick(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(reads, "QUICK_SCAN", 0)
    st = _store(tmp_path)
    LocalBackend(Store(st.path)).query("p", vector=_q(1))  # the process holds the file
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "100000")
    LocalBackend(st).insert("p", _lines(5, 8, start=N))  # records the file does not hold
    one_shot = LocalBackend(st, resident=False)
    calls = Calls(monkeypatch)
    for seed in (2, 3):
        for kw in ({"top_k": 4}, {"top_k": 6, "return_values": True, "return_metadata": "all"}):
            got = LocalBackend(Store(st.path)).quick_query("p", vector=_q(seed), **kw)  # type: ignore[arg-type]
            assert calls.n == 0
            assert got is not None and got == one_shot.query("p", vector=_q(seed), **kw)  # type: ignore[arg-type]
            calls.n = 0
    # the newest records are among the answers (held ones are scored with the file's)
    rng = np.random.default_rng(8)
    newest = rng.standard_normal(DIMS).round(4).tolist()
    got = LocalBackend(Store(st.path)).quick_query("p", vector=newest, top_k=1, return_values=True)
    assert got is not None and got["matches"][0]["id"] == f"v{N}"
    # more than search.SMALL_EXACT of them: not quick (reading them is not bounded)
    monkeypatch.setattr(search, "SMALL_EXACT", 4)
    assert LocalBackend(Store(st.path)).quick_query("p", vector=_q(2)) is None


def test_a_small_index_is_always_quick(tmp_path, monkeypatch) -> None:
    st = _store(tmp_path)
    be, one_shot = LocalBackend(Store(st.path)), LocalBackend(st, resident=False)
    warned: list[Any] = []
    for kw in ({"vector": _q(3), "top_k": 5}, {"vector": _q(3), "filter": {"g": {"$in": [1, 2]}}, "top_k": 7},
               {"vector_id": "v10", "top_k": 3, "return_metadata": "indexed"}, {"vector": _q(4), "namespace": "x"},
               {"vector": _q(5), "filter": {"h": 1}, "warn": warned.append}):
        got = be.quick_query("p", **kw)  # type: ignore[arg-type]
        kw.pop("warn", None)
        assert got is not None and got == one_shot.query("p", **kw)  # type: ignore[arg-type]
    assert [w.code for w in warned] == [WARN_UNINDEXED_FILTER]


@pytest.mark.parametrize(("kw", "error"), [
    ({"vector": [0.5] * 3}, InvalidVector),
    ({"vector": _q(1), "top_k": 0}, TopKTooLarge),
    ({"vector": _q(1), "top_k": 51, "return_values": True}, TopKTooLarge),
    ({"vector": _q(1), "return_metadata": "some"}, UsageError),
    ({"vector": _q(1), "vector_id": "v1"}, UsageError),
])
@pytest.mark.parametrize("big", [False, True])
def test_quick_query_raises_what_query_raises(tmp_path, monkeypatch, kw, error, big) -> None:
    if big:
        monkeypatch.setattr(reads, "QUICK_SCAN", 0)
    st = _store(tmp_path)
    be = LocalBackend(Store(st.path))
    be.query("p", vector=_q(1))  # lean path ready on this thread, when big
    with pytest.raises(error) as quick:
        be.quick_query("p", **kw)
    with pytest.raises(error) as full:
        be.query("p", **kw)
    assert (quick.value.code, quick.value.message) == (full.value.code, full.value.message)


def test_an_unknown_index_raises_at_once(tmp_path) -> None:
    st = _store(tmp_path)
    for name in ("nope", "../x"):
        with pytest.raises((IndexNotFound, UsageError)) as quick:
            LocalBackend(Store(st.path)).quick_query(name, vector=_q(1))
        with pytest.raises((IndexNotFound, UsageError)) as full:
            LocalBackend(Store(st.path)).query(name, vector=_q(1))
        assert (quick.value.code, quick.value.message) == (full.value.code, full.value.message)
    with pytest.raises(IndexNotFound):
        LocalBackend(Store(tmp_path / "none")).quick_query("p", vector=_q(1))


# --- the server ---------------------------------------------------------------------------------
def _spied(app: Any) -> list[str]:
    """The names of the threads that asked for a backend, in order."""
    names: list[str] = []
    real = app.backend

    def spy() -> Any:
        names.append(threading.current_thread().name)
        return real()

    app.backend = spy
    return names


def _query(seed: int, **extra: Any) -> bytes:
    return json.dumps({"vector": _q(seed), "topK": 5, **extra}).encode()


def test_a_lone_quick_read_is_answered_on_the_event_loop(tmp_path, monkeypatch) -> None:
    st = _store(tmp_path)
    app = create_app(st.path, read_threads=2)
    names = _spied(app)
    loop_thread = threading.current_thread().name  # `call` runs the loop on this thread
    for method, path, body in [("POST", f"{BASE}/p/query", _query(1)),
                               ("POST", f"{BASE}/p/query", _query(2, filter={"g": 3}, returnMetadata="all")),
                               ("POST", f"{BASE}/p/get_by_ids", b'{"ids": ["v1", "v2"]}'),
                               ("GET", f"{BASE}/p/info", b""), ("GET", f"{BASE}/p/list?count=3", b""),
                               ("GET", f"{BASE}/p", b""), ("GET", BASE, b""),
                               ("GET", f"{BASE}/p/metadata_index/list", b"")]:
        before = len(names)
        status, _, out = call(app, method, path, headers=HDRS, body=body)
        assert status == 200 and out["success"] is True
        assert names[before:] == [loop_thread]
    # a read whose cost is not bounded goes to a reader thread, even alone
    monkeypatch.setattr(reads, "QUICK_SCAN", 0)
    ann._OPEN.clear()  # the process holds no file now...
    LocalBackend(Store(st.path)).create_index("other", dimensions=2, metric="cosine")  # ...once a commit is seen
    before = len(names)
    status, _, first = call(app, "POST", f"{BASE}/p/query", headers=HDRS, body=_query(4))
    assert status == 200 and names[before] == loop_thread and names[before + 1].startswith("vz-read")
    # that thread made the file resident: the next one is answered on the loop, and answers the same
    before = len(names)
    status, _, again = call(app, "POST", f"{BASE}/p/query", headers=HDRS, body=_query(4))
    assert status == 200 and again == first and names[before:] == [loop_thread]
    app.close()


def test_while_a_read_runs_in_the_pool_quick_reads_go_there_too(tmp_path) -> None:
    """The loop never waits for a reader thread (it might hold the search of the same file); other
    requests merely in progress (a body still arriving) do not send a quick read to the pool."""
    st = _store(tmp_path)
    app = create_app(st.path, read_threads=2)
    names = _spied(app)
    loop_thread = threading.current_thread().name

    async def scenario() -> list[Any]:
        started, release = threading.Event(), threading.Event()
        asked, sent = asyncio.Event(), asyncio.Event()

        def long_read(b: Any) -> str:
            started.set()
            assert release.wait(60)
            return "long"

        async def slow_receive() -> dict[str, Any]:  # a client still sending its body
            if asked.is_set():
                await asyncio.Event().wait()
            asked.set()
            await sent.wait()
            return {"type": "http.request", "body": _query(1), "more_body": False}

        slow = asyncio.create_task(acall(app, "POST", f"{BASE}/p/query", headers=HDRS, receive=slow_receive))
        await asyncio.wait_for(asked.wait(), 60)
        got = [await acall(app, "POST", f"{BASE}/p/query", headers=HDRS, body=_query(2))]
        assert names == [loop_thread]  # answered on the loop while the slow request waits for its body
        long = asyncio.create_task(app.read(long_read))
        assert await asyncio.to_thread(started.wait, 60)
        got.append(await acall(app, "POST", f"{BASE}/p/query", headers=HDRS, body=_query(3)))
        release.set()
        assert await long == "long"
        sent.set()
        got.append(await slow)
        return got

    got = asyncio.run(scenario())
    assert [g[0] for g in got] == [200, 200, 200]
    assert names[0] == loop_thread and names[1].startswith("vz-read") and names[2].startswith("vz-read")
    assert names[3:] == [loop_thread]  # the long read has ended: the slow request's query, on the loop
    # answers do not depend on the thread
    pool = create_app(st.path, read_threads=2)
    pool.quick_reads = False
    for g, seed in zip(got, (2, 3, 1), strict=True):
        assert g[2] == call(pool, "POST", f"{BASE}/p/query", headers=HDRS, body=_query(seed))[2]
    app.close()
    pool.close()


def test_a_file_held_but_not_ready_is_not_quick(tmp_path, monkeypatch) -> None:
    """The process may hold the file opened by a one-shot read (not resident), or made resident by a
    thread that has not loaded its ids yet: neither answers quickly, and neither breaks a query."""
    monkeypatch.setattr(reads, "QUICK_SCAN", 0)
    monkeypatch.setattr(ann, "walk_pays", lambda *a, **kw: False)  # one-shot reads open through usearch
    st = _store(tmp_path)
    expected = LocalBackend(st, resident=False).query("p", vector=_q(3), top_k=4)
    assert len(ann._OPEN) == 1 and not next(iter(ann._OPEN.values())).fv.resident
    be = LocalBackend(Store(st.path))
    assert be.quick_query("p", vector=_q(3), top_k=4) is None
    conn = st.conn()
    row = index_row(conn, "p")
    opened = search.open_for_query(conn, row, st.index_dir("p"), resident=True)
    assert opened is not None and opened.fv is not None and opened.fv.resident and opened.fv.known is None
    assert be.quick_query("p", vector=_q(3), top_k=4) is None
    assert be.query("p", vector=_q(3), top_k=4) == expected
    assert be.quick_query("p", vector=_q(3), top_k=4) == expected


def test_a_small_index_is_known_small_without_a_second_transaction(tmp_path, monkeypatch) -> None:
    """Once this thread's snapshot holds the index's row (and nothing was committed since), a
    filtered query of a small index opens one read transaction, its own, not one more to decide."""
    st = _store(tmp_path)
    be = LocalBackend(Store(st.path))
    kw: dict[str, Any] = {"vector": _q(3), "filter": {"g": {"$in": [1, 2]}}, "top_k": 4}
    first = be.quick_query("p", **kw)
    opened: list[int] = []
    real = Store.read

    def counted(self: Store) -> Any:
        opened.append(1)
        return real(self)

    monkeypatch.setattr(Store, "read", counted)
    assert be.quick_query("p", **kw) == first
    assert len(opened) == 1
    LocalBackend(Store(st.path)).create_index("other", dimensions=2, metric="cosine")  # a commit elsewhere
    opened.clear()
    assert be.quick_query("p", **kw) == first and len(opened) == 2  # the snapshot is stale: it looks again
