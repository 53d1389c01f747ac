"""Peak memory of a bulk `vz insert`, each process's and both processes' together.

Usage::

    .venv/bin/python bench/insert_memory.py --file DATA.ndjson --dims 128 [--runs 2] [--vz PATH]

Creates a fresh store in a temporary directory, runs `vz create` and then `vz insert` as a user
does (the console script, a process of its own), and measures the insert:

- *peak RSS*: the largest peak of any one process of the insert, as ``/usr/bin/time`` reports it
  (``wait4``'s ``ru_maxrss``: the `vz` process or its builder child, whichever peaked higher);
- *parent* and *child*: each one's own peak (``VmHWM`` read from ``/proc`` every 10 ms, the last
  reading before it exited);
- *together*: the largest sum of both processes' RSS at one instant (the same readings), what
  the machine had to give the insert at once, and each one's share of it.

Each is printed in MiB and as a ratio to the raw float32 size of the input (N x D x 4 bytes),
the issue's goal ("an insert peaks at no more than the raw float32 size of what it inserts").
`--vz` names another checkout's console script, to compare two versions in one run (`--runs`
alternates them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in KiB ({} once it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line[:5]] = int(line.split()[1])
    except (OSError, ValueError):
        return {}
    return out


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Sampler(threading.Thread):
    """Reads the RSS of `pid` and its descendants every `every` seconds until `stop`."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.hwm: dict[int, int] = {}
        self.together = 0
        self.split: tuple[int, int] = (0, 0)  # (parent, others) RSS when `together` peaked
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids, total, mine = [self.pid], 0, 0
            i = 0
            while i < len(pids):
                pids.extend(_children(pids[i]))
                i += 1
            for p in pids:
                s = _status(p)
                if s:
                    total += s["VmRSS"]
                    mine = mine or s["VmRSS"]
                    self.hwm[p] = max(self.hwm.get(p, 0), s["VmHWM"])
            if total > self.together:
                self.together, self.split = total, (mine, total - mine)
            self.done.wait(self.every)


def measure(vz: str, data: Path, dims: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="vz-insmem-"))
    try:
        store = tmp / "store"
        # run from the temporary directory: vz before `spawn` started its children with `python -m`
        # from the working directory, which put a checkout's own `vzcli/` ahead of the one measured
        subprocess.run([vz, "--store", str(store), "create", "big", "--dimensions", str(dims), "--metric", "cosine"],
                       check=True, stdout=subprocess.DEVNULL, cwd=tmp)
        t0 = time.perf_counter()
        proc = subprocess.Popen([vz, "--store", str(store), "insert", "big", "--file", str(data.resolve())],
                                stdout=subprocess.DEVNULL, cwd=tmp)
        s = Sampler(proc.pid)
        s.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        s.done.set()
        s.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"vz insert failed with exit {proc.returncode}")
        parent = s.hwm.get(proc.pid, 0)
        child = max((v for p, v in s.hwm.items() if p != proc.pid), default=0)
        return {"wall": wall, "peak": ru.ru_maxrss / 1024, "parent": parent / 1024, "child": child / 1024,
                "together": s.together / 1024, "at_peak_parent": s.split[0] / 1024,
                "at_peak_child": s.split[1] / 1024}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", required=True, type=Path, help="NDJSON records to insert")
    ap.add_argument("--dims", type=int, required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--vz", action="append", default=[],
                    help="a vz console script (repeatable; default: this checkout's .venv/bin/vz)")
    a = ap.parse_args(argv)
    vzs = a.vz or [str(ROOT / ".venv" / "bin" / "vz")]
    with open(a.file, "rb") as f:
        n = sum(1 for _ in f)
    raw = n * a.dims * 4 / 2**20
    print(f"{n:,} x {a.dims}: raw float32 {raw:,.0f} MiB")
    rows: dict[str, list[dict[str, float]]] = {v: [] for v in vzs}
    for r in range(a.runs):
        for v in vzs:
            m = measure(v, a.file, a.dims)
            rows[v].append(m)
            print(f"run {r + 1} {v}: {m['wall']:.1f} s; peak RSS {m['peak']:,.0f} MiB = {m['peak'] / raw:.3f}x "
                  f"(parent {m['parent']:,.0f}, child {m['child']:,.0f}); together {m['together']:,.0f} MiB "
                  f"= {m['together'] / raw:.3f}x (parent {m['at_peak_parent']:,.0f} + child "
                  f"{m['at_peak_child']:,.0f} then)", flush=True)
    for v, ms in rows.items():
        med = {k: statistics.median(m[k] for m in ms) for k in ms[0]}
        print(f"median of {len(ms)} {v}: peak RSS {med['peak']:,.0f} MiB = {med['peak'] / raw:.3f}x; parent "
              f"{med['parent']:,.0f}; child {med['child']:,.0f}; together {med['together']:,.0f} MiB = "
              f"{med['together'] / raw:.3f}x; wall {med['wall']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
