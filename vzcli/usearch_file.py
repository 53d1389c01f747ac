"""Everything vz knows about the layout of a usearch file on disk, in one place.

vz reads two things from a published usearch file that usearch's public API does not give out:
which slot holds which key (the order of the vector matrix), and where the matrix starts. Both
are read once, when vz publishes the file (`vzcli.published`), and only from files written by a
usearch version in `KNOWN_VERSIONS`, whose layout was checked against this code. For a file
written by any other version `layout_of` says None: vz then uses no file vectors (queries score
from SQLite) and leaves the file's checks to usearch itself.

Everything else goes through usearch's public API: `Index.metadata` for the header, and
`Index.restore(view=True)` for searching.

Dense file, format v2 (usearch 2.x, `include/usearch/index_dense.hpp` and `index.hpp`), in order:

1. `u32 rows`, `u32 bytes_per_vector`;
2. the vector matrix, `rows` x `bytes_per_vector`, in slot order;
3. a 64-byte dense header (magic, version, kinds, counts, dimensions);
4. the graph header: `u64 size, connectivity, connectivity_max_base, max_level, entry_slot`;
5. `i16 level` per node;
6. the nodes, in slot order: `u64 key`, `i16 level`, then for level 0 `u32 count` and
   `connectivity_max_base` u32 neighbour slots, and for each higher level `u32 count` and
   `connectivity` u32 slots. A removed node keeps its slot with the free key (all ones).

`vzcli.walk` searches that graph itself in a one-shot process (usearch's `view` reads every
node's key when it opens a file, O(n)); it finds nodes through the offsets `parse` computes,
which the seal stores, and `Layout.neighbours_at`.
"""

from __future__ import annotations

import mmap
import signal
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from usearch.index import Index

# usearch versions whose files were checked against this module's layout (keys, slots and
# matrix compared with what was added; tests/test_usearch_file.py does it for the installed one)
KNOWN_VERSIONS = frozenset({"2.26.6"})


@dataclass(frozen=True, slots=True)
class Layout:
    """Offsets of a dense v2 file with u64 keys and u32 slots."""

    matrix_offset: int = 8  # after [u32 rows][u32 bytes_per_vector]
    dense_head: int = 64
    graph_head: int = 40
    node_head: int = 10  # u64 key + i16 level

    def graph_start(self, rows: int, bytes_per_vector: int) -> int:
        return self.matrix_offset + rows * bytes_per_vector + self.dense_head

    def node_bytes(self, levels: np.ndarray, m: int, m0: int) -> np.ndarray:
        return self.node_head + 4 + 4 * m0 + levels.astype(np.int64) * (4 + 4 * m)

    def neighbours_at(self, node: int, level: int, m: int, m0: int) -> int:
        """File offset of the `u32 count` that starts the level-`level` neighbour list of the
        node at offset `node`."""
        at = node + self.node_head
        return at if level == 0 else at + 4 + 4 * m0 + (level - 1) * (4 + 4 * m)


V2 = Layout()
_FREE_KEY = -1  # usearch's default free key (u64 all ones) read as int64


def index_class() -> type[Index]:
    """usearch's `Index` class, imported with Ctrl-C held off on its first import.

    A KeyboardInterrupt raised while usearch's extension initialises surfaces as ImportError
    ("initialization failed", pybind11), not as an interrupt: a write committed before it ended
    with "internal error", exit 1. So during the import (in the main thread, where Python runs
    signal handlers) SIGINT is only recorded, and the handler in place (the write's guard,
    Python's default) gets it once the import is done."""
    mod = sys.modules.get("usearch.index")
    if mod is not None:
        return mod.Index
    if threading.current_thread() is not threading.main_thread():
        import usearch.index

        return usearch.index.Index
    got: list[Any] = []
    prev = signal.signal(signal.SIGINT, lambda sig, frame: got.append(frame))
    try:
        import usearch.index
    finally:
        signal.signal(signal.SIGINT, prev)
    if got:
        if callable(prev):
            prev(signal.SIGINT, got[0])
        elif prev == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)
    return usearch.index.Index


def header(path: Path) -> dict[str, Any] | None:
    """The file's header through usearch's public API (None if usearch cannot read one)."""
    Index = index_class()
    try:
        meta = Index.metadata(str(path))
    except (ValueError, RuntimeError, OSError):
        return None
    return meta or None


