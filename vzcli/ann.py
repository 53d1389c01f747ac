"""Derived usearch HNSW files: building, publishing, viewing, and keeping them in step with SQLite.

The file of an index holds every live record whose key is <= `ann_max_key` (keys are never
reused), plus nodes of records deleted since (`dead_keys`), which queries filter out. Records with
larger keys are the *delta*: queries search them exactly from SQLite. Writers merge the delta into
a new file once it passes `merge_threshold()`, and rebuild from SQLite when churn passes 25%.

Files are written under a new name and published with fsync + rename, never saved over a file a
reader may have mapped (that kills the reader with SIGBUS; usearch-notes §6). The catalog update
that points at a new file is a compare-and-swap, so concurrent mergers cannot publish stale state.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vzcli import envconf
from vzcli.errors import StoreError
from vzcli.store import Store, json_keys

USEARCH_METRIC = {"cosine": "cos", "euclidean": "l2sq", "dot-product": "ip"}
REBUILD_CHURN = 0.25
CHUNK = 8192


def merge_threshold() -> int:
    return envconf.merge_threshold()


def _new_index(row: dict[str, Any]) -> Any:
    from usearch.index import Index

    return Index(ndim=row["dimensions"], metric=USEARCH_METRIC[row["metric"]], dtype=row["dtype"],
                 connectivity=row["connectivity"], expansion_add=row["expansion_add"],
                 expansion_search=row["expansion_search"])


_VIEWS: dict[tuple[str, int, int, int], Any] = {}
_VIEWS_MAX = 8


def open_view(path: Path, row: dict[str, Any]) -> Any | None:
    """Memory-map a published file for searching; None if it is missing, truncated or unreadable.

    Published files are immutable (every publish writes a new name), so a long-running process
    (vz serve) keeps its mappings open across queries, keyed by inode, size and mtime.
    """
    from usearch.index import Index

    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    cached = _VIEWS.get(key)
    if cached is not None:
        if cached.expansion_search != row["expansion_search"]:  # the catalog's setting changed
            cached.expansion_search = row["expansion_search"]
        return cached
    if not file_ok(path, row):
        return None
    try:
        idx = Index.restore(str(path), view=True, enable_key_lookups=False,
                            expansion_search=row["expansion_search"])
    except (ValueError, RuntimeError, OSError):
        return None
    if idx is None or idx.ndim != row["dimensions"]:
        return None
    for old in [k for k in _VIEWS if k[0] == key[0]] + list(_VIEWS)[: max(0, len(_VIEWS) - _VIEWS_MAX + 1)]:
        _VIEWS.pop(old, None)
    _VIEWS[key] = idx
    return idx


class FileVectors:
    """The float32 vectors stored inside a published usearch file, found by key.

    A usearch file (format v2) starts with the vector matrix in slot order, and each graph node
    starts with its key; the slot -> key map is read once per file and process (a numpy gather
    over the nodes, ~1 ms per 100k). Queries then score candidates straight from the mapping
    instead of reading their BLOBs from SQLite: a key's vector never changes (upserts take a new
    key) and published files are immutable, so the bytes are the ones SQLite holds.
    """

    __slots__ = ("path", "keys", "slots", "mat", "resident", "ids", "nss", "known")

    def __init__(self, path: Path, keys: np.ndarray, slots: np.ndarray, mat: np.ndarray) -> None:
        self.path, self.keys, self.slots, self.mat = path, keys, slots, mat
        self.resident = False
        # id and namespace of each key (in `keys` order), loaded by `load_info`; `known` marks
        # the keys that had a record when loaded (a key's id and namespace never change)
        self.ids: np.ndarray | None = None
        self.nss: np.ndarray | None = None
        self.known: np.ndarray | None = None

    def load_info(self, conn: sqlite3.Connection, donor: FileVectors | None) -> None:
        """Load the id and namespace of every key, taking what `donor` (the index's previous
        file) already holds, so that after a merge only the merged records are read."""
        if self.known is not None:
            return
        n = len(self.keys)
        ids, nss, known = np.full(n, None, dtype=object), np.full(n, None, dtype=object), np.zeros(n, dtype=bool)
        if donor is not None and donor.known is not None:
            assert donor.ids is not None and donor.nss is not None
            pos, hit = donor.find(self.keys)
            hit &= donor.known[pos]
            ids[hit], nss[hit], known[hit] = donor.ids[pos[hit]], donor.nss[pos[hit]], True
        rows = conn.execute("SELECT key, id, namespace FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                            (json_keys(self.keys[~known].tolist()),)).fetchall()
        if rows:
            at = np.searchsorted(self.keys, np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
            ids[at], nss[at], known[at] = [r[1] for r in rows], [r[2] for r in rows], True
        self.ids, self.nss, self.known = ids, nss, known

    def info(self, keys: list[int]) -> dict[int, tuple[str, str | None]]:
        """key -> (id, namespace) for the `keys` this file knows (after `load_info`)."""
        assert self.known is not None and self.ids is not None and self.nss is not None
        pos, ok = self.find(np.asarray(keys, dtype=np.int64))
        ok &= self.known[pos]
        return {k: (self.ids[p], self.nss[p]) for k, p, good in zip(keys, pos.tolist(), ok.tolist(), strict=True) if good}

    def make_resident(self) -> None:
        """Fault the whole matrix into this process's mapping with one sequential pass.

        Worth it in a long-lived process: a first touch of a page costs several microseconds,
        so scoring 20 scattered rows of a cold mapping costs more than reading them from SQLite.
        """
        if not self.resident:
            flat = self.mat.reshape(-1)
            if len(flat):
                int(flat[:: 1024].sum())  # one float per 4 KiB page
            self.resident = True

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of each of `keys` in `self.keys`, mask of those the file holds)."""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        pos = np.searchsorted(self.keys, keys)
        pos[pos >= len(self.keys)] = 0
        return pos, self.keys[pos] == keys

    def split(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of `keys` present in the file, their vectors in order)."""
        pos, hit = self.find(keys)
        return hit, self.mat[self.slots[pos[hit]]]


_FILE_VECTORS: dict[str, tuple[Any, FileVectors | None]] = {}  # path -> (its view, its vectors)
_INFO_DONORS: dict[Path, FileVectors] = {}  # index directory -> its latest file with ids loaded


def file_info(fv: FileVectors, conn: sqlite3.Connection) -> FileVectors:
    """`fv` with ids and namespaces loaded (once per file and process; see `load_info`)."""
    if fv.known is None:
        donor = _INFO_DONORS.get(fv.path.parent)
        fv.load_info(conn, donor if donor is not fv else None)
        _INFO_DONORS[fv.path.parent] = fv
    return fv


def file_vectors(view: Any, path: Path, row: dict[str, Any], conn: sqlite3.Connection, *,
                 resident: bool = False) -> FileVectors | None:
    """The vectors of the file `view` maps (from `open_view`, which validated it), cached with
    that view; None when they cannot be used (a layout this code does not know, a dtype other
    than f32, or sampled vectors that differ from SQLite's): callers then read SQLite."""
    entry = _FILE_VECTORS.get(str(path))
    if entry is not None and entry[0] is view:
        fv = entry[1]
    else:
        try:
            fv = _read_file_vectors(path, row, conn)
        except (OSError, ValueError):
            fv = None
        for old in list(_FILE_VECTORS)[: max(0, len(_FILE_VECTORS) - _VIEWS_MAX + 1)]:
            _FILE_VECTORS.pop(old, None)
        _FILE_VECTORS[str(path)] = (view, fv)
    if resident and fv is not None:
        fv.make_resident()
    return fv


def _read_file_vectors(path: Path, row: dict[str, Any], conn: sqlite3.Connection) -> FileVectors | None:
    """Map the vector matrix of a file that `file_ok` accepted, and its slot -> key map."""
    import mmap
    import struct

    if row["dtype"] != "f32":
        return None
    dims = row["dimensions"]
    with open(path, "rb") as f:
        rows, bpv = struct.unpack("<II", f.read(8))
        if bpv != 4 * dims:
            return None
        g = 8 + rows * bpv + _DENSE_HEAD
        f.seek(g)
        graph = np.frombuffer(f.read(), dtype=np.uint8)  # one sequential read of the graph section
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)  # outlives the descriptor
    n, m, m0, _max_level, _entry = struct.unpack("<5Q", graph[:_GRAPH_HEAD].tobytes())
    levels = graph[_GRAPH_HEAD:_GRAPH_HEAD + 2 * n].view(np.int16).astype(np.int64)
    sizes = 10 + 4 + 4 * m0 + levels * (4 + 4 * m)
    if n != rows or len(graph) != _GRAPH_HEAD + 2 * n + int(sizes.sum()):
        return None
    starts = _GRAPH_HEAD + 2 * n + np.concatenate(([0], np.cumsum(sizes[:-1]))) if n else np.empty(0, np.int64)
    slot_keys = graph[starts[:, None] + np.arange(8)].view("<u8").reshape(-1).astype(np.int64)
    del graph
    order = np.argsort(slot_keys, kind="stable")
    # a plain ndarray over the mapping: np.memmap's Python-level indexing costs more than a gather
    mat = np.frombuffer(mapped, dtype=np.float32, count=rows * dims, offset=8).reshape(rows, dims)
    fv = FileVectors(path, slot_keys[order], order, mat)
    # Check a few live keys byte for byte against SQLite: a layout surprise must never change scores.
    sample = fv.keys[np.linspace(0, n - 1, num=min(8, n), dtype=np.int64)].tolist() if n else []
    got = dict(conn.execute("SELECT key, vec FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                            (json_keys(sample),)))
    if got:
        hit, vecs = fv.split(np.asarray(list(got), dtype=np.int64))
        if not hit.all() or any(v.tobytes() != got[k] for k, v in zip(got, vecs, strict=True)):
            return None
    return fv


_METRIC_KIND = {"cosine": "Cos", "euclidean": "L2sq", "dot-product": "IP"}
_GRAPH_HEAD = 40  # usearch format v2: size, connectivity, connectivity_max_base, max_level, entry_slot (u64)
_DENSE_HEAD = 64


def file_ok(path: Path, row: dict[str, Any]) -> bool:
    """Whether `path` is a whole usearch file for index `row`: header, metric, dtype and exact size.

    usearch rejects most truncated files itself, but a file cut inside the node section can still
    pass its checks, and mapping it can crash the reader. So the expected size is recomputed from
    the levels array (2 bytes a node: cheap next to `restore`, which walks every node anyway).
    """
    from usearch.index import Index

    try:
        meta = Index.metadata(str(path))
    except (ValueError, RuntimeError, OSError):
        return False
    if not meta or meta.get("dimensions") != row["dimensions"]:
        return False
    if getattr(meta.get("kind_metric"), "name", None) != _METRIC_KIND.get(row["metric"]) or \
            getattr(meta.get("kind_scalar"), "name", None) != row["dtype"].upper():
        return False
    if meta.get("matrix_uses_64_bit_dimensions") or not str(meta.get("version", "")).startswith("2.") or \
            getattr(meta.get("kind_key"), "name", None) != "U64" or \
            getattr(meta.get("kind_compressed_slot"), "name", None) != "U32":
        return True  # a layout this check does not know: trust usearch's own checks
    try:
        return _size_ok(path)
    except (OSError, ValueError):
        return False


def _size_ok(path: Path) -> bool:
    import struct

    size = path.stat().st_size
    with open(path, "rb") as f:
        rows, bpv = struct.unpack("<II", f.read(8))
        g = 8 + rows * bpv + _DENSE_HEAD
        f.seek(g)
        head = f.read(_GRAPH_HEAD)
        if len(head) != _GRAPH_HEAD:
            return False
        n, m, m0, max_level, entry = struct.unpack("<5Q", head)
        if n != rows or not 0 < m <= m0 <= 4096 or max_level > 64 or (n and entry >= n):
            return False
        levels = np.frombuffer(f.read(2 * n), dtype=np.int16)
    if len(levels) != n or (n and (levels.min() < 0 or levels.max() > max_level)):
        return False
    nodes = n * (10 + 4 + 4 * m0) + int(levels.astype(np.int64).sum()) * (4 + 4 * m)
    return size == g + _GRAPH_HEAD + 2 * n + nodes


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(idx: Any, d: Path, seq: int) -> str:
    """Save `idx` under a fresh name in `d` and return that name (not yet referenced by the catalog)."""
    d.mkdir(parents=True, exist_ok=True)
    name = f"ann-{seq:012d}-{os.getpid()}-{os.urandom(3).hex()}.usearch"
    tmp = d / f".tmp-{os.getpid()}-{name}"
    try:
        idx.save(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, d / name)
    except (OSError, RuntimeError) as e:
        # usearch says only "Failed to serialize into stream" when the disk is full or a file size
        # limit is hit; never leave the partial file taking up the space that ran out
        tmp.unlink(missing_ok=True)
        detail = getattr(e, "strerror", None) or str(e)
        raise StoreError(f"Cannot save an ANN file in {d}: {detail} (is the disk full or read-only?)") from None
    _fsync_dir(d)
    return name


def sweep(d: Path, keep: str | None) -> None:
    """Remove unreferenced ANN files and temp files of dead processes (readers keep their mapping)."""
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name == keep or p.name == "merge.lock":
            continue
        if p.name.startswith(".tmp-"):
            try:
                pid = int(p.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid > 0 and _alive(pid):
                continue
        elif not p.name.startswith("ann-"):
            continue
        try:
            p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def merge_lock(d: Path, *, wait: bool):
    """An advisory lock so that only one process merges an index at a time."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / "merge.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise StoreError(f"Cannot lock {d / 'merge.lock'}: {e.strerror or e} (is the store read-only?)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def delta_count(conn: sqlite3.Connection, index_id: int, max_key: int) -> int:
    # index vectors_key: the delta of this index only, whatever the other indexes hold
    return conn.execute("SELECT count(*) FROM vectors WHERE index_id = ? AND key > ?",
                        (index_id, max_key)).fetchone()[0]


def needs_work(conn: sqlite3.Connection, row: dict[str, Any], store: Store) -> str | None:
    """'rebuild', 'merge' or None for the index `row` (a dict of its catalog row)."""
    live = row["vector_count"]
    file = row["ann_file"]
    if file is not None and not file_ok(store.index_dir(row["name"]) / file, row):
        return "rebuild"  # missing, truncated or foreign: SQLite has everything to rebuild it
    churn = row["ann_dead"] + row["ann_tombstones"]
    if file is not None and churn > REBUILD_CHURN * max(live, 1) and churn >= 64:
        return "rebuild"
    if delta_count(conn, row["id"], row["ann_max_key"]) >= merge_threshold():
        return "merge" if file is not None else "rebuild"
    return None


def maintain(store: Store, name: str, *, force: str | None = None, threads: int = 0) -> str | None:
    """Merge or rebuild the ANN file of index `name` if due (or as `force` says). Returns what was done."""
    d = store.index_dir(name)
    with merge_lock(d, wait=force is not None) as got:
        if not got:
            return None  # another process is merging this index right now
        conn = store.conn()
        assert conn is not None
        with store.read() as rc:
            assert rc is not None
            row = _row(rc, name)
            if row is None:
                return None
            action = force or needs_work(rc, row, store)
            if action is None:
                return None
            if action == "merge" and (row["ann_file"] is None or not file_ok(d / row["ann_file"], row)):
                action = "rebuild"
            base_file = row["ann_file"]
            seq = row["last_mutation"] or 0
            dead = [k for (k,) in rc.execute("SELECT key FROM dead_keys WHERE index_id = ?", (row["id"],))]
            if action == "merge":
                from usearch.index import Index

                try:
                    idx = Index.restore(str(d / base_file), view=False, expansion_add=row["expansion_add"],
                                        expansion_search=row["expansion_search"])
                except (ValueError, RuntimeError, OSError):
                    idx = None
                if idx is None:
                    action = "rebuild"  # unreadable despite a sane header: start over from SQLite
            if action == "rebuild":
                idx = _new_index(row)
                start_key, nodes0, tomb = 0, 0, 0
            else:
                start_key, nodes0 = row["ann_max_key"], row["ann_nodes"]
                assert idx is not None
                removable = [k for k in dead if k <= start_key]
                if removable:
                    idx.remove(np.asarray(removable, dtype=np.uint64))
                tomb = row["ann_tombstones"] + len(removable)
            max_key = start_key
            added = 0
            cur = rc.execute("SELECT key, vec FROM vectors WHERE index_id = ? AND key > ? ORDER BY key",
                             (row["id"], start_key))
            while True:
                batch = cur.fetchmany(CHUNK)
                if not batch:
                    break
                keys = np.fromiter((k for k, _ in batch), dtype=np.uint64, count=len(batch))
                vecs = np.frombuffer(b"".join(v for _, v in batch), dtype=np.float32).reshape(len(batch), -1)
                idx.add(keys, vecs, threads=threads)
                max_key = int(keys[-1])
                added += len(batch)
        nodes = nodes0 + added
        new_file = publish(idx, d, seq) if nodes else None
        return action if install(store, name, row, base_file, new_file, dead, max_key, nodes, tomb, seq) else None


def install(store: Store, name: str, row: dict[str, Any], base_file: str | None, new_file: str | None,
            dead: list[int], max_key: int, nodes: int, tomb: int, seq: int) -> bool:
    """Point the catalog at the published `new_file` (built on `base_file`, holding keys up to
    `max_key`; `dead` were the dead keys when the build began) unless another process changed
    the index's file meanwhile (compare-and-swap); then sweep the old files. False if it lost."""
    d = store.index_dir(name)
    with store.write() as wc:
        cur_row = _row(wc, name)
        if cur_row is None or cur_row["id"] != row["id"] or cur_row["ann_file"] != base_file:
            if new_file:
                (d / new_file).unlink(missing_ok=True)
            return False
        if dead:
            wc.execute("DELETE FROM dead_keys WHERE index_id = ? AND key IN (SELECT value FROM json_each(?))",
                       (row["id"], json_keys(dead)))
        still_dead = wc.execute("SELECT count(*) FROM dead_keys WHERE index_id = ? AND key <= ?",
                                (row["id"], max_key)).fetchone()[0]
        wc.execute("""UPDATE indexes SET ann_file = ?, ann_max_key = ?, ann_nodes = ?, ann_dead = ?,
                      ann_tombstones = ?, ann_seq = ? WHERE id = ?""",
                   (new_file, max_key, nodes, still_dead, tomb, seq, row["id"]))
    sweep(d, new_file)
    return True


def _row(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    r = cur.fetchone()
    if r is None:
        return None
    return dict(zip([c[0] for c in cur.description], r, strict=True))
