"""Derived usearch HNSW files: building, publishing, viewing, and keeping them in step with SQLite.

The file of an index holds every live record whose key is <= `ann_max_key` (keys are never
reused), plus nodes of records deleted since (`dead_keys`), which queries filter out. Records with
larger keys are the *delta*: queries search them exactly from SQLite. Writers merge the delta into
a new file once it passes `merge_threshold()`, and rebuild from SQLite when churn passes 25%.

Files are written under a new name and published with fsync + rename, never saved over a file a
reader may have mapped (that kills the reader with SIGBUS; usearch-notes §6). The catalog update
that points at a new file is a compare-and-swap, so concurrent mergers cannot publish stale state.
Before it, the new file is verified against SQLite and sealed (`published`), so that queries open
it in O(1) and never score from a file that changed since.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vzcli import annbase, envconf, published, usearch_file, walk
from vzcli.annbase import USEARCH_METRIC, ef_construction_for, ef_search_for, publish
from vzcli.errors import StoreError
from vzcli.published import FileVectors
from vzcli.store import Store, json_keys

REBUILD_CHURN = 0.25
CHUNK = 8192


def merge_threshold() -> int:
    return envconf.merge_threshold()


def _new_index(row: dict[str, Any]) -> Any:
    """An empty usearch index for a fresh build (a rebuild, a bulk insert's builder). It keeps no
    key -> slot hash table: a build only adds new keys, and the file it saves is the same; the
    merges that remove keys restore the file with the table."""
    Index = usearch_file.index_class()
    return Index(ndim=row["dimensions"], metric=USEARCH_METRIC[row["metric"]], dtype=row["dtype"],
                 connectivity=row["connectivity"], expansion_add=row["expansion_add"],
                 expansion_search=row["expansion_search"], enable_key_lookups=False)


@dataclass(slots=True)
class Opened:
    """A published ANN file as a query uses it: usearch's view, and its vectors if sealed.

    `lock` serialises searches of the view: usearch's Python `search` runs on the search context
    of thread slot 0 whichever thread calls it, so two threads searching one `Index` at once would
    share its scratch buffers (visited set, candidate heaps). `vz serve` gets parallel searches
    from its worker processes instead.
    """

    view: Any
    fv: FileVectors | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_memory: bool = False  # `view` searches the file's resident copy (`in_memory`), not its mapping


def in_memory(opened: Opened, row: dict[str, Any]) -> None:
    """Once `opened.fv` holds the verified whole-file copy (`make_resident`), let usearch search
    that copy instead of the file's mapping: one copy of the vectors in memory instead of two, and
    the rows a search touches are the ones rescoring reads next (12-20% less CPU per query at
    100k x 768 and 1M x 128, docs/ann.md). Keeps the mapped view if usearch will not take it."""
    fv = opened.fv
    if opened.in_memory or fv is None or fv.buffer is None:
        return
    Index = usearch_file.index_class()
    with opened.lock:
        if opened.in_memory:
            return
        try:
            idx = Index.restore(fv.buffer.data, view=True, enable_key_lookups=False,
                                expansion_search=row["expansion_search"])
        except (ValueError, RuntimeError, OSError):
            idx = None
        if idx is not None and idx.ndim == row["dimensions"] and len(idx) == len(opened.view):
            opened.view = idx
        opened.in_memory = True


_PATHS: dict[tuple[Path, str], Path] = {}


def file_path(index_dir: Path, name: str) -> Path:
    """`index_dir / name`, memoised (pathlib's join costs more than the rest of opening a cached file)."""
    p = _PATHS.get((index_dir, name))
    if p is None:
        if len(_PATHS) > 256:
            _PATHS.clear()
        p = _PATHS[(index_dir, name)] = index_dir / name
    return p


_OPEN: dict[tuple[str, int, int, int, bool], Opened] = {}
_OPEN_MAX = 8
_LOCK = threading.Lock()  # guards the caches: `vz serve` answers queries on several threads


# A one-shot query walks the graph itself (`walk`) only where that costs less than usearch's
# O(n) open plus its search. Measured (docs/ann.md): usearch opens a file in ~45 ns per node (4 ms
# at 100k, 40-70 ms at 1M); a walk costs ~3 ms plus 15-35 us per unit of ef, usearch's search a
# tenth of that. So walk when ef * WALK_NODES_PER_EF + WALK_BASE_NODES <= nodes: up to ef ~1,100
# at 1M, ~6,000 at 5M. A process that has not imported usearch yet would also pay its import,
# 50-70 ms, as much as opening ~1.1M more nodes (WALK_IMPORT_NODES): it walks any graph up to ef ~1,400.
WALK_NODES_PER_EF = 800
WALK_BASE_NODES = 70_000
WALK_IMPORT_NODES = 1_100_000


def walk_pays(nodes: int, ef: int, *, usearch_loaded: bool | None = None) -> bool:
    """Whether a one-shot search at `ef` of a graph of `nodes` nodes should walk it (`walk`)."""
    if usearch_loaded is None:
        usearch_loaded = "usearch.index" in sys.modules
    return ef * WALK_NODES_PER_EF + WALK_BASE_NODES <= nodes + (0 if usearch_loaded else WALK_IMPORT_NODES)


def open_file(path: Path, row: dict[str, Any], *, walk: bool = False) -> Opened | None:
    """Map a published file for searching, in O(1) when it is sealed; None when it must not be used
    (missing, altered since its seal, truncated or unreadable): callers then search SQLite exactly.

    The graph is searched through usearch's `view`, whose open costs O(n) once, or with `walk`
    (a one-shot process, see `walk_pays`) by `walk.Walker`, which reads only what it visits.
    Published files are immutable (every publish writes a new name), so a long-running process
    (vz serve) keeps its mappings open across queries, keyed by inode, size and mtime.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None  # a FIFO or device in the file's place: opening it could block the query
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, walk)
    cached = _cached(key, row)
    if cached is not None:
        return cached
    s = published.read_seal(path, st, row)
    if s is None:
        return None  # the file is not the one vz verified: never touch it
    if isinstance(s, str) and not file_ok(path, row):
        return None
    opened = _walker(path, s, row) if walk else None
    if opened is None:
        opened = _usearch_view(path, s, row)
    if opened is None:
        return None
    with _LOCK:
        # the path's earlier files, and the index's older files: a resident copy of a superseded
        # file must not stay in memory until seven other opens push it out
        stale = [k for k in _OPEN if (k[0] == key[0] and k[1:4] != key[1:4]) or _superseded(k[0], key[0])]
        for old in stale + list(_OPEN)[: max(0, len(_OPEN) - _OPEN_MAX + 1)]:
            _OPEN.pop(old, None)
        _OPEN[key] = opened
    return opened


def _superseded(old: str, new: str) -> bool:
    """Whether file path `old` is an earlier file of the index whose file `new` is (same directory,
    a smaller mutation number in its `ann-<seq>-` name)."""
    o, n = os.path.split(old), os.path.split(new)
    return o[0] == n[0] and o[1][:16] < n[1][:16] and o[1].startswith("ann-") and n[1].startswith("ann-")


def _cached(key: tuple[str, int, int, int, bool], row: dict[str, Any]) -> Opened | None:
    with _LOCK:
        cached = _OPEN.get(key)
    if cached is not None and cached.view.expansion_search != row["expansion_search"]:  # the catalog's setting changed
        cached.view.expansion_search = row["expansion_search"]
    return cached


def held_file(path: Path, row: dict[str, Any]) -> Opened | None:
    """The file as this process already opened it for a resident reader (`open_file`'s cache), or
    None: one stat, never a read, a check or a wait (`Reads.quick_query`, on vz serve's event loop)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _cached((str(path), st.st_ino, st.st_size, st.st_mtime_ns, False), row) if stat.S_ISREG(st.st_mode) else None


def _walker(path: Path, s: published.Seal | str, row: dict[str, Any]) -> Opened | None:
    """A sealed file with its graph's offsets, searched by vz (`walk`); None if its seal has none."""
    if not isinstance(s, published.Seal) or s.offsets is None or not isinstance(s.head.get("graph"), dict) \
            or not hasattr(os, "pread"):  # Windows has no pread: usearch's view then
        return None
    try:
        fv = FileVectors.from_seal(path, s, row["dimensions"])
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO swapped in must not block
    except (OSError, ValueError, KeyError):
        return None
    if fv is None:
        os.close(fd)
        return None
    w = walk.Walker(fd, int(s.head["matrix_offset"]), row["dimensions"], s.offsets, s.head["graph"],
                    row["metric"], row["expansion_search"], fv.mat.dtype)
    return Opened(w, fv)


def _usearch_view(path: Path, s: published.Seal | str, row: dict[str, Any]) -> Opened | None:
    Index = usearch_file.index_class()
    try:
        idx = Index.restore(str(path), view=True, enable_key_lookups=False,
                            expansion_search=row["expansion_search"])
    except (ValueError, RuntimeError, OSError):
        return None
    if idx is None or idx.ndim != row["dimensions"]:
        return None
    fv = None
    if isinstance(s, published.Seal):
        try:
            fv = FileVectors.from_seal(path, s, row["dimensions"])
        except (OSError, ValueError, KeyError):
            return None
    return Opened(idx, fv)


_INFO_DONORS: dict[Path, FileVectors] = {}  # index directory -> its latest file with ids loaded


def info_donor(fv: FileVectors) -> FileVectors | None:
    """The latest file of `fv`'s index whose ids this process loaded (resident), if not `fv`."""
    with _LOCK:
        donor = _INFO_DONORS.get(fv.path.parent)
    return donor if donor is not fv else None


def file_info(fv: FileVectors, conn: sqlite3.Connection) -> FileVectors:
    """`fv` with ids and namespaces loaded (once per file and process; see `load_info`)."""
    if fv.known is None:
        fv.load_info(conn, info_donor(fv))
        with _LOCK:
            _INFO_DONORS[fv.path.parent] = fv
    return fv


def _read_file_vectors(path: Path, row: dict[str, Any], conn: sqlite3.Connection | None = None) -> FileVectors | None:
    """The vectors of any file `usearch_file` can parse, sealed or not (for doctor, which then
    compares every one with SQLite); None for a layout or a scalar type it does not know."""
    import mmap

    meta = usearch_file.header(path)
    layout = usearch_file.layout_of(meta) if meta else None
    scalar = published.SCALARS.get(row["dtype"])
    if layout is None or scalar is None:
        return None
    parsed = usearch_file.parse(path, layout)
    dims = row["dimensions"]
    if parsed is None or parsed.bytes_per_vector != scalar.itemsize * dims:
        return None
    live = np.flatnonzero(parsed.slot_keys != -1)
    order = np.argsort(parsed.slot_keys[live], kind="stable")
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    mat = np.frombuffer(mapped, dtype=scalar, count=parsed.rows * dims,
                        offset=parsed.matrix_offset).reshape(parsed.rows, dims)
    return FileVectors(path, parsed.slot_keys[live][order], live[order].astype(np.int64), mat)


def file_ok(path: Path, row: dict[str, Any]) -> bool:
    """Whether `path` is a whole usearch file for index `row`: header, metric, dtype and, for a
    layout `usearch_file` knows, exact size (usearch rejects most truncated files itself, but a
    file cut inside the node section can pass its checks, and mapping it can crash the reader)."""
    meta = usearch_file.header(path)
    if meta is None or not usearch_file.matches(meta, row["dimensions"], annbase.METRIC_KIND[row["metric"]],
                                                 row["dtype"]):
        return False
    layout = usearch_file.layout_of(meta)
    return layout is None or usearch_file.size_ok(path, layout)


def file_state(path: Path, row: dict[str, Any]) -> str:
    """'sealed' (the seal vouches for the file), 'unsealed' (no seal) or 'altered'."""
    try:
        st = path.stat()
    except OSError:
        return "altered"
    s = published.read_seal(path, st, row)
    return "altered" if s is None else "unsealed" if isinstance(s, str) else "sealed"


def sweep(d: Path, keep: str | None) -> None:
    """Remove unreferenced ANN files and temp files of dead processes (readers keep their mapping)."""
    if not d.is_dir():
        return
    for p in d.iterdir():
        if p.name == keep or p.name == "merge.lock" or (keep and p.name == published.SEAL_PREFIX + keep):
            continue
        if p.name.startswith(".tmp-"):
            try:
                pid = int(p.name.split("-")[1])
            except (IndexError, ValueError):
                pid = -1
            if pid > 0 and _alive(pid):
                continue
        elif not p.name.startswith(("ann-", published.SEAL_PREFIX)):
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
    """'rebuild', 'merge', 'seal' or None for the index `row` (a dict of its catalog row)."""
    live = row["vector_count"]
    file = row["ann_file"]
    if file is not None and file_state(store.index_dir(row["name"]) / file, row) != "sealed":
        return "seal"  # unsealed (an older vz) or changed since its seal: verify it, or rebuild
    churn = row["ann_dead"] + row["ann_tombstones"]
    if file is not None and churn > REBUILD_CHURN * max(live, 1) and churn >= 64:
        return "rebuild"
    if delta_count(conn, row["id"], row["ann_max_key"]) >= merge_threshold():
        return "merge" if file is not None else "rebuild"
    return None


def _seal_new(store: Store, path: Path, row: dict[str, Any], max_key: int, seq: int | None) -> None:
    """Verify a file this process just wrote and seal it; a file that fails is removed."""
    try:
        with store.read() as rc:
            assert rc is not None
            published.seal(path, row, rc, max_key=max_key, seq=seq)
    except (published.SealError, OSError) as e:
        path.unlink(missing_ok=True)
        raise StoreError(f"The ANN file written for {row['name']!r} does not match SQLite ({e}); "
                         "it was removed") from None


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
            resealed = action == "seal" and _reseal(rc, d / row["ann_file"], row)
        if resealed:
            with store.write() as wc:  # an older vz's file: give it the ef_search of its size too
                wc.execute("UPDATE indexes SET expansion_search = ? WHERE id = ? AND ann_file = ?",
                           (ef_search_for(row["ann_nodes"]), row["id"], row["ann_file"]))
            return "seal"
        if action == "seal":
            action = "rebuild"  # the file does not hold what SQLite says: start over
        with store.read() as rc:
            assert rc is not None
            row = _row(rc, name)
            if row is None:
                return None
            if action == "merge" and (row["ann_file"] is None or file_state(d / row["ann_file"], row) != "sealed"):
                action = "rebuild"
            base_file = row["ann_file"]
            seq = row["last_mutation"] or 0
            dead = [k for (k,) in rc.execute("SELECT key FROM dead_keys WHERE index_id = ?", (row["id"],))]
            if action == "merge":
                Index = usearch_file.index_class()
                try:
                    idx = Index.restore(str(d / base_file), view=False, expansion_add=row["expansion_add"],
                                        expansion_search=row["expansion_search"])
                except (ValueError, RuntimeError, OSError):
                    idx = None
                if idx is None:
                    action = "rebuild"  # unreadable despite a sane header: start over from SQLite
            # the file's scalar type: a merge keeps its file's, unless the delta does not fit it
            dtype = row["dtype"] if action == "merge" else envconf.ann_dtype()
            if not _all_fit(rc, row["id"], row["ann_max_key"] if action == "merge" else 0, dtype):
                action, dtype = "rebuild", "f32"
            if action == "rebuild":
                idx = _new_index({**row, "dtype": dtype})
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
            # (a rebuild knows its size; counting by key range would walk other indexes' rows)
            size = row["vector_count"] if action == "rebuild" else nodes0 + delta_count(rc, row["id"], start_key)
            if not threads and size < annbase.SMALL_GRAPH:
                threads = 1  # a racy multi-threaded build of a small graph can leave nodes unreachable
            cur = rc.execute("SELECT key, vec FROM vectors WHERE index_id = ? AND key > ? ORDER BY key",
                             (row["id"], start_key))
            while True:
                batch = cur.fetchmany(CHUNK)
                if not batch:
                    break
                keys = np.fromiter((k for k, _ in batch), dtype=np.uint64, count=len(batch))
                vecs = np.frombuffer(b"".join(v for _, v in batch), dtype=np.float32).reshape(len(batch), -1)
                # at the size the graph will reach: every node of a 5M rebuild at 5M's (a graph
                # grown node by node from 1M to 5M recalled 0.978 at ef 512, one built at 128
                # throughout 0.996). (usearch's stub calls the property read-only; it has a setter)
                idx.expansion_add = ef_construction_for(max(size, nodes0 + added + len(batch)),  # type: ignore[misc]
                                                        row["expansion_add"])
                idx.add(keys, vecs, threads=threads)
                max_key = int(keys[-1])
                added += len(batch)
        nodes = nodes0 + added
        new_file = publish(idx, d, seq) if nodes else None
        del idx  # the writer's copy of the graph: the file is what matters now
        return action if install(store, name, {**row, "dtype": dtype}, base_file, new_file, dead, max_key, nodes,
                                 tomb, seq) else None


def _all_fit(conn: sqlite3.Connection, index_id: int, after_key: int, dtype: str) -> bool:
    """Whether a file of `dtype` can hold every record of the index with a key > `after_key`
    (`published.fits`; one pass over SQLite, ~1% of a build's time)."""
    if dtype == "f32":
        return True
    cur = conn.execute("SELECT vec FROM vectors WHERE index_id = ? AND key > ?", (index_id, after_key))
    while batch := cur.fetchmany(CHUNK):
        blob = b"".join(v for (v,) in batch)
        if not published.fits(np.frombuffer(blob, dtype=np.float32).reshape(len(batch), -1), dtype):
            return False
    return True


def install(store: Store, name: str, row: dict[str, Any], base_file: str | None, new_file: str | None,
            dead: list[int], max_key: int, nodes: int, tomb: int, seq: int) -> bool:
    """Point the catalog at the published `new_file` (built on `base_file`, holding keys up to
    `max_key`, its vectors stored as `row["dtype"]`; `dead` were the dead keys when the build
    began) unless another process changed the index's file meanwhile (compare-and-swap); then
    sweep the old files. False if it lost."""
    d = store.index_dir(name)
    if new_file:
        _seal_new(store, d / new_file, row, max_key, seq)
    with store.write() as wc:
        cur_row = _row(wc, name)
        if cur_row is None or cur_row["id"] != row["id"] or cur_row["ann_file"] != base_file:
            if new_file:
                (d / new_file).unlink(missing_ok=True)
                published.seal_path(d / new_file).unlink(missing_ok=True)
            return False
        if dead:
            wc.execute("DELETE FROM dead_keys WHERE index_id = ? AND key IN (SELECT value FROM json_each(?))",
                       (row["id"], json_keys(dead)))
        still_dead = wc.execute("SELECT count(*) FROM dead_keys WHERE index_id = ? AND key <= ?",
                                (row["id"], max_key)).fetchone()[0]
        wc.execute("""UPDATE indexes SET ann_file = ?, ann_max_key = ?, ann_nodes = ?, ann_dead = ?,
                      ann_tombstones = ?, ann_seq = ?, expansion_search = ?, dtype = ? WHERE id = ?""",
                   (new_file, max_key, nodes, still_dead, tomb, seq, ef_search_for(nodes), row["dtype"], row["id"]))
    sweep(d, new_file)
    return True


def _reseal(conn: sqlite3.Connection, path: Path, row: dict[str, Any]) -> bool:
    """Verify an existing file against SQLite and seal it; False if it cannot be."""
    if not file_ok(path, row):
        return False
    try:
        published.seal(path, row, conn, max_key=row["ann_max_key"], seq=row["ann_seq"])
    except (published.SealError, OSError):
        return False
    return True


def _row(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM indexes WHERE name = ?", (name,))
    r = cur.fetchone()
    if r is None:
        return None
    return dict(zip([c[0] for c in cur.description], r, strict=True))
