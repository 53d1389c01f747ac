"""The seal of a published ANN file: what vz proved and computed about it when it published it.

When a writer publishes an ANN file it verifies, once, that every live record the file should
hold is in it with exactly SQLite's vector, and writes a seal beside it (`seal-<file>`) before the
catalog points at the file:

- the file's identity (size, inode, mtime_ns), its name and the mutation it was built at;
- the slot of each key, as two int64 arrays sorted by key, which a query maps (no parsing);
- the graph's shape (connectivity, entry point, top level) and the file offset of each slot's
  node, an int64 array, so that a one-shot query can walk the graph itself (`vzcli.walk`);
- where the vector matrix starts, and a SHA-256 of the matrix and of the key arrays.

A query then opens a file in O(1): it reads the seal's header, compares the identity, and maps
the arrays; looking a key up is a binary search over the mapping (O(log n) pages). A file whose
identity differs from its seal is never used (queries are answered exactly from SQLite until
the next write re-verifies it). A file without a seal (written by an older vz, or a seal lost in
a crash) is searched through usearch, with every score taken from SQLite.

A long-lived process (`resident`) copies the matrix into its own memory once, hashing the copy,
and uses it only if the hash is the sealed one: an ANN file altered in place, even with its
mtime put back, is then never scored from.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from vzcli import envconf, usearch_file
from vzcli.annbase import METRIC_KIND
from vzcli.store import json_keys

SEAL_PREFIX = "seal-"
SCALARS: dict[str, np.dtype[Any]] = {"f32": np.dtype(np.float32), "f16": np.dtype(np.float16)}  # an ANN file's
DENSE_SPAN = 4  # see FileVectors._index_keys
F16_EPS = 2.0 ** -10  # an f16 file's vector lies within F16_EPS * |v| of SQLite's float32 v

# what a resident process holds per record beside its vector: id and namespace (Python objects),
# norm, key lookup tables (~290 B measured at 1M x 128 with 7-character ids)
INFO_BYTES = 256


class _Budget:
    """The bytes this process's resident copies hold (`FileVectors.make_resident`), against
    VZ_RESIDENT_MB: past it a file is searched without one, and its queries read the records
    they return from SQLite, as a one-shot process does (docs/server.md).

    Counted per index directory: an index's newer file takes over its older file's share (the
    older copy goes once the caches and snapshots that hold it move on), so a merge never leaves
    an index without a copy because its previous one still counts."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.used = 0
        self.held: dict[Path, tuple[object, int]] = {}  # index directory -> (holder, bytes)

    def claim(self, where: Path, holder: object, n: int) -> bool:
        with self.lock:
            _, before = self.held.get(where, (None, 0))
            if self.used - before + n > envconf.resident_mb() * 2 ** 20:
                return False
            self.used += n - before
            self.held[where] = (holder, n)
            return True

    def release(self, where: Path, holder: object) -> None:
        """`holder`'s share, unless a newer file of the index took it over."""
        with self.lock:
            got = self.held.get(where)
            if got is not None and got[0] is holder:
                del self.held[where]
                self.used -= got[1]


RESIDENT = _Budget()

_MAGIC = b"VZSEAL1\n"
_HEAD = 4096  # the JSON header, padded; the key and slot arrays follow


def fits(vecs: np.ndarray, dtype: str) -> bool:
    """Whether an ANN file of `dtype` can hold every row of the float32 matrix `vecs` within the
    bound queries rely on (`close_rows`: float16 rounds each component to 2^-11 of itself, so rows
    of ordinary values pass by a factor of two; values past 65,504, or rows so small that float16
    flushes them, do not)."""
    return dtype != "f16" or not len(vecs) or as_f16(vecs) is not None


def as_f16(vecs: np.ndarray) -> np.ndarray | None:
    """The float16 copy of the float32 matrix `vecs` if it holds every row within `close_rows`'
    bound (what an f16 file stores), else None."""
    with np.errstate(over="ignore"):
        h = vecs.astype(np.float16)
    return h if _surely_close(vecs) or close_rows(h, vecs).all() else None


