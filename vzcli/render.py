"""All terminal output: JSON on stdout, tables and messages for humans, hints and errors on stderr.

This is the only module that imports rich, and it does so lazily, so `--json` paths never pay
for it. NO_COLOR and non-TTY output are honoured (rich does both).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

_quiet = False


def set_quiet(value: bool) -> None:
    global _quiet
    _quiet = value


def is_quiet() -> bool:
    return _quiet


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = os.environ.get("TERMINAL_WIDTH") or os.environ.get("COLUMNS")
    if not width and not stream.isatty():
        width = "1000"  # never wrap tables written to a pipe or file
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=int(width) if width else None)


def json_out(obj: Any) -> None:
    """One JSON document on stdout, 2-space indent (like wrangler's JSON.stringify(x, null, 2))."""
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def ndjson_out(objs: Iterable[Any]) -> None:
    write = sys.stdout.write
    for obj in objs:
        write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


def say(msg: str) -> None:
    """A human message on stdout (silenced by --quiet)."""
    if not _quiet:
        sys.stdout.write(msg + "\n")


def hint(msg: str) -> None:
    """A hint or warning on stderr (silenced by --quiet)."""
    if not _quiet:
        sys.stderr.write(msg + "\n")


def warn(msg: str) -> None:
    hint(f"▲ [WARNING] {msg}")


def error(msg: str) -> None:
    """Errors always reach stderr, even with --quiet."""
    sys.stderr.write(f"✘ [ERROR] {msg}\n")
    sys.stderr.flush()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A boxed table with a rule between rows, like wrangler's cli-table3 output."""
    if _quiet:
        return
    from rich import box
    from rich.table import Table

    t = Table(box=box.SQUARE, show_lines=True, header_style="bold", pad_edge=True)
    for c in columns:
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    _console().print(t)


class Progress:
    """A progress bar on stderr, shown only when stderr is a TTY and the work is large."""

    def __init__(self, total: int | None, description: str, *, min_total: int = 5_000_000,
                 unit: str = "bytes") -> None:
        self._bar: Any = None
        self._task: Any = None
        if _quiet or total is None or total < min_total or not sys.stderr.isatty():
            return
        from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        done = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()  # else a count of records
        self._bar = RichProgress("[progress.description]{task.description}", BarColumn(), done,
                                 TimeRemainingColumn(), console=_console(stderr=True), transient=True)
        self._task = self._bar.add_task(description, total=total)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def update(self, completed: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=completed)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


def confirm(question: str) -> bool:
    from rich.prompt import Confirm

    return bool(Confirm.ask(question, console=_console(stderr=True), default=False))
