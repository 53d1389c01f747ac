"""Where a bulk `vz insert`'s time goes: the parent's phases, the builder child's CPU and memory.

Usage::

    .venv/bin/python bench/ingest_timeline.py --file DATA.ndjson --dims 768

Runs `vz create` and `vz insert` through the CLI's own entry point, in this process, on a fresh
store, and prints when each phase began and ended (wall seconds from the start of the insert, and
this process's CPU seconds then): the builder child's start, the commit frame (the parent has
parsed, stored and committed every record), the wait for the child to build and publish its
file, the seal (its check against SQLite inside), the install. Then the child's CPU and the peak
RSS of each process (`getrusage`: the child's is its own peak, not the sum). On two cores the
insert's wall time is about (child CPU + parent CPU) / 2 plus what runs on one core: the child's
start, its save, the seal and the install (docs/write-path.md, "Session 6").
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", required=True, help="NDJSON records to insert")
    ap.add_argument("--dims", type=int, required=True)
    ap.add_argument("--store", help="a store directory to create (default: a temporary one, removed after)")
    a = ap.parse_args(argv)

    from vzcli import ann, annbuild, published
    from vzcli.cli import app

    marks: list[tuple[float, float, str]] = []
    start = [0.0]

    def mark(what: str) -> None:
        marks.append((time.perf_counter() - start[0], time.process_time(), what))

    def timed(owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kw: Any) -> Any:
            mark(f"{label} begins")
            try:
                return real(*args, **kw)
            finally:
                mark(f"{label} ends")

        setattr(owner, name, wrapper)

    timed(annbuild.Builder, "__init__", "builder child start")
    timed(annbuild.Builder, "commit", "commit frame")
    timed(annbuild.Builder, "result", "wait for the child's file")
    timed(published, "seal", "seal")
    timed(published, "_verify", "seal: check against SQLite")
    timed(ann, "install", "install")

    root = Path(a.store) if a.store else Path(tempfile.mkdtemp(prefix="vz-timeline-"))
    try:
        store = str(root / "store") if not a.store else str(root)
        app(["--store", store, "create", "t", "--dimensions", str(a.dims), "--metric", "cosine", "--json"],
            standalone_mode=False)
        cpu0 = time.process_time()
        start[0] = time.perf_counter()
        app(["--store", store, "insert", "t", "--file", a.file, "--json"], standalone_mode=False)
        mark("done")
    finally:
        if not a.store:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print("| wall s | parent CPU s | phase |")
    print("|---:|---:|---|")
    for wall, cpu, what in marks:
        print(f"| {wall:.2f} | {cpu - cpu0:.2f} | {what} |")
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    me = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nchild CPU {child.ru_utime + child.ru_stime:.1f} s, peak RSS {child.ru_maxrss // 1024} MiB; "
          f"parent peak RSS {me.ru_maxrss // 1024} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
