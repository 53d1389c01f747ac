"""HNSW search of a sealed usearch file by vz itself, for processes that answer one query.

usearch's `view` reads the key of every node when it opens a file (`reindex_keys_`, to find
removed slots), which costs O(n) time and maps the whole graph section: at 1M nodes it was most
of a `vz query` process's extra time and resident memory. A one-shot process needs none of
that: it visits a few hundred nodes. `Walker` searches the mapped file with the same algorithm
as usearch's `index_gt::search` (greedy descent through the upper levels, then a best-first
search of level 0 with `ef = max(expansion_search, count)`), reading only the nodes and vectors
it visits. It finds a node through the offsets its seal stores (`published`), so opening it
costs O(1). It reads with `pread`, not through a mapping: each page fault on a mapped file also
maps the cached pages around it (the kernel's fault-around, which `MADV_RANDOM` does not turn
off), and those count in the process's RSS: 60 MiB per query at 1M nodes.

It only proposes candidates: their scores are recomputed exactly from SQLite (`search.rescore`),
so a file altered in place after its seal can lower recall, never change a score. A neighbour
slot or count out of range raises `Unusable`; the caller then answers exactly from SQLite.

Long-lived processes (`vz serve`) keep using usearch's `view`: its open cost is paid once, and
its C++ search is several times faster per query than this one.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from vzcli import usearch_file


class Unusable(Exception):
    """The file's graph does not hold what its seal says (out-of-range slot or count)."""


@dataclass(slots=True)
class Matches:
    """What `Walker.search` found: slots' keys and usearch-style distances, best first."""

    keys: np.ndarray
    distances: np.ndarray


