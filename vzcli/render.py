"""All terminal output: JSON on stdout, tables and messages for humans, hints and errors on stderr.

This is the only module that imports rich, and it does so lazily, so `--json` paths never pay
for it. NO_COLOR and non-TTY output are honoured (rich does both).
"""

from __future__ import annotations

import os
import re
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


# C0 controls, DEL and C1 controls: ESC, BEL, CSI (U+009B) and friends can recolour, retitle or
# rewrite a terminal, so text taken from data never reaches a human's terminal with them raw.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_MESSAGE_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # a message keeps its \n and \t
_JSON_CONTROLS = re.compile("[\x7f-\x9f]")  # JSON already escapes C0; these it leaves raw
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return _NAMED.get(c) or f"\\x{ord(c):02x}"


def safe(text: str) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`): one line, inert."""
    return _CONTROLS.sub(_escape, text)


def _safe_message(text: str) -> str:
    return _MESSAGE_CONTROLS.sub(_escape, text)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width: int | None = None
    for var in ("TERMINAL_WIDTH", "COLUMNS"):
        value = os.environ.get(var, "")
        if value.isascii() and value.isdigit() and int(value) > 0:  # a bad value is ignored, as a shell's own COLUMNS may be
            width = int(value)
            break
    if width is None and not stream.isatty():
        width = 1000  # never wrap tables written to a pipe or file
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def json_out(obj: Any, *, human: bool = False) -> None:
    """One JSON document on stdout, 2-space indent (like wrangler's JSON.stringify(x, null, 2)).

    `human`: the document is printed for a person (a command that prints JSON without --json);
    DEL and C1 controls inside strings are then written as \\u escapes, the same JSON value, so
    stored data cannot drive the terminal. With --json the bytes are orjson's, unchanged.
    """
    text = orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
    if human:
        text = _JSON_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def ndjson_out(objs: Iterable[Any]) -> None:
    write = sys.stdout.write
    for obj in objs:
        write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


def say(msg: str) -> None:
    """A human message on stdout (silenced by --quiet)."""
    if not _quiet:
        sys.stdout.write(_safe_message(msg) + "\n")


def hint(msg: str) -> None:
    """A hint or warning on stderr (silenced by --quiet)."""
    if not _quiet:
        sys.stderr.write(_safe_message(msg) + "\n")


def warn(msg: str) -> None:
    hint(f"▲ [WARNING] {msg}")


def error(msg: str) -> None:
    """Errors always reach stderr, even with --quiet."""
    sys.stderr.write(f"✘ [ERROR] {_safe_message(msg)}\n")
    sys.stderr.flush()


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A boxed table with a rule between rows, like wrangler's cli-table3 output."""
    if _quiet:
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(box=box.SQUARE, show_lines=True, header_style="bold", pad_edge=True)
    for c in columns:
        t.add_column(c, no_wrap=True)
    for r in rows:
        # Text, not str: a cell is data, never rich markup ("[red]" is shown as typed)
        t.add_row(*[Text("" if v is None else safe(str(v))) for v in r])
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
