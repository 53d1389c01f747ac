"""Write an output file the user named without destroying what the name points at.

`vz export -o PATH` and `vz dev-binding --out DIR` write through this module:

- a symlink is followed: its target is written, the link stays a link;
- a FIFO, a character device or any other non-regular file (`/dev/null`, a named pipe a reader
  waits on) is opened and written in place, never replaced;
- `/dev/stdout`, `/dev/stderr` and `/dev/fd/N` write to the descriptor the process already has,
  so a shell's `>>` (append) or an open pipe is honoured;
- a regular file (or a new name) is written to a temporary file beside the real target, with the
  target's permission bits (and owner, where allowed), fsynced and renamed over it: a crash or an
  error leaves the old file whole. A new file gets the default mode (0666 minus the umask).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from vzcli.errors import UsageError

_FD_PATH = re.compile(r"^/(?:dev/fd|proc/self/fd)/(\d+)$")
_STD_NAMES = {"/dev/stdout": 1, "/dev/stderr": 2}


def _inherited_fd(path: str) -> int | None:
    """The descriptor a path such as /dev/stdout names, or None."""
    if path in _STD_NAMES:
        return _STD_NAMES[path]
    m = _FD_PATH.match(path)
    return int(m.group(1)) if m else None


@contextmanager
def output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write `path` through; published only when the block ends without error."""
    name = os.fspath(path)
    fd = _inherited_fd(name)
    if fd is not None:
        with os.fdopen(os.dup(fd), "wb") as f:
            yield f
        return
    try:
        st: os.stat_result | None = os.stat(name)  # follows symlinks
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"Cannot write {name}: it is a directory; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        # a FIFO, a device, a socket: write to it as it is; renaming over it would destroy it
        with open(name, "wb") as f:
            yield f
        return
    target = Path(os.path.realpath(name))  # a symlink's target (also one that does not exist yet)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    # 0o666: the kernel applies the umask, as for any new file; an existing file's mode is copied
    tfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if st is not None:
            os.fchmod(tfd, stat.S_IMODE(st.st_mode))
            try:
                os.fchown(tfd, st.st_uid, st.st_gid)
            except OSError:
                pass  # only root may give a file away; the mode is what protects it
        with os.fdopen(tfd, "wb") as f:
            tfd = -1
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if tfd >= 0:
            os.close(tfd)
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent, best_effort=True)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` (UTF-8) to `path` as `output` does."""
    with output(path) as f:
        f.write(text.encode("utf-8"))


def fsync_dir(d: Path, *, best_effort: bool = False) -> None:
    """Make a rename in `d` durable. A directory that cannot be opened is skipped; an fsync error
    is raised unless `best_effort` (some file systems refuse to fsync a directory)."""
    try:
        dfd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        if not best_effort:
            raise
    finally:
        os.close(dfd)