class Walker:
    """Searches one sealed file's HNSW graph with `pread` (see the module's docstring)."""

    def __init__(self, fd: int, matrix_offset: int, dims: int, offsets: np.ndarray, graph: dict[str, Any],
                 metric: str, expansion_search: int, scalar: np.dtype = np.dtype(np.float32)) -> None:
        """`fd`: the file, open for reading (the walker owns it); `offsets`: each slot's node;
        `scalar`: the matrix's type (float32 or float16, searched in float32)."""
        self.fd, self.matrix_offset, self.offsets = fd, matrix_offset, offsets
        self.scalar = scalar
        self.row_bytes = scalar.itemsize * dims
        self.m, self.m0 = int(graph["m"]), int(graph["m0"])
        self.max_level, self.entry = int(graph["max_level"]), int(graph["entry"])
        self.removed = int(graph.get("removed", 0))
        self.metric = metric
        self.expansion_search = expansion_search
        self.ndim = dims
        self._layout = usearch_file.V2

    def __del__(self) -> None:
        try:
            os.close(self.fd)
        except (OSError, AttributeError):
            pass

    def _rows(self, slots: np.ndarray) -> np.ndarray:
        pread, fd, at, size = os.pread, self.fd, self.matrix_offset, self.row_bytes
        data = b"".join([pread(fd, size, at + size * s) for s in slots.tolist()])
        if len(data) != size * len(slots):
            raise Unusable("a vector row lies past the end of the file")
        return np.frombuffer(data, dtype=self.scalar).reshape(len(slots), self.ndim).astype(np.float32, copy=False)

    def _dist(self, q: np.ndarray, qq: np.float32, slots: np.ndarray) -> np.ndarray:
        """usearch's distances (lower is better) of the vectors in `slots` to `q`, in float32."""
        v = self._rows(slots)
        if self.metric == "euclidean":
            diff = v - q
            return np.einsum("ij,ij->i", diff, diff)
        dots = v @ q
        if self.metric == "cosine":
            vv = np.einsum("ij,ij->i", v, v)
            with np.errstate(divide="ignore", invalid="ignore"):
                sim = dots / np.sqrt(vv * qq)
            return np.where(vv > 0, 1 - sim, 1).astype(np.float32) if qq > 0 else np.ones(len(slots), np.float32)
        return 1 - dots

    def _neighbours(self, slot: int, level: int) -> np.ndarray:
        at = self._layout.neighbours_at(int(self.offsets[slot]), level, self.m, self.m0)
        cap = self.m0 if level == 0 else self.m
        raw = os.pread(self.fd, 4 * (cap + 1), at)
        if len(raw) != 4 * (cap + 1):
            raise Unusable(f"node {slot} lies past the end of the file")
        words = np.frombuffer(raw, dtype="<u4")
        count = int(words[0])
        if count > cap:
            raise Unusable(f"node {slot} lists {count} neighbours at level {level}")
        return words[1:count + 1]

    def _keys(self, slots: np.ndarray) -> np.ndarray:
        pread, fd, offsets = os.pread, self.fd, self.offsets
        data = b"".join([pread(fd, 8, int(offsets[s])) for s in slots.tolist()])
        if len(data) != 8 * len(slots):
            raise Unusable("a node lies past the end of the file")
        return np.frombuffer(data, dtype="<i8")

    def search(self, q: np.ndarray, count: int, threads: int = 1) -> Matches:
        """The `count` nearest live slots' keys and distances (usearch's `Index.search`)."""
        try:
            return self._search(np.ascontiguousarray(q, dtype=np.float32).reshape(-1), count)
        except (IndexError, ValueError, OverflowError, OSError) as e:  # a slot or offset outside the file
            raise Unusable(str(e)) from None

    def _search(self, q: np.ndarray, count: int) -> Matches:
        rows = len(self.offsets)
        if rows == 0 or count <= 0:
            return Matches(np.empty(0, np.int64), np.empty(0, np.float32))
        qq = np.float32(q @ q)
        dist = self._dist
        # greedy descent through the upper levels (usearch's search_for_one_)
        best = self.entry
        best_d = float(dist(q, qq, np.array([best]))[0])
        for level in range(self.max_level, 0, -1):
            changed = True
            while changed:
                changed = False
                nb = self._neighbours(best, level)
                if not len(nb):
                    break
                d = dist(q, qq, nb)
                i = int(np.argmin(d))
                if float(d[i]) < best_d:  # the first of equal minima, as usearch's strict `<`
                    best_d, best, changed = float(d[i]), int(nb[i]), True
        # best-first search of level 0 (usearch's search_to_find_in_base_)
        ef = max(self.expansion_search, count)
        visited = np.zeros(rows, dtype=bool)
        visited[best] = True
        radius = best_d
        nxt: list[tuple[float, int]] = [(best_d, best)]
        top: list[tuple[float, int]] = []  # max-heap of (-distance, slot)
        if self._live(np.array([best]))[0]:
            top.append((-best_d, best))
        push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
        while nxt:
            d0, slot = nxt[0]
            if d0 > radius and len(top) == ef:
                break
            pop(nxt)
            nb = self._neighbours(slot, 0)
            new = nb[~visited[nb]]
            if not len(new):
                continue
            visited[new] = True
            ds = dist(q, qq, new).tolist()
            live = self._live(new).tolist()
            for dd, s, ok in zip(ds, new.tolist(), live, strict=True):
                if len(top) < ef or dd < radius:
                    push(nxt, (dd, s))
                    if ok:
                        if len(top) < ef:
                            push(top, (-dd, s))
                        else:
                            replace(top, (-dd, s))
                        radius = -top[0][0]
        found = sorted((-nd, s) for nd, s in top)[:count]
        slots = np.fromiter((s for _, s in found), dtype=np.int64, count=len(found))
        return Matches(self._keys(slots) if len(slots) else np.empty(0, np.int64),
                       np.fromiter((d for d, _ in found), dtype=np.float32, count=len(found)))

    def _live(self, slots: np.ndarray) -> np.ndarray:
        """Which of `slots` hold a key (not a removed node's free slot)."""
        if not self.removed:
            return np.ones(len(slots), dtype=bool)
        return self._keys(slots) != -1
