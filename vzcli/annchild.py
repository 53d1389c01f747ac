"""The bulk insert's ANN builder child: `python -m vzcli.annchild` (its parent: `annbuild.Builder`).

It reads the frames `Builder` writes (protocol: `vzcli.annbuild`), adds them to a usearch graph,
and publishes the file once the parent has committed.

Memory. At 128-d this process's peak is the insert's: usearch's graph (~475 bytes per vector at
1M x 128 in float16) plus the interpreter. Importing usearch the usual way (`usearch.index`)
brings numpy, urllib, ssl and usearch's Python wrapper: 44 MiB of a 497 MiB peak at 1M x 128,
which put the insert 2% above the raw float32 size of its input. This module imports no numpy:
it loads only usearch's compiled extension (`load_compiled`) and hands it the frames through the
buffer protocol (`Graph`), ~15 MiB in all. A usearch whose binding this module was not checked
against (`BINDING_VERSIONS`), or whose extension it cannot find or load, is driven through
`usearch.index.Index` and numpy instead: the same graph at the old cost.

The file it saves is byte for byte the one `usearch.index.Index` saves from the same adds
(tests/test_bulk_build.py).
"""

from __future__ import annotations

import collections
import importlib.machinery
import importlib.util
import json
import signal
import struct
import sys
import threading
from pathlib import Path
from typing import Any, BinaryIO

from vzcli import annbase

BUFFER = 1 << 30  # bytes of vectors the child holds ahead of its build; past this the parent waits

# usearch versions whose compiled `Index` (constructor keywords, `add_many`, `expansion_add`,
# `save_index_to_path`) this module was checked against; tests/test_bulk_build.py checks the
# installed one and the fallback for any other
BINDING_VERSIONS = frozenset({"2.26.6"})


def _extension(package: str, name: str) -> str | None:
    """The path of compiled module `name` inside installed `package`, found without importing
    `package` (its `__init__` is what costs the memory)."""
    spec = importlib.util.find_spec(package)
    for d in (spec.submodule_search_locations or []) if spec else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            p = Path(d) / (name + suffix)
            if p.is_file():
                return str(p)
    return None


def load_compiled() -> Any | None:
    """usearch's compiled extension, loaded as `usearch/__init__.py` loads it but without the rest
    of that file; None when it cannot be loaded so or its version is not in BINDING_VERSIONS
    (`Graph` then uses usearch's Python wrapper). The module is registered as `usearch.compiled`,
    so a later `import usearch` (that fallback) uses it, not a second copy."""
    mod = sys.modules.get("usearch.compiled")
    if mod is None:
        try:
            mod = _load_extension()
        except (ImportError, OSError, ValueError):
            return None
        if mod is None:
            return None
    version = f"{mod.VERSION_MAJOR}.{mod.VERSION_MINOR}.{mod.VERSION_PATCH}"
    return mod if version in BINDING_VERSIONS else None


def _load_extension() -> Any | None:
    path = _extension("usearch", "compiled")
    if path is None:
        return None
    # as usearch's __init__ does: NumKong's extension (when installed) first, with RTLD_GLOBAL,
    # since usearch's resolves its symbols at load time
    nk = _extension("numkong", "_numkong")
    if nk is not None:
        import ctypes

        ctypes.CDLL(nk, mode=ctypes.RTLD_GLOBAL)
    spec = importlib.util.spec_from_file_location("usearch.compiled", path)
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["usearch.compiled"] = mod
    return mod


class Graph:
    """An empty usearch index for a build, as `ann._new_index` makes it (no key -> slot table),
    fed with frames as they arrive: `keys` native u64, `vecs` float16 or float32 rows."""

    def __init__(self, row: dict[str, Any], compiled: Any | None) -> None:
        self.dims = row["dimensions"]
        self.f16 = row["dtype"] == "f16"
        self._c = compiled
        if compiled is None:  # a usearch this module does not know: its Python wrapper and numpy
            from vzcli import ann

            self.idx = ann._new_index(row)
            return
        self.kind = compiled.ScalarKind.F16 if self.f16 else compiled.ScalarKind.F32
        self.idx = compiled.Index(
            ndim=self.dims, dtype=self.kind, connectivity=row["connectivity"], expansion_add=row["expansion_add"],
            expansion_search=row["expansion_search"], multi=False, enable_key_lookups=False,
            metric_kind=getattr(compiled.MetricKind, annbase.METRIC_KIND[row["metric"]]), metric_pointer=0,
            metric_signature=compiled.MetricSignature.ArrayArraySize)

    def __len__(self) -> int:
        return len(self.idx)

    def set_expansion_add(self, ef: int) -> None:
        self.idx.expansion_add = ef

    def add(self, keys: bytes, vecs: bytes, threads: int) -> None:
        n = len(keys) // 8
        if self._c is None:
            import numpy as np

            rows = np.frombuffer(vecs, dtype=np.float16 if self.f16 else np.float32).reshape(n, self.dims)
            self.idx.add(np.frombuffer(keys, dtype=np.uint64), rows, threads=threads)
            return
        # memoryview cannot cast to float16 ("e"): its bits go as u16 with the scalar kind said
        m = memoryview(vecs).cast("H" if self.f16 else "f", (n, self.dims))
        self.idx.add_many(memoryview(keys).cast("Q"), m, copy=True, threads=threads, progress=None, dtype=self.kind)

    def save(self, path: str) -> None:
        if self._c is None:
            self.idx.save(path)
        else:
            self.idx.save_index_to_path(path, None)


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


