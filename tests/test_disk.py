"""A read-only store and a full disk: clear coded errors, nothing corrupt, nothing half-written.

Read-only: the tests run as root on CI, where chmod does not stop writes, so the store is
bind-mounted read-only in a private mount namespace (`unshare -m`); as another user, chmod does
the job. A full disk is simulated with RLIMIT_FSIZE (writes past the limit fail with EFBIG; the
SIGXFSZ that would kill the process is ignored).
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from corehelp import catalog_rows

VZ = str(Path(sys.executable).with_name("vz"))


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VZ_")}
    env.update(VZ_STORE=str(store), VZ_MERGE_THRESHOLD="100")
    return env


def _vz(store: Path, *args: str, input: bytes | None = None, preexec: Callable[[], None] | None = None,
        prefix: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*(prefix or []), VZ, *args], input=input.decode() if input else None, text=True,
                          capture_output=True, env=_env(store), timeout=300, preexec_fn=preexec)


def _records(n: int, dims: int, seed: int = 1, prefix: str = "v") -> bytes:
    rng = random.Random(seed)
    return b"".join(json.dumps({"id": f"{prefix}{i}", "values": [round(rng.uniform(-1, 1), 5) for _ in range(dims)],
                                "metadata": {"c": f"c{i % 3}"}}).encode() + b"\n" for i in range(n))


_snapshot = catalog_rows


def _ann_files(store: Path, name: str) -> list[str]:
    return sorted(p.name for p in (store / "indexes" / name).iterdir()
                  if p.name != "merge.lock" and not p.name.startswith("seal-"))


def _healthy(store: Path) -> dict[str, Any]:
    r = _vz(store, "doctor", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)


# --- read-only ---------------------------------------------------------------------------------

def _read_only_prefix(store: Path) -> list[str] | None:
    """A command prefix that runs what follows with `store` mounted read-only, or None."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return None
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(store)]
    probe = subprocess.run([*prefix, "sh", "-c", f'! touch "{store}/.probe" 2>/dev/null'], capture_output=True)
    return prefix if probe.returncode == 0 else None


@pytest.fixture
def read_only(tmp_path: Path):
    """(store, prefix): a populated store and how to run commands with it read-only."""
    store = tmp_path / "store"
    assert _vz(store, "create", "r", "--dimensions", "8", "--metric", "cosine").returncode == 0
    assert _vz(store, "create-metadata-index", "r", "--property-name", "c", "--type", "string").returncode == 0
    assert _vz(store, "insert", "r", "--file", "-", input=_records(300, 8)).returncode == 0
    assert _vz(store, "delete-vectors", "r", "--ids", "v1", "v2").returncode == 0
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [store, *store.rglob("*")]}
        for p in modes:
            p.chmod(p.stat().st_mode & ~0o222)
        yield store, []
        for p, m in modes.items():
            p.chmod(m)
        return
    prefix = _read_only_prefix(store)
    if prefix is None:
        pytest.skip("running as root without unshare/mount: no way to make a directory read-only here")
    yield store, prefix


READS = [("list", "--json"), ("info", "r", "--json"), ("get", "r", "--json"),
         ("query", "r", "--vector-id", "v7", "--top-k", "5", "--json"),
         ("query", "r", "--vector-id", "v7", "--top-k", "5", "--filter", '{"c": "c1"}', "--json"),
         ("get-vectors", "r", "--ids", "v3", "v4", "--json"), ("list-vectors", "r", "--count", "1000", "--json"),
         ("list-metadata-index", "r", "--json"), ("export", "r")]
WRITES = [("insert", "r", "--file", "-"), ("upsert", "r", "--file", "-"), ("delete-vectors", "r", "--ids", "v3"),
          ("create", "s", "--dimensions", "2", "--metric", "cosine"), ("delete", "r", "-y"),
          ("create-metadata-index", "r", "--property-name", "d", "--type", "number"),
          ("delete-metadata-index", "r", "--property-name", "c"), ("optimize", "r")]


def test_read_only_store_reads_work_and_writes_fail_cleanly(read_only) -> None:
    store, prefix = read_only
    before = _snapshot(store)
    files = _ann_files(store, "r")
    expected = {args: _vz(store, *args).stdout for args in READS}
    for args in READS:
        r = _vz(store, *args, prefix=prefix)
        assert (r.returncode, r.stderr) == (0, ""), args
        assert r.stdout == expected[args], args
    for args in WRITES:
        r = _vz(store, *args, input=_records(3, 8, prefix="new"), prefix=prefix)
        assert r.returncode == 1, (args, r.stderr)
        assert "read-only" in r.stderr and r.stderr.rstrip().endswith("[code: 1002]"), (args, r.stderr)
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    r = _vz(store, "doctor", "--json", prefix=prefix)
    assert r.returncode == 0 and json.loads(r.stdout)["problems"] == []
    assert _snapshot(store) == before and _ann_files(store, "r") == files
    _healthy(store)


