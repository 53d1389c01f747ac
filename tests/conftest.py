"""Shared fixtures. Every test gets its own temporary store through VZ_STORE."""

from __future__ import annotations

import os

# Pin terminal behaviour before typer/rich are imported, so output is the same on CI and locally.
os.environ["TERMINAL_WIDTH"] = "1000"
os.environ["_TYPER_FORCE_DISABLE_TERMINAL"] = "1"
os.environ.pop("FORCE_COLOR", None)
os.environ["NO_COLOR"] = "1"

import signal  # noqa: E402

# A run started in the background of a non-interactive shell (`bash .ci/run &`) inherits SIGINT
# ignored, and so would every process a test starts: the tests that send Ctrl-C need its default.
# A Python handler here is reset to the default action in each child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import functools  # noqa: E402
import json  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import typer.testing  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from vzcli.cli import app  # noqa: E402

# typer.testing rebuilds the whole click command tree on every invoke (~100 ms for vz's commands,
# most of a test's time); the tree never changes within a session, so build it once per app.
typer.testing._get_command = functools.cache(typer.testing._get_command)  # type: ignore[attr-defined]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store directory (not yet created), exported as VZ_STORE."""
    path = tmp_path / "store"
    monkeypatch.setenv("VZ_STORE", str(path))
    monkeypatch.delenv("VZ_REMOTE", raising=False)
    monkeypatch.delenv("VZ_MERGE_THRESHOLD", raising=False)
    return path


class Result:
    def __init__(self, r: Any) -> None:
        self.exit_code: int = r.exit_code
        self.stdout: str = r.stdout
        self.stderr: str = r.stderr
        self.exception = r.exception

    def json(self) -> Any:
        return json.loads(self.stdout)


@pytest.fixture
def vz(store: Path) -> Callable[..., Result]:
    """Run `vz ARGS...` in-process against the test's store; `input` feeds stdin."""
    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None) -> Result:
        r = runner.invoke(app, [str(a) for a in args], input=input, prog_name="vz")
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        return Result(r)

    return run