class _Inbox:
    """Frames read ahead of the build (at most BUFFER bytes of them), and whether the parent is
    done parsing or held back by a full buffer: then the build may take every core."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: collections.deque[tuple[str, Any, int]] = collections.deque()
        self.bytes = 0
        self.ended = self.full = False

    def put(self, kind: str, arg: Any, size: int = 0) -> None:
        with self.cond:
            if kind == "abort":  # the write was rolled back or the parent died: build nothing more
                self.items.clear()
                self.bytes = 0
            while self.bytes and self.bytes + size > BUFFER:
                self.full = True
                self.cond.notify_all()
                self.cond.wait()
            self.full = False
            self.items.append((kind, arg, size))
            self.bytes += size
            self.ended = self.ended or kind != "add"
            self.cond.notify_all()

    def get(self) -> tuple[str, Any, bool]:
        with self.cond:
            while not self.items:
                self.cond.wait()
            kind, arg, size = self.items.popleft()
            self.bytes -= size
            self.cond.notify_all()
            return kind, arg, self.ended or self.full


def _reader(f: BinaryIO, vector_bytes: int, box: _Inbox) -> None:
    """Read frames into `box` (in a thread: blocked in read() it holds no GIL)."""
    try:
        while True:
            n, arg = struct.unpack("=qq", _read(f, 16))
            if n < 0:
                box.put("commit", arg)
                return
            keys = _read(f, 8 * n)
            vecs = _read(f, vector_bytes * n)
            box.put("add", (keys, vecs, arg), len(vecs))
    except (EOFError, OSError, ValueError):
        box.put("abort", None)


def main(f: BinaryIO | None = None, out: BinaryIO | None = None) -> int:
    """The child: frames from `f` (stdin), its one JSON line to `out` (stdout)."""
    if f is None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    f = f or sys.stdin.buffer
    out = out or sys.stdout.buffer
    head = json.loads(f.readline())
    row, d = head["row"], head["dir"]
    idx = Graph(row, load_compiled())
    box = _Inbox()
    itemsize = 2 if row["dtype"] == "f16" else 4
    threading.Thread(target=_reader, args=(f, itemsize * row["dimensions"], box), daemon=True).start()
    while True:
        kind, arg, all_cores = box.get()
        if kind == "add":
            keys, vecs, expect = arg
            size = len(idx) + len(keys) // 8
            # the size the graph is expected to reach (from how much of the input file has been
            # read), as a rebuild uses its final size; the size reached so far for a piped input
            idx.set_expansion_add(annbase.ef_construction_for(max(size, expect), row["expansion_add"]))
            # a small graph is built with one thread, as in ann.maintain (a racy build can strand
            # nodes); so is every block while the parent is still parsing (annbuild's docstring)
            idx.add(keys, vecs, threads=0 if all_cores and size >= annbase.SMALL_GRAPH else 1)
        elif kind == "abort":
            return 1
        else:
            try:
                name = annbase.publish(idx, Path(d), arg)
            except Exception as e:  # noqa: BLE001 (reported to the parent, which falls back)
                out.write(json.dumps({"error": str(getattr(e, "message", e))}).encode())
                return 1
            out.write(json.dumps({"file": name}).encode())
            return 0


def _run() -> int:
    """`main` as the child process runs it: its stderr is the parent's terminal, so a failure (the
    parent interrupted before its first line, a broken pipe) is its exit status, not a traceback
    there; the parent reports it and falls back to the merge (VZ_DEBUG=1 shows the traceback)."""
    try:
        return main()
    except Exception:  # noqa: BLE001
        from vzcli import envconf

        if envconf.debug():
            raise
        return 1


if __name__ == "__main__":
    raise SystemExit(_run())
