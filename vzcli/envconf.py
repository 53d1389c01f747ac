"""The `VZ_*` environment variables vz reads, parsed and validated in one place.

Every reader of a setting calls the function here, so a bad value is reported the same way
wherever it is read: a usage error (exit 2, code 40000) that names the variable and says what it
accepts. The CLI calls `check_all()` before it runs any command (so `vz serve` checks them at
start too), which means a bad value is reported before anything is written, never after a write
has committed. An empty value means "not set", as click treats an empty variable for an option.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vzcli.errors import UsageError

DEFAULT_LOCK_TIMEOUT = 60.0
DEFAULT_MERGE_THRESHOLD = 2000
DEFAULT_RESIDENT_MB = 1024
_TRUE = ("1", "true", "t", "yes", "y", "on")  # what click accepts for a boolean option
_FALSE = ("0", "false", "f", "no", "n", "off")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _bad(name: str, value: str, wants: str) -> UsageError:
    return UsageError(f"environment variable {name}={value!r} is invalid: {wants}; "
                      f"fix it or unset it (`unset {name}`)")


def store_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """VZ_STORE: the store directory, or None when unset."""
    value = _env(env).get("VZ_STORE") or None
    return Path(value) if value is not None else None


def lock_timeout(env: Mapping[str, str] | None = None) -> float:
    """VZ_LOCK_TIMEOUT: seconds a writer waits for the store's write lock (a finite number ≥ 0)."""
    value = _env(env).get("VZ_LOCK_TIMEOUT") or None
    if value is None:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise _bad("VZ_LOCK_TIMEOUT", value, "expected a number of seconds ≥ 0, e.g. VZ_LOCK_TIMEOUT=60")
    return seconds


def _whole(env: Mapping[str, str] | None, name: str, default: int, least: int, wants: str) -> int:
    """Variable `name` as a whole number ≥ `least` (`default` when unset); `wants` words the error."""
    value = _env(env).get(name) or None
    if value is None:
        return default
    try:
        n = int(value.strip(), 10)
    except ValueError:
        n = least - 1
    if n < least:
        raise _bad(name, value, wants)
    return n


def merge_threshold(env: Mapping[str, str] | None = None) -> int:
    """VZ_MERGE_THRESHOLD: delta records that trigger a merge into the HNSW file (a whole number ≥ 1)."""
    return _whole(env, "VZ_MERGE_THRESHOLD", DEFAULT_MERGE_THRESHOLD, 1,
                  "expected a whole number ≥ 1, e.g. VZ_MERGE_THRESHOLD=2000")


def resident_mb(env: Mapping[str, str] | None = None) -> int:
    """VZ_RESIDENT_MB: MiB a long-lived process (`vz serve`'s workers, a resident library backend)
    may hold of its indexes' exact vectors and ids, all indexes together (a whole number ≥ 0)."""
    return _whole(env, "VZ_RESIDENT_MB", DEFAULT_RESIDENT_MB, 0,
                  "expected a whole number of MiB ≥ 0, e.g. VZ_RESIDENT_MB=1024")


def ann_dtype(env: Mapping[str, str] | None = None) -> str:
    """VZ_ANN_DTYPE: how new ANN files store vectors, f16 (the default: half the disk and memory;
    queries still score from SQLite's float32) or f32. Data float16 cannot hold is stored f32."""
    value = _env(env).get("VZ_ANN_DTYPE") or None
    if value is None:
        return "f16"
    if value.strip().lower() not in ("f16", "f32"):
        raise _bad("VZ_ANN_DTYPE", value, "expected f16 or f32, e.g. VZ_ANN_DTYPE=f32")
    return value.strip().lower()


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise _bad(name, value, f"expected one of {', '.join(_TRUE + _FALSE)}")


def remote(env: Mapping[str, str] | None = None) -> bool:
    """VZ_REMOTE: run against Cloudflare's REST API (as --remote)."""
    return _flag("VZ_REMOTE", _env(env).get("VZ_REMOTE") or None)


def debug(env: Mapping[str, str] | None = None) -> bool:
    """VZ_DEBUG: an internal error prints its traceback."""
    return _flag("VZ_DEBUG", _env(env).get("VZ_DEBUG") or None)


def api_token(env: Mapping[str, str] | None = None) -> str | None:
    """VZ_API_TOKEN: the bearer token of `vz serve` and `vz dev-binding`, visible ASCII only.

    A token is compared with an HTTP header value, which cannot hold spaces, control characters
    or non-ASCII text reliably; such a token could never be presented, so it is refused up front.
    """
    value = _env(env).get("VZ_API_TOKEN") or None
    if value is not None and not all("!" <= c <= "~" for c in value):
        raise UsageError("environment variable VZ_API_TOKEN is invalid: a token must be visible ASCII "
                         "characters (no spaces or control characters); fix it or unset it "
                         "(`unset VZ_API_TOKEN`)")
    return value


CHECKS: dict[str, Callable[[Mapping[str, str] | None], Any]] = {
    "VZ_STORE": store_dir,
    "VZ_LOCK_TIMEOUT": lock_timeout,
    "VZ_MERGE_THRESHOLD": merge_threshold,
    "VZ_ANN_DTYPE": ann_dtype,
    "VZ_RESIDENT_MB": resident_mb,
    "VZ_REMOTE": remote,
    "VZ_API_TOKEN": api_token,
    "VZ_DEBUG": debug,
}


def check_all(env: Mapping[str, str] | None = None) -> None:
    """Validate every VZ_* variable vz reads; raises UsageError naming the first bad one."""
    for check in CHECKS.values():
        check(env)
