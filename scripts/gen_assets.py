#!/usr/bin/env python3
"""Write the generated files that ship in the wheel: completions/ and man/vz.1.

    python scripts/gen_assets.py           # regenerate them
    python scripts/gen_assets.py --check   # exit 1 (with a diff) when a committed file is stale

Both come from the app itself (vzcli/cli/shell.py and vzcli/manpage.py), so run this after adding
or changing a command, an option or its help; tests/test_assets.py fails until you do.
"""

from __future__ import annotations

import os
import sys

# Pin everything that could make the output depend on this machine, before the app is imported.
os.environ["TERMINAL_WIDTH"] = "80"
os.environ["_TYPER_FORCE_DISABLE_TERMINAL"] = "1"
os.environ["NO_COLOR"] = "1"
for _var in list(os.environ):
    if _var.startswith(("VZ_", "CLOUDFLARE_", "_TYPER_COMPLETE")):
        del os.environ[_var]

import argparse  # noqa: E402
import difflib  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # generate from this checkout even when vz is installed elsewhere

COMMAND = "python scripts/gen_assets.py"
SHELL_FILES = {"bash": "completions/bash/vz", "zsh": "completions/zsh/_vz", "fish": "completions/fish/vz.fish"}
MAN_FILE = "man/vz.1"


def generate() -> dict[str, str]:
    """Every generated file, as {path relative to the repository: content}."""
    import typer

    from vzcli.cli import app
    from vzcli.cli.shell import completion_script
    from vzcli.manpage import render

    files = {path: completion_script(shell) for shell, path in SHELL_FILES.items()}
    files[MAN_FILE] = render(typer.main.get_command(app))
    return files


def stale(files: dict[str, str], root: Path = ROOT) -> dict[str, str]:
    """The files whose committed copy differs, each with a unified diff (committed -> generated)."""
    out = {}
    for rel, text in files.items():
        path = root / rel
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old != text:
            out[rel] = "".join(difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                                    f"{rel} (committed)", f"{rel} (generated)"))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="write or check under this directory")
    args = parser.parse_args(argv)
    files = generate()
    diffs = stale(files, args.root)
    if args.check:
        for rel, diff in diffs.items():
            sys.stdout.write(diff)
            print(f"{rel} is out of date with the app: run `{COMMAND}`", file=sys.stderr)
        return 1 if diffs else 0
    for rel in diffs:
        path = args.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8")
        print(f"wrote {rel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