def _kind(meta: dict[str, Any], field: str) -> str | None:
    return getattr(meta.get(field), "name", None)


def layout_of(meta: dict[str, Any]) -> Layout | None:
    """The layout of a file with header `meta`, or None when this module does not know it."""
    if str(meta.get("version")) not in KNOWN_VERSIONS:
        return None
    if not meta.get("matrix_included") or meta.get("matrix_uses_64_bit_dimensions") or \
            _kind(meta, "kind_key") != "U64" or _kind(meta, "kind_compressed_slot") != "U32":
        return None
    return V2


def matches(meta: dict[str, Any], dims: int, metric_kind: str, dtype: str) -> bool:
    """Whether header `meta` describes a file of `dims` dimensions, metric and dtype."""
    return meta.get("dimensions") == dims and _kind(meta, "kind_metric") == metric_kind and \
        _kind(meta, "kind_scalar") == dtype.upper()


_GATHER = 1 << 16  # nodes whose keys `parse` gathers at once


def release(mm: mmap.mmap) -> None:
    """Drop the pages of a read-only file mapping that this process has touched (they stay in
    the page cache): a pass over a whole file then holds at most one block of it in its RSS."""
    if hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


@dataclass(slots=True)
class Parsed:
    """What the layout says about one file: its exact size, and its matrix and slot keys."""

    rows: int
    bytes_per_vector: int
    matrix_offset: int
    size: int
    slot_keys: np.ndarray  # int64 key of each slot (-1: a removed node's free slot); empty if not asked
    graph: dict[str, int] | None = None  # m, m0, max_level, entry, removed (with keys)
    offsets: np.ndarray | None = None  # int64 file offset of each slot's node (with keys)


def parse(path: Path, layout: Layout, *, keys: bool = True) -> Parsed | None:
    """Read the slot -> key map of a file and check that its size is exactly what its header and
    levels say (a file cut inside the node section passes usearch's own checks, and mapping it
    can crash the reader). None for any inconsistency. Reads the graph section once: O(n), for
    publishing, never for a query."""
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        f.seek(0)
        head = f.read(8)
        if len(head) != 8:
            return None
        rows, bpv = struct.unpack("<II", head)
        g = layout.graph_start(rows, bpv)
        if g + layout.graph_head > size:
            return None
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            n, m, m0, max_level, entry = struct.unpack_from("<5Q", mm, g)
            if n != rows or not 0 < m <= m0 <= 4096 or max_level > 64 or (n and entry >= n):
                return None
            lv_at = g + layout.graph_head
            if lv_at + 2 * n > size:
                return None
            levels = np.frombuffer(mm, dtype="<i2", count=n, offset=lv_at).copy()
            if n and (levels.min() < 0 or levels.max() > max_level):
                return None
            sizes = layout.node_bytes(levels, m, m0)
            nodes_at = lv_at + 2 * n
            if nodes_at + int(sizes.sum()) != size:
                return None
            slot_keys = starts = np.empty(0, np.int64)
            if keys and n:
                starts = nodes_at + np.concatenate(([0], np.cumsum(sizes[:-1])))
                buf = np.frombuffer(mm, dtype=np.uint8)
                slot_keys = np.empty(n, dtype=np.int64)
                byte = np.arange(8)
                for lo in range(0, n, _GATHER):  # in blocks: a gather's index array is 64 bytes a node
                    at = starts[lo:lo + _GATHER]
                    slot_keys[lo:lo + len(at)] = buf[at[:, None] + byte].view("<i8").reshape(-1)
                    release(mm)
                del buf
    if not keys:
        return Parsed(rows, bpv, layout.matrix_offset, size, slot_keys)
    graph = {"m": m, "m0": m0, "max_level": max_level, "entry": entry,
             "removed": int((slot_keys == _FREE_KEY).sum())}
    return Parsed(rows, bpv, layout.matrix_offset, size, slot_keys, graph, starts)


def size_ok(path: Path, layout: Layout) -> bool:
    """Whether the file's size is exactly what its header and levels array say."""
    try:
        return parse(path, layout, keys=False) is not None
    except (OSError, ValueError):
        return False
