"""Shared helpers for the vz benchmarks: cached data, vz stores, timing, machine facts.

Everything large lives under ``bench/out/`` (git-ignored; ``VZ_BENCH_OUT`` moves it): generated arrays (``.npy``), NDJSON
files and the stores the benchmarks build. Arrays are generated once per ``(n, dim, seed)`` by
``bench/datagen.py`` and reused, so re-runs only pay for what they measure.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = Path(os.environ.get("VZ_BENCH_OUT") or BENCH / "out")  # tests point it at a temporary directory
VENV = ROOT / ".venv"
PY = str(VENV / "bin" / "python")
VZ = str(VENV / "bin" / "vz")

sys.path.insert(0, str(ROOT))
from bench import datagen  # noqa: E402


def sizes(text: str) -> list[tuple[int, int]]:
    """An argparse type: "100000x384,100000x768" -> [(100000, 384), (100000, 768)]."""
    import argparse

    out = []
    for part in text.split(","):
        n, _, d = part.strip().lower().partition("x")
        if not (n.isdigit() and d.isdigit() and int(n) > 0 and int(d) > 0):
            raise argparse.ArgumentTypeError(f"{part!r} is not a size like 100000x384 (rows x dimensions)")
        out.append((int(n), int(d)))
    return out


def data(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """``datagen.clustered(n, dim, seed)``, cached as ``bench/out/data-NxD-sS.npy`` (returned memory-mapped)."""
    OUT.mkdir(parents=True, exist_ok=True)
    p = OUT / f"data-{n}x{dim}-s{seed}.npy"
    if not p.exists():  # written block by block: 5M rows never sit in memory twice
        tmp = p.with_name(p.stem + ".tmp.npy")
        datagen.clustered_to(tmp, n, dim, seed=seed)
        tmp.replace(p)
    return np.load(p, mmap_mode="r")


def queries(nq: int, dim: int, seed: int = 1, data_seed: int = 0) -> np.ndarray:
    """Fresh query points from the same mixture as ``data(..., seed=data_seed)``."""
    return datagen.queries(nq, dim, seed=seed, data_seed=data_seed)


def ndjson(n: int, dim: int, *, metadata: bool = False, seed: int = 0) -> Path:
    """The NDJSON file of ``data(n, dim, seed)`` (ids ``str(i)``), written once."""
    p = OUT / f"data-{n}x{dim}-s{seed}{'-meta' if metadata else ''}.ndjson"
    if not p.exists():
        tmp = p.with_suffix(".tmp")
        datagen.write_ndjson(tmp, data(n, dim, seed),  # streams blocks of the memory-mapped array
                             metadata_fn=datagen.bench_metadata if metadata else None)
        tmp.replace(p)
    return p


def vz(store: Path | str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run the ``vz`` console script as a whole process against ``store``."""
    e = dict(os.environ)
    e.pop("VZ_STORE", None)
    if env:
        e.update(env)
    r = subprocess.run([VZ, "--store", str(store), *args], input=stdin, capture_output=True, env=e)
    if check and r.returncode != 0:
        raise RuntimeError(f"vz {' '.join(args)} failed ({r.returncode}): {r.stderr.decode()[-2000:]}")
    return r


def build_store(store: Path, name: str, n: int, dim: int, *, metric: str = "cosine",
                metadata_props: Sequence[tuple[str, str]] = (), seed: int = 0) -> float:
    """Create index ``name`` in a fresh ``store`` and ``vz insert`` ``data(n, dim)``; returns seconds.

    Metadata indexes (``(property, type)`` pairs) are created before inserting, as Vectorize
    requires for them to cover the records.
    """
    import shutil

    shutil.rmtree(store, ignore_errors=True)
    vz(store, "create", name, "--dimensions", str(dim), "--metric", metric)
    for prop, typ in metadata_props:
        vz(store, "create-metadata-index", name, "--property-name", prop, "--type", typ)
    f = ndjson(n, dim, metadata=bool(metadata_props), seed=seed)
    t = time.perf_counter()
    vz(store, "insert", name, "--file", str(f))
    return time.perf_counter() - t


def wall(cmd: Sequence[str], **kw: Any) -> float:
    """Wall time of one whole child process (its output is discarded; failure raises)."""
    return wall_cpu(cmd, **kw)[0]


def wall_cpu(cmd: Sequence[str], **kw: Any) -> tuple[float, float]:
    """(wall time, user+sys CPU time) of one whole child process; failure raises.

    CPU time is far less sensitive than wall time to other jobs on a busy machine, so the
    benchmarks report both and state which one a goal was judged on.
    """
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    err = proc.stderr.read() if proc.stderr else b""
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()[-1000:]}")
    return dt, ru.ru_utime + ru.ru_stime


def interleaved(cmds: dict[str, Callable[[], float]], runs: int, warmup: int = 2) -> dict[str, list[float]]:
    """Run each timing function ``runs`` times, round-robin, so machine load hits all alike."""
    for _ in range(warmup):
        for f in cmds.values():
            f()
    out: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for k, f in cmds.items():
            out[k].append(f())
    return out


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def pct(xs: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs), p))


def recall_at_k(found: Sequence[Sequence[int]], truth: np.ndarray, k: int = 10) -> float:
    """Mean |found ∩ truth| / |truth| over queries (truth rows may be shorter than k)."""
    tot = 0.0
    for f, t in zip(found, truth, strict=True):
        t = list(t[:k])
        if not t:
            tot += 1.0
            continue
        tot += len(set(f[:k]) & set(t)) / len(t)
    return tot / len(found)


def git_head() -> str:
    r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "vzcli"],
                           capture_output=True, text=True).stdout.strip()
    return r.stdout.strip() + (" (+ uncommitted vzcli changes)" if dirty else "")


def machine() -> str:
    """`nproc`, `free -g`, Python, numpy and usearch versions, load average and the vz commit."""
    import usearch

    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()
    mem = next((ln.split()[1] for ln in free if ln.startswith("Mem:")), "?")
    la = os.getloadavg()
    return (f"nproc {os.cpu_count()}, RAM {mem} GB (free -g), Python {platform.python_version()}, "
            f"numpy {np.__version__}, usearch {usearch.__version__}, load average at start "
            f"{la[0]:.1f}/{la[1]:.1f}/{la[2]:.1f}, vz commit {git_head()}")


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"
