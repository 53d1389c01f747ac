"""Build an index's HNSW graph in a child process while a bulk write is still being parsed.

A large insert or upsert into an index without an ANN file would commit, then read every vector
back from SQLite and build the graph: parsing, validation and SQLite run on one core while the
other idles, and the build waits for all of them. Instead, once the write passes the merge
threshold, `Builder` starts `python -m vzcli.annbuild` and streams it the records' keys and
float32 vectors as they are written; the child adds them to a usearch index on its own (usearch
takes the GIL back between nodes, so a Python thread parsing beside `Index.add` would slow the
build down many times; a process does not). After the commit the child publishes the file and
the parent installs it (`ann.install`, the same compare-and-swap as a merge). The child checks
that float16 can hold each block (`published.fits`) and gives up if not. If anything fails,
the write itself is unaffected: the usual merge after the commit rebuilds from SQLite.

Protocol on the child's stdin: one JSON line (the index row, the directory), then frames of
`<q n><q expect>` + n u64 keys + n*dims f32 values (`expect`: the nodes the graph should reach,
estimated from the input's size; 0 when unknown); `<q -1><q seq>` means "committed: publish".
EOF without it means "rolled back": the child exits and writes nothing. On stdout: one JSON line.
"""

from __future__ import annotations

import os
import queue
import signal
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO

import numpy as np
import orjson

_ROW_KEYS = ("id", "name", "dimensions", "metric", "dtype", "connectivity", "expansion_add", "expansion_search")
_AHEAD = 4  # frames the child reads ahead of its build: bounds the memory the pipeline holds


class Builder:
    """The parent's side: feed (keys, vectors) blocks, then `finish` after the commit."""

    def __init__(self, row: dict[str, Any], d: os.PathLike[str] | str) -> None:
        self.row = row
        self.nodes = 0
        self.max_key = 0
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # its own session: Ctrl-C in the terminal is the parent's to handle (the child also ignores
        # SIGINT); if the parent dies, the child reads EOF and exits without publishing
        self.proc = subprocess.Popen([sys.executable, "-m", "vzcli.annbuild"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, start_new_session=True)
        assert self.proc.stdin is not None
        self.proc.stdin.write(orjson.dumps({"row": {k: row[k] for k in _ROW_KEYS}, "dir": str(d)}) + b"\n")

    def add(self, keys: np.ndarray, vecs: np.ndarray, expect: int = 0) -> None:
        """Stream a block; `expect`: how many nodes the graph is expected to reach (0: unknown)."""
        if not len(keys):
            return
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack("<qq", len(keys), expect))
        self.proc.stdin.write(np.ascontiguousarray(keys, dtype="<u8").tobytes())
        self.proc.stdin.write(np.ascontiguousarray(vecs, dtype="<f4").tobytes())
        self.nodes += len(keys)
        self.max_key = max(self.max_key, int(keys[-1]))

    def finish(self, seq: int) -> str:
        """Publish the file (the write has committed); returns its name. Raises on failure."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(struct.pack("<qq", -1, seq))
        self.proc.stdin.close()
        out = orjson.loads(self.proc.stdout.read() or b'{"error": "the ANN builder exited early"}')
        self.proc.wait()
        if "error" in out:
            raise RuntimeError(out["error"])
        return str(out["file"])

    def abort(self) -> None:
        """Stop the child; it publishes nothing."""
        if self.proc.poll() is None:
            self.proc.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self.proc.wait()


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _reader(f: BinaryIO, dims: int, q: queue.Queue[Any]) -> None:
    """Read frames into `q` (in a thread: blocked in read() it holds no GIL)."""
    try:
        while True:
            n, arg = struct.unpack("<qq", _read(f, 16))
            if n < 0:
                q.put(("commit", arg))
                return
            keys = np.frombuffer(_read(f, 8 * n), dtype="<u8")
            vecs = np.frombuffer(_read(f, 4 * n * dims), dtype="<f4").reshape(n, dims)
            q.put(("add", (keys, vecs, arg)))
    except (EOFError, OSError, ValueError):
        q.put(("abort", None))


def main() -> int:
    from vzcli import ann, published

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    f = sys.stdin.buffer
    head = orjson.loads(f.readline())
    row, d = head["row"], head["dir"]
    idx = ann._new_index(row)
    q: queue.Queue[Any] = queue.Queue(maxsize=_AHEAD)
    threading.Thread(target=_reader, args=(f, row["dimensions"], q), daemon=True).start()
    while True:
        kind, arg = q.get()
        if kind == "add":
            if not published.fits(arg[1], row["dtype"]):
                return 1  # float16 cannot hold these: the merge after the commit builds an f32 file
            keys, vecs, expect = arg
            size = len(idx) + len(keys)
            # the size the graph is expected to reach (from how much of the input file has been
            # read), as a rebuild uses its final size; the size reached so far for a piped input
            idx.expansion_add = ann.ef_construction_for(max(size, expect), row["expansion_add"])
            # a small graph is built with one thread, as in ann.maintain (a racy build can strand nodes)
            idx.add(keys, vecs, threads=1 if size < ann.SMALL_GRAPH else 0)
        elif kind == "abort":
            return 1
        else:
            try:
                from pathlib import Path

                name = ann.publish(idx, Path(d), arg)
            except Exception as e:  # noqa: BLE001 (reported to the parent, which falls back)
                sys.stdout.buffer.write(orjson.dumps({"error": str(getattr(e, "message", e))}))
                return 1
            sys.stdout.buffer.write(orjson.dumps({"file": name}))
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
