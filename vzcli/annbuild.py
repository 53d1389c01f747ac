"""Build an index's HNSW graph in a child process while a bulk write is still being parsed.

A large insert or upsert into an index without an ANN file would commit, then read every vector
back from SQLite and build the graph: parsing, validation and SQLite run on one core while the
other idles, and the build waits for all of them. Instead, once the write passes the merge
threshold, `Builder` starts `python -m vzcli.annchild` and streams it the records' keys and
vectors as they are written; the child adds them to a usearch index on its own (usearch takes
the GIL back between nodes, so a Python thread parsing beside `Index.add` would slow the build
down many times; a process does not). After the commit the child publishes the file and the
parent installs it (`ann.install`, the same compare-and-swap as a merge). If anything fails, the
write itself is unaffected: the usual merge after the commit rebuilds from SQLite.

Cores. While the parent is still parsing, the child builds with one thread: with two build
threads beside the parser, three threads share two cores, and usearch's threads spin on node
locks whose holder was preempted (measured at 100k x 768: 25% more build CPU than the same
build alone). The parser is several times faster than a one-thread build, so the child buffers
what it has not built yet and, once the parent has committed (or the buffer is full and the
parent has to wait), builds with every core. The buffer holds float16 for float16 files, fewer
bytes per vector than the graph will hold, so the child's peak memory is still its final graph.

Protocol on the child's stdin: one JSON line (the index row, the directory), then frames of
`<q n><q expect>` + n u64 keys + n vectors, in native byte order (both ends run on one machine;
`expect`: the nodes the graph should reach, estimated from the input's size; 0 when unknown), as
float16 for an f16 file (the parent checks that float16 holds them, `published.as_f16`) and
float32 otherwise; `<q -1><q seq>` means "committed: publish". EOF without it means "rolled
back": the child exits and writes nothing. On stdout: one JSON line.
"""

from __future__ import annotations

import os
import struct
import subprocess
from typing import Any

import numpy as np
import orjson

from vzcli import spawn
from vzcli.published import as_f16

_ROW_KEYS = ("id", "name", "dimensions", "metric", "dtype", "connectivity", "expansion_add", "expansion_search")


class Builder:
    """The parent's side: feed (keys, vectors) blocks, then `finish` after the commit."""

    def __init__(self, row: dict[str, Any], d: os.PathLike[str] | str) -> None:
        self.row = row
        self.nodes = 0
        self.max_key = 0
        # a fixed mmap threshold: each frame the child frees goes back to the system at once
        # (glibc's adaptive threshold would keep the buffer's peak in the heap)
        env = spawn.env(MALLOC_MMAP_THRESHOLD_="131072")
        # its own session: Ctrl-C in the terminal is the parent's to handle (the child also ignores
        # SIGINT); if the parent dies, the child reads EOF and exits without publishing
        self.proc = subprocess.Popen(spawn.argv("vzcli.annchild"), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, start_new_session=True)
        assert self.proc.stdin is not None
        _widen(self.proc.stdin)
        self.proc.stdin.write(orjson.dumps({"row": {k: row[k] for k in _ROW_KEYS}, "dir": str(d)}) + b"\n")

    def add(self, keys: np.ndarray, vecs: np.ndarray, expect: int = 0) -> bool:
        """Stream a block; `expect`: how many nodes the graph is expected to reach (0: unknown).
        False if an f16 file cannot hold the block (the merge after the commit builds an f32 one)."""
        if not len(keys):
            return True
        assert self.proc.stdin is not None
        if self.row["dtype"] == "f16":
            h = as_f16(vecs)
            if h is None:
                return False
            vecs = h
        self.proc.stdin.write(struct.pack("=qq", len(keys), expect))
        self.proc.stdin.write(np.ascontiguousarray(keys, dtype=np.uint64).tobytes())
        self.proc.stdin.write(np.ascontiguousarray(vecs).tobytes())
        self.nodes += len(keys)
        self.max_key = max(self.max_key, int(keys[-1]))
        return True

    def commit(self, seq: int) -> None:
        """The write has committed at mutation `seq`: the child may publish once it has built."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack("=qq", -1, seq))
        self.proc.stdin.close()

    def result(self) -> str:
        """Wait for the child; the name of the file it published. Raises on failure."""
        assert self.proc.stdout is not None
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


PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process (/proc/sys/fs/pipe-max-size)


def _widen(pipe: Any) -> None:
    """Give the pipe to the child PIPE_BYTES of room, not 64 KiB: the parent then blocks, and the
    child wakes, about once per MiB of vectors, not 16 times (a 30k x 768 insert: 230 voluntary
    context switches of the child instead of 600; its CPU moved within the noise)."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError, ValueError):
        pass  # not Linux, or a lower limit: the default size works, only slower
