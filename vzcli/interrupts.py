"""Ctrl-C raised as KeyboardInterrupt where Python will not drop it.

Python runs a signal handler at the next check of the main thread, wherever that is; when that is
a callback whose exceptions Python ignores (importlib's module-lock callbacks run at any moment an
import drops a lock), the KeyboardInterrupt is printed as "Exception ignored in ..." with a
traceback and then dropped: a `vz insert` went on to write every record after Ctrl-C. vz's handlers
(`handler`, the writes' guard) defer the signal while the stack is inside importlib (an import in
progress, or its callback), and raise it once it is not: an import is never cut in the middle.
A library user's process keeps its own SIGINT handler; there `usearch_file.index_class` guards the
one import known to break (usearch's extension), and the CLI's `handled` reads an ImportError caused
by a KeyboardInterrupt as "interrupted".
"""

from __future__ import annotations

import _thread
import threading
from typing import Any

RETRY = 0.002  # seconds until a deferred SIGINT is tried again


def deferred(frame: Any) -> bool:
    """True if the stack at `frame`, where a SIGINT handler runs, is inside importlib (an import,
    or one of its callbacks): an exception raised there may be dropped, or may break an extension
    module's initialisation. Then the signal is tried again in RETRY seconds (`interrupt_main` from
    a timer thread; tripped at once, it would run again before this frame is left). False: raise now."""
    f = frame
    while f is not None:
        if str(f.f_code.co_filename).startswith("<frozen importlib"):
            timer = threading.Timer(RETRY, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            return True
        f = f.f_back
    return False


def handler(sig: int, frame: Any) -> None:
    """The CLI's SIGINT handler: Python's default (raise KeyboardInterrupt), outside importlib."""
    if not deferred(frame):
        raise KeyboardInterrupt
