"""How vz starts a Python process of its own: the same interpreter, importing the same modules.

`python -m vzcli.x` puts the working directory first on the new process's `sys.path`: a `vz
insert` run in a directory that holds a `vzcli/` package (another checkout, an unpacked download)
ran that directory's code as its ANN builder, and `vz doctor` as its probe. So vz's own children
run with `-P` (Python 3.11+: nothing is prepended) and get this process's `sys.path` through
PYTHONPATH: they import exactly what this process imports, wherever they are started.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def argv(module: str, *args: str) -> list[str]:
    """The command line that runs `python -m module args...` with this interpreter."""
    return [sys.executable, "-P", "-m", module, *args]


def env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`base` (default: this process's environment) with `extra`, and PYTHONPATH = this `sys.path`."""
    out = dict(os.environ if base is None else base, **extra)
    out["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return out