def _surely_close(vecs: np.ndarray) -> bool:
    """A sufficient condition for `close_rows` to pass every row of float16's rounding of `vecs`,
    at a fifth of its cost (no float16 to float32 conversion). With every |x| < 65504, float16
    rounds each component to within 2^-11 |x|, or 2^-25 in its subnormal range, so a row's
    squared error is at most 2^-22 |v|^2 + dims 2^-50. Rows with |v|^2 >= dims 2^-29 then have
    it below 0.75 (F16_EPS |v|)^2: a margin float32's rounding of either sum cannot close.
    False (NaN, infinities, large or tiny values) leaves the decision to `close_rows`."""
    if not vecs.size:
        return True
    n2 = np.vecdot(vecs, vecs)
    return bool(np.abs(vecs).max() < 65504.0) and bool(n2.min() >= vecs.shape[-1] * 2.0**-29)


def close_rows(h: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """Mask of the rows of the float16 matrix `h` that are finite and within F16_EPS of the
    float32 row of `vecs` they stand for (the bound `search` relies on when it shortlists from
    an f16 file). Rows whose squares float32 flushes to zero fit only if both are all zeros."""
    with np.errstate(over="ignore", invalid="ignore"):
        err = h.astype(np.float32)
        err -= vecs  # exact while h rounds vecs: within a factor of two
        e2, n2 = np.vecdot(err, err), np.vecdot(vecs, vecs)
        # an infinite value in h makes e2 infinite, a non-finite one in vecs makes n2 so: neither passes
        ok = np.isfinite(n2) & (e2 <= F16_EPS * F16_EPS * n2)
    tiny = n2 < 1e-20
    if tiny.any():
        ok[tiny] = ~((vecs[tiny] != 0).any(axis=1) | (h[tiny] != 0).any(axis=1))
    return ok


class SealError(Exception):
    """A file that cannot be sealed: it does not hold exactly what SQLite says it should."""


def seal_path(path: Path) -> Path:
    return path.with_name(SEAL_PREFIX + path.name)


def identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_ino, st.st_mtime_ns]


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def seal(path: Path, row: dict[str, Any], conn: sqlite3.Connection, *, max_key: int, seq: int | None) -> None:
    """Verify the ANN file `path` of index `row` against SQLite and write its seal (O(n), once).

    Every live record with a key <= `max_key` must be in the file with SQLite's vector, byte for
    byte (keys of records deleted since are ignored: queries never score them). Raises SealError
    otherwise. A file written by a usearch version `usearch_file` does not know is sealed with
    its identity only: queries search it through usearch and score from SQLite.
    """
    st = path.stat()
    meta = usearch_file.header(path)
    if meta is None or not usearch_file.matches(meta, row["dimensions"], METRIC_KIND[row["metric"]], row["dtype"]):
        raise SealError("its header does not match the index's configuration")
    layout = usearch_file.layout_of(meta)
    keys = slots = offsets = np.empty(0, np.int64)
    head: dict[str, Any] = {"file": path.name, "identity": identity(st), "seq": seq, "max_key": max_key,
                            "dims": row["dimensions"], "usearch": str(meta.get("version")), "vectors": False}
    if layout is not None:
        parsed = usearch_file.parse(path, layout)
        if parsed is None:
            raise SealError("its size is not what its header and levels say (truncated?)")
        scalar = SCALARS.get(row["dtype"])
        if scalar is not None and parsed.bytes_per_vector == scalar.itemsize * row["dimensions"]:
            live = np.flatnonzero(parsed.slot_keys != -1)
            order = np.argsort(parsed.slot_keys[live], kind="stable")
            keys, slots = parsed.slot_keys[live][order], live[order].astype(np.int64)
            if len(keys) > 1 and bool((keys[1:] == keys[:-1]).any()):
                raise SealError("a key is in it twice")
            # no `with` on the mapping: closing it while `mat` points into it would turn a
            # SealError into a BufferError; it is unmapped with the last array over it
            with open(path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
            mat = np.frombuffer(mm, dtype=scalar, count=parsed.rows * row["dimensions"],
                                offset=parsed.matrix_offset).reshape(parsed.rows, row["dimensions"])
            # the digest runs beside the check (hashlib and SQLite's reads release the GIL): the
            # seal is the serial tail of a bulk insert (docs/write-path.md)
            digest: list[str] = []

            def hash_matrix() -> None:
                try:
                    digest.append(_digest_mapped(mm, parsed.matrix_offset, mat.nbytes))
                except (OSError, ValueError, BufferError):
                    pass  # no digest: a SealError below, never a traceback from the thread

            worker = threading.Thread(target=hash_matrix)
            worker.start()
            try:
                _verify(conn, row, max_key, keys, slots, mat, lambda: usearch_file.release(mm))
            finally:
                worker.join()
            if not digest:
                raise SealError("its matrix could not be read")
            matrix = digest[0]
            del mat, mm
            assert parsed.offsets is not None
            offsets = parsed.offsets
            head.update(vectors=True, dtype=row["dtype"], rows=parsed.rows, n=len(keys), matrix_offset=parsed.matrix_offset,
                        matrix_sha256=matrix, keys_sha256=_digest(keys.tobytes(), slots.tobytes()),
                        graph=parsed.graph)
    if path.stat().st_mtime_ns != st.st_mtime_ns:
        raise SealError("it changed while being verified")
    _write(seal_path(path), head, keys, slots, offsets)


_VERIFY_BYTES = 8 << 20  # of SQLite's vectors checked at a time: the seal's memory is a few of these


def _digest_mapped(mm: mmap.mmap, start: int, length: int) -> str:
    h = hashlib.sha256()
    view = memoryview(mm)
    try:
        for at in range(start, start + length, 4 * _VERIFY_BYTES):
            h.update(view[at:min(at + 4 * _VERIFY_BYTES, start + length)])
            usearch_file.release(mm)
    finally:
        view.release()
    return h.hexdigest()


def _verify(conn: sqlite3.Connection, row: dict[str, Any], max_key: int, keys: np.ndarray, slots: np.ndarray,
            mat: np.ndarray, release: Callable[[], None] = lambda: None) -> None:
    """Every live record up to `max_key` is in `mat` (rows `slots` of `keys`) with SQLite's
    vector; `release` is called after each batch (the caller drops the mapped pages read)."""
    dims = row["dimensions"]
    cur = conn.execute("SELECT key, vec FROM vectors WHERE index_id = ? AND key <= ? ORDER BY key",
                       (row["id"], max_key))
    while batch := cur.fetchmany(max(256, _VERIFY_BYTES // (4 * dims))):
        want = np.fromiter((k for k, _ in batch), dtype=np.int64, count=len(batch))
        pos = np.searchsorted(keys, want)
        pos[pos >= len(keys)] = 0
        if not len(keys) or not bool((keys[pos] == want).all()):
            raise SealError("a live record is missing from it")
        blob = b"".join(v for _, v in batch)
        if len(blob) != 4 * dims * len(batch):
            raise SealError("SQLite holds a vector of the wrong size")  # doctor reports which
        if mat.dtype == np.float32:
            stored = np.frombuffer(blob, dtype=np.uint32).reshape(len(batch), dims)
            if not np.array_equal(mat[slots[pos]].view(np.uint32), stored):
                raise SealError("a vector in it differs from SQLite's")
        elif not close_rows(mat[slots[pos]], np.frombuffer(blob, dtype=np.float32).reshape(len(batch), dims)).all():
            raise SealError("a vector in it is not SQLite's within float16's precision")
        release()


def _write(target: Path, head: dict[str, Any], keys: np.ndarray, slots: np.ndarray, offsets: np.ndarray) -> None:
    raw = orjson.dumps(head)
    if len(raw) > _HEAD - len(_MAGIC) - 1:
        raise SealError("seal header too long")
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with open(tmp, "wb") as f:
            f.write((_MAGIC + raw + b"\n").ljust(_HEAD, b" "))
            f.write(keys.astype("<i8").tobytes())
            f.write(slots.astype("<i8").tobytes())
            f.write(offsets.astype("<i8").tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(slots=True)
class Seal:
    head: dict[str, Any]
    keys: np.ndarray  # sorted int64 keys of the file, mapped from the seal
    slots: np.ndarray  # slot of each key
    offsets: np.ndarray | None = None  # file offset of each slot's node (seals with a "graph")


MISSING = "missing"


def _open_regular(path: Path) -> Any:
    """`path` open for reading if it is a regular file, else None. Opened without blocking, so that
    a FIFO put in the place of a store's file never hangs a query (raises OSError as `open` does)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def read_seal(path: Path, st: os.stat_result, row: dict[str, Any]) -> Seal | str | None:
    """The seal of `path` if it vouches for the file as it is now (identity, name, mutation);
    MISSING when there is none; None when there is one that does not match (never trust the file)."""
    try:
        f = _open_regular(seal_path(path))
    except FileNotFoundError:
        return MISSING
    except OSError:
        return None
    if f is None:
        return None  # a FIFO, device or directory in the seal's place: not a seal vz wrote
    with f:
        start = f.read(_HEAD)
        if len(start) != _HEAD or not start.startswith(_MAGIC):
            return None
        try:
            head = orjson.loads(start[len(_MAGIC):].rstrip(b" \n"))
        except orjson.JSONDecodeError:
            return None
        if not isinstance(head, dict) or head.get("file") != path.name or head.get("identity") != identity(st) \
                or head.get("seq") != row["ann_seq"] or head.get("dims") != row["dimensions"]:
            return None
        n = int(head.get("n", 0)) if head.get("vectors") else 0
        if n == 0:
            empty = np.empty(0, np.int64)
            return Seal(head, empty, empty)
        # seals written before vz stored the graph's offsets have no "graph" (and no offsets)
        rows = int(head.get("rows", 0)) if isinstance(head.get("graph"), dict) else 0
        if os.fstat(f.fileno()).st_size != _HEAD + 16 * n + 8 * rows:
            return None
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)  # outlives the descriptor
    offsets = np.frombuffer(mm, dtype="<i8", count=rows, offset=_HEAD + 16 * n) if rows else None
    return Seal(head, np.frombuffer(mm, dtype="<i8", count=n, offset=_HEAD),
                np.frombuffer(mm, dtype="<i8", count=n, offset=_HEAD + 8 * n), offsets)


class FileVectors:
    """The vectors stored inside a published usearch file, found by key.

    Queries score candidates straight from an f32 file instead of reading their BLOBs from SQLite:
    a key's vector never changes (upserts take a new key), and the seal proved the file held
    SQLite's bytes when it was published. An f16 file's vectors are within F16_EPS of SQLite's:
    queries only shortlist from them, and score from SQLite, or from the float32 copy a resident
    process reads from SQLite once (`make_resident`; `exact` says which `split` gives).
    """

    def __init__(self, path: Path, keys: np.ndarray, slots: np.ndarray, mat: np.ndarray,
                 head: dict[str, Any] | None = None) -> None:
        self.path, self.keys, self.slots, self.mat = path, keys, slots, mat
        # a resident copy of an f16 file's records as SQLite holds them (float32, in `keys` order),
        # and which keys it has (a key deleted since the file was built has no row)
        self.mat32: np.ndarray | None = None
        self.have32: np.ndarray | None = None
        self._table: np.ndarray | None = None  # key - keys[0] -> position, once resident (`_index_keys`)
        self._base = 0  # keys[0], as a Python int (for `_table`)
        self._usable: np.ndarray | None = None  # `keys`, -1 where no exact vector or id (`lookup`)
        self._norms: np.ndarray | None = None  # each exact row's norm, for cosine (`norms`)
        self.head = head  # the seal's header; None for a file parsed without one (doctor)
        self.resident = False
        self.buffer: np.ndarray | None = None  # the whole file in memory, once resident
        self.trusted = True  # False once the resident copy's hash differs from the seal's
        self._lock = threading.Lock()
        # id and namespace of each key (in `keys` order), loaded by `load_info`; `known` marks
        # the keys that had a record when loaded (a key's id and namespace never change)
        self.ids: np.ndarray | None = None
        self.nss: np.ndarray | None = None
        self.known: np.ndarray | None = None
        self._info: list[tuple[str, str | None]] = []

    @classmethod
    def from_seal(cls, path: Path, s: Seal, dims: int) -> FileVectors | None:
        head = s.head
        if not head.get("vectors"):
            return None
        rows = int(head["rows"])
        scalar = SCALARS[head.get("dtype", "f32")]  # seals before float16 files have no dtype
        f = _open_regular(path)
        if f is None or identity(os.fstat(f.fileno())) != head.get("identity"):
            raise ValueError("the file is no longer the one its seal names")  # replaced since the seal was read
        with f:
            mapped = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)  # outlives the descriptor
        # a plain ndarray over the mapping: np.memmap's Python-level indexing costs more than a gather
        mat = np.frombuffer(mapped, dtype=scalar, count=rows * dims,
                            offset=int(head["matrix_offset"])).reshape(rows, dims)
        return cls(path, s.keys, s.slots, mat, head)

    @property
    def exact(self) -> bool:
        """Whether `split` gives SQLite's float32 values (an f32 file, or an f16 one made
        resident), rather than float16 within F16_EPS of them."""
        return self.mat.dtype == np.float32 or self.mat32 is not None

    def make_resident(self, conn: sqlite3.Connection | None = None, row: dict[str, Any] | None = None,
                      donor: FileVectors | None = None) -> bool:
        """Keep what queries score from in this process's memory, once; False (and never again
        trusted) if the file changed since its seal.

        An f32 file is read whole (one sequential read) and kept only if its matrix's SHA-256 is
        the sealed one. The copy is `buffer`; `mat` is its matrix, and usearch can search it in
        place (`ann.in_memory`), so that a query's search and its rescoring touch the same memory.
        Of an f16 file, whose vectors only pick candidates, the records' float32 values are read
        from SQLite instead (`conn`, index `row`): rescoring then never reads SQLite, and usearch
        keeps searching the mapped file.

        Worth it in a long-lived process: a first touch of a page costs several microseconds,
        and a copy cannot change under the process, whatever happens to the file afterwards.
        But it costs the process the copy and INFO_BYTES per record, so only within the budget
        (`RESIDENT`, VZ_RESIDENT_MB): past it this returns True and the file stays usable, not
        resident; queries then score from SQLite (`exact` is False for an f16 file).
        """
        with self._lock:
            if self.resident or not self.trusted:
                return self.trusted
            f16 = self.mat.dtype != np.float32
            if f16 and (conn is None or row is None):
                return False
            try:
                copy = self.mat.size * 4 if f16 else os.stat(self.path).st_size
            except OSError:
                copy = 0  # gone: `_read_whole` finds out
            need, token = copy + INFO_BYTES * len(self.keys), object()
            if not RESIDENT.claim(self.path.parent, token, need):
                return True  # over the budget: usable, not held (tried again on the next open)
            give_back = weakref.finalize(self, RESIDENT.release, self.path.parent, token)
            try:
                if f16:
                    assert conn is not None and row is not None
                    self._load_exact(conn, row, donor)
                    self._index_keys()
                    self.resident = True
                    return True
                head = self.head
                buf = self._read_whole(head) if head is not None else None
            except BaseException:
                give_back()
                raise
            if head is None or buf is None:
                give_back()
                self.trusted = False
                return False
            mat = np.frombuffer(buf, dtype=self.mat.dtype, count=self.mat.size,
                                offset=int(head["matrix_offset"])).reshape(self.mat.shape)
            keys, slots = np.array(self.keys), np.array(self.slots)
            if _digest(mat.data.cast("B")) != head.get("matrix_sha256") or \
                    _digest(keys.tobytes(), slots.tobytes()) != head.get("keys_sha256"):
                give_back()
                self.trusted = False
                return False
            self.buffer, self.mat, self.keys, self.slots = buf, mat, keys, slots
            self._index_keys()
            self.resident = True
            return True

    def _load_exact(self, conn: sqlite3.Connection, row: dict[str, Any], donor: FileVectors | None = None) -> None:
        """Read the float32 vector of every live key of the file from SQLite (one pass, in key order).

        With `donor`, the index's previous resident file, copy the vectors it holds instead and
        read only the others by key: a key's vector never changes, so after a merge only the
        merged records are read. Each worker's first query of each new file pays this; at 1M x 128
        it took 1.6-1.8 s instead of 2.2-2.7 s (most of what is left is the copy's first touch of
        512 MB). A key deleted since the donor read it is in `dead_keys` if the file holds it: it
        is left out, as the full read leaves out a key without a row."""
        n, dims = len(self.keys), self.mat.shape[1]
        mat32, have = np.zeros((n, dims), dtype=np.float32), np.zeros(n, dtype=bool)
        if donor is None or donor.mat32 is None or donor.have32 is None or donor.mat32.shape[1] != dims or not n:
            cur = conn.execute("SELECT key, vec FROM vectors WHERE index_id = ? AND key <= ? ORDER BY key",
                               (row["id"], int(self.keys[-1]) if n else 0))
            rest = None
        else:
            pos, hit = donor.find(self.keys)
            hit &= donor.have32[pos]
            at = np.flatnonzero(hit)
            src = pos[at]
            if len(at) and at[-1] - at[0] + 1 == len(at) and src[-1] - src[0] + 1 == len(at):
                # the usual merge: the new file's first keys are the previous file's, in order
                mat32[at[0]:at[-1] + 1] = donor.mat32[src[0]:src[-1] + 1]
            else:
                mat32[at] = donor.mat32.take(src, axis=0)
            have[at] = True
            dead = conn.execute("SELECT key FROM dead_keys WHERE index_id = ?", (row["id"],)).fetchall()
            if dead:
                at, held = self.find(np.fromiter((k for k, in dead), dtype=np.int64, count=len(dead)))
                have[at[held]], mat32[at[held]] = False, 0.0
            rest = self.keys[~hit].tolist()
            cur = conn.execute("SELECT key, vec FROM vectors WHERE key IN (SELECT value FROM json_each(?))",
                               (json_keys(rest),))
        while batch := cur.fetchmany(8192):
            pos, hit = self.find(np.fromiter((k for k, _ in batch), dtype=np.int64, count=len(batch)))
            vecs = np.frombuffer(b"".join(v for _, v in batch), dtype=np.float32).reshape(len(batch), dims)
            mat32[pos[hit]], have[pos[hit]] = vecs[hit], True
        self.have32 = have  # before mat32: a thread that sees mat32 (`exact`) must find have32 too
        self.mat32 = mat32

    def _read_whole(self, head: dict[str, Any]) -> np.ndarray | None:
        """The file's bytes, if it is still the one its seal names (size, inode, mtime). Opened
        without blocking: a FIFO put in its place must not hang the process (its identity differs)."""
        try:
            f = _open_regular(self.path)
            if f is None:
                return None
            with f:
                if identity(os.fstat(f.fileno())) != head.get("identity"):
                    return None
                buf = np.empty(os.fstat(f.fileno()).st_size, dtype=np.uint8)
                view, got = buf.data, 0
                while got < len(buf):
                    n = f.readinto(view[got:])
                    if not n:
                        return None
                    got += n
        except OSError:
            return None
        return buf

    def load_info(self, conn: sqlite3.Connection, donor: FileVectors | None) -> None:
        """Load the id and namespace of every key, taking what `donor` (the index's previous
        file) already holds, so that after a merge only the merged records are read."""
        with self._lock:
            if self.known is not None:
                return
            n = len(self.keys)
            ids, nss = np.full(n, None, dtype=object), np.full(n, None, dtype=object)
            known = np.zeros(n, dtype=bool)
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
            self._info = list(zip(ids.tolist(), nss.tolist(), strict=True))  # indexing a list costs less

    def info(self, keys: list[int]) -> dict[int, tuple[str, str | None]]:
        """key -> (id, namespace) for the `keys` this file knows (after `load_info`)."""
        assert self.known is not None
        pos, ok = self.find(np.asarray(keys, dtype=np.int64))
        ok &= self.known[pos]
        info = self._info
        return {k: info[p] for k, p, good in zip(keys, pos.tolist(), ok.tolist(), strict=True) if good}

    def _index_keys(self) -> None:
        """A resident copy's direct key -> position table, where keys are dense enough (at most
        DENSE_SPAN table entries per key): a lookup then costs one memory access instead of a
        binary search's ~20 cache misses over a large key array (~1 us per key at 1M)."""
        n = len(self.keys)
        if n and int(self.keys[-1]) - int(self.keys[0]) < DENSE_SPAN * n:
            table = np.full(int(self.keys[-1]) - int(self.keys[0]) + 1, -1, dtype=np.int64 if n >= 2 ** 31 else np.int32)
            table[self.keys - self.keys[0]] = np.arange(n, dtype=table.dtype)
            self._base = int(self.keys[0])
            self._table = table

    def find(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position of each of `keys` in `self.keys`, mask of those the file holds)."""
        if not len(self.keys):
            return np.zeros(len(keys), dtype=np.int64), np.zeros(len(keys), dtype=bool)
        if self._table is not None:
            rel = keys - self.keys[0]
            inside = (rel >= 0) & (rel < len(self._table))
            pos = self._table[np.where(inside, rel, 0)].astype(np.int64)
            hit = inside & (pos >= 0)
            pos[~hit] = 0
            return pos, hit
        pos = np.searchsorted(self.keys, keys)
        pos[pos >= len(self.keys)] = 0
        return pos, self.keys[pos] == keys

    def lookup(self, keys: np.ndarray) -> np.ndarray | None:
        """Positions of `keys` (int64) if the file holds every one with its exact vector and its
        id (`exact`, after `load_info`), else None: one check for the resident query path."""
        usable = self._usable
        if usable is None:
            if self.known is None or not self.exact or not len(self.keys):
                return None
            ok = self.known if self.have32 is None else self.known & self.have32
            usable = self._usable = np.where(ok, self.keys, -1)  # each usable key at its position
        t = self._table
        if t is not None:
            pos = t.take(keys - self._base, mode="clip")  # a key outside the table (or absent: -1) is
        else:  # caught below, as a position holding another key
            pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return pos if (usable[pos] == keys).all() else None

    def norms(self, row_norms: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """`row_norms` of every row of the exact copy, in `keys` order, computed once (O(n), the
        first cosine query of a resident process): a cosine query then scores its candidates
        with one dot product each instead of two, to the same bits (a row's norm does not depend
        on the rows computed beside it)."""
        got = self._norms
        if got is None:
            with self._lock:
                if self._norms is None:
                    out = np.empty(len(self.keys), dtype=np.float64)
                    for lo in range(0, len(out), 1 << 16):
                        at = slice(lo, lo + (1 << 16))
                        rows = self.mat32[at] if self.mat32 is not None else self.mat[self.slots[at]]
                        out[at] = row_norms(rows.astype(np.float64))
                    self._norms = out
                got = self._norms
        return got

    def row_bytes(self, p: int) -> bytes:
        """The float32 bytes of the vector at position `p` (an exact file: `exact`)."""
        return (self.mat32[p] if self.mat32 is not None else self.mat[self.slots[p]]).tobytes()

    def split(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of `keys` present in the file, their vectors in order): SQLite's float32 when
        `exact`, else the f16 file's."""
        pos, hit = self.find(keys)
        if self.mat32 is not None:
            assert self.have32 is not None
            hit &= self.have32[pos]
            return hit, self.mat32[pos[hit]]
        return hit, self.mat[self.slots[pos[hit]]]