def test_read_only_store_while_a_writer_holds_it_open(read_only) -> None:
    """With a live writer elsewhere (its -shm file exists) read-only readers see its commits."""
    store, prefix = read_only
    if not prefix:
        pytest.skip("needs the read-only bind mount (root)")
    holder = sqlite3.connect(store / "catalog.sqlite3")
    try:
        holder.execute("PRAGMA wal_autocheckpoint = 0")
        holder.execute("SELECT count(*) FROM indexes").fetchall()  # an open connection keeps -wal and -shm
        assert _vz(store, "upsert", "r", "--file", "-", input=_records(5, 8, prefix="live")).returncode == 0
        assert (store / "catalog.sqlite3-wal").stat().st_size > 0
        r = _vz(store, "get-vectors", "r", "--ids", "live0", "live4", "--json", prefix=prefix)
        assert r.returncode == 0 and [v["id"] for v in json.loads(r.stdout)] == ["live0", "live4"]
        # a copy of catalog + un-checkpointed -wal without -shm cannot be read safely read-only: refused
        copy = store.parent / "copy"
        (copy / "indexes").mkdir(parents=True)
        for name in ("catalog.sqlite3", "catalog.sqlite3-wal"):
            shutil.copyfile(store / name, copy / name)
    finally:
        holder.close()
    cprefix = _read_only_prefix(copy)
    assert cprefix is not None
    r = _vz(copy, "info", "r", "--json", prefix=cprefix)
    assert r.returncode == 1 and "write-ahead log" in r.stderr and r.stderr.rstrip().endswith("[code: 1002]")
    r = _vz(copy, "info", "r", "--json")  # with write access the log is folded in
    assert r.returncode == 0 and json.loads(r.stdout)["vectorCount"] == 303


# --- full disk ---------------------------------------------------------------------------------

def _fsize_limit(limit: int) -> Callable[[], None]:
    def pre() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail writes with EFBIG instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


DIMS, N = 8, 8000


@pytest.fixture(scope="module")
def sizes(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int]:
    """(catalog bytes, ANN file bytes) after inserting the test batch into an empty index, unlimited."""
    store = tmp_path_factory.mktemp("scratch") / "store"
    assert _vz(store, "create", "d", "--dimensions", str(DIMS), "--metric", "euclidean").returncode == 0
    assert _vz(store, "insert", "d", "--file", "-", input=_records(N, DIMS)).returncode == 0
    (ann,) = _ann_files(store, "d")
    return (store / "catalog.sqlite3").stat().st_size, (store / "indexes" / "d" / ann).stat().st_size


@pytest.fixture
def disk_store(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    assert _vz(store, "create", "d", "--dimensions", str(DIMS), "--metric", "euclidean").returncode == 0
    assert _vz(store, "insert", "d", "--file", "-", input=_records(10, DIMS, prefix="base")).returncode == 0
    return store


def test_full_disk_during_the_transaction_changes_nothing(disk_store: Path, sizes: tuple[int, int]) -> None:
    before = _snapshot(disk_store)
    cat, _ = sizes
    for limit in (cat // 4, cat // 2):
        r = _vz(disk_store, "insert", "d", "--file", "-", input=_records(N, DIMS), preexec=_fsize_limit(limit))
        assert r.returncode == 1, r.stderr
        assert r.stderr.startswith(f"✘ [ERROR] Cannot write to the store {disk_store}: ")
        assert "is the disk full?" in r.stderr and r.stderr.rstrip().endswith("[code: 1002]")
        assert _snapshot(disk_store) == before
    assert _healthy(disk_store)["problems"] == []
    # once there is room again, the same command works
    assert _vz(disk_store, "insert", "d", "--file", "-", input=_records(N, DIMS)).returncode == 0
    assert json.loads(_vz(disk_store, "info", "d", "--json").stdout)["vectorCount"] == N + 10


def test_full_disk_while_saving_the_ann_file(disk_store: Path, sizes: tuple[int, int]) -> None:
    cat, ann = sizes
    assert cat * 1.3 < ann, sizes  # room for the transaction, not for the ANN file
    limit = (int(cat * 1.3) + ann) // 2
    r = _vz(disk_store, "upsert", "d", "--file", "-", input=_records(N, DIMS), preexec=_fsize_limit(limit))
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("✘ [ERROR] The write was committed (mutation ")
    assert "is the disk full or read-only?" in r.stderr and r.stderr.rstrip().endswith("[code: 1002]")
    assert "Traceback" not in r.stderr
    # the records are in, no partial file is left, queries are exact over the delta
    assert json.loads(_vz(disk_store, "info", "d", "--json").stdout)["vectorCount"] == N + 10
    assert _ann_files(disk_store, "d") == []
    rep = _healthy(disk_store)
    assert [p["check"] for p in rep["problems"]] == ["ann.lagging"]
    q = ["0.1"] * DIMS
    a = json.loads(_vz(disk_store, "query", "d", "--vector", *q, "--json").stdout)
    b = json.loads(_vz(disk_store, "query", "d", "--vector", *q, "--json", "--exact").stdout)
    assert a == b and a["count"] == 5
    # optimize under the same limit fails cleanly too; with room, it builds the file
    r = _vz(disk_store, "optimize", "d", preexec=_fsize_limit(limit))
    assert r.returncode == 1 and "Cannot save an ANN file" in r.stderr and r.stderr.rstrip().endswith("[code: 1002]")
    assert _ann_files(disk_store, "d") == []
    assert _vz(disk_store, "optimize", "d").returncode == 0
    assert len(_ann_files(disk_store, "d")) == 1
    assert _healthy(disk_store)["problems"] == []


def test_full_disk_keeps_the_old_ann_file(disk_store: Path, sizes: tuple[int, int]) -> None:
    cat, ann = sizes
    assert _vz(disk_store, "upsert", "d", "--file", "-", input=_records(N, DIMS)).returncode == 0
    files = _ann_files(disk_store, "d")
    before = _snapshot(disk_store)
    r = _vz(disk_store, "optimize", "d", preexec=_fsize_limit(ann // 2))
    assert r.returncode == 1 and "Cannot save an ANN file" in r.stderr
    assert _ann_files(disk_store, "d") == files and _snapshot(disk_store) == before
    assert _healthy(disk_store)["problems"] == []
