"""Every command is documented: help text in the code, a section in the man page, a row in the README;
every environment variable vz reads and every exit code is in the man page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from vzcli.cli import app
from vzcli.errors import ExitCode
from vzcli.manpage import ENVIRONMENT, EXIT_STATUS, esc, leaves, option_envvars

ROOT = Path(__file__).resolve().parent.parent
CLI = typer.main.get_command(app)
LEAVES = {" ".join(leaf.path): leaf for leaf in leaves(CLI)}
MAN = (ROOT / "man" / "vz.1").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
REGENERATE = "python scripts/gen_assets.py"


def test_the_tree_has_the_wrangler_commands() -> None:
    """Guards the walk itself: if it found nothing, every parametrised test below would pass vacuously."""
    assert {"create", "delete", "get", "list", "info", "insert", "upsert", "query", "get-vectors",
            "delete-vectors", "list-vectors", "create-metadata-index", "list-metadata-index",
            "delete-metadata-index", "completion", "man"} <= LEAVES.keys()


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_command_has_help_text(command: str) -> None:
    leaf = LEAVES[command]
    assert (leaf.command.help or "").strip(), f"`vz {command}` has no docstring/help"
    for p in leaf.command.get_params(leaf.ctx):
        record = p.get_help_record(leaf.ctx)
        assert record is not None and record[1].strip(), f"`vz {command}`: {p.name} has no help text"


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_command_is_in_the_man_page(command: str) -> None:
    leaf = LEAVES[command]
    section = f'.SS "{esc(command)}"\n'
    assert section in MAN, f"man/vz.1 has no section for `vz {command}`: run `{REGENERATE}`"
    body = MAN.split(section, 1)[1].split("\n.SS ", 1)[0].split("\n.SH ", 1)[0]
    for p in leaf.command.get_params(leaf.ctx):
        for opt in [*p.opts, *p.secondary_opts] if p.param_type_name == "option" and p.name != "help" else []:
            assert rf"\fB{esc(opt)}\fR" in body, f"man/vz.1: `vz {command}` lacks {opt}: run `{REGENERATE}`"


@pytest.mark.parametrize("command", sorted(LEAVES))
def test_command_is_in_the_readme(command: str) -> None:
    assert f"`vz {command}" in README, (
        f"README.md does not mention `vz {command}`: add a row for it to the Commands table")


def _env_reads() -> set[str]:
    """Environment variable names the package reads: os.environ.get("X"), getenv("X"), env.get("X")."""
    found: set[str] = set()
    for path in (ROOT / "vzcli").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        found.update(re.findall(r"""(?:\.get|getenv)\(\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']""", text))
        found.update(re.findall(r"""environ\[\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']\s*\]""", text))
        found.update(re.findall(r"""_whole\(\s*env,\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']""", text))  # envconf
    # Terminal sizing knobs (read by the renderer only for tables) and variables vz sets for its
    # own children are not part of the interface.
    return found - {"TERMINAL_WIDTH", "OMP_NUM_THREADS"}


def test_every_environment_variable_is_documented() -> None:
    reads = _env_reads()
    assert {"VZ_STORE", "VZ_LOCK_TIMEOUT", "VZ_MERGE_THRESHOLD", "VZ_DEBUG", "CLOUDFLARE_API_TOKEN"} <= reads
    missing = sorted((reads | option_envvars(CLI)) - ENVIRONMENT.keys())
    assert missing == [], f"describe these in vzcli/manpage.py ENVIRONMENT, then run `{REGENERATE}`"
    env_section = MAN.split("\n.SH ENVIRONMENT\n", 1)[1].split("\n.SH ", 1)[0]
    for name in ENVIRONMENT:
        assert f".TP\n\\fB{esc(name)}\\fR\n" in env_section, name


def test_every_exit_code_is_documented() -> None:
    assert set(EXIT_STATUS) == set(ExitCode)
    section = MAN.split("\n.SH EXIT STATUS\n", 1)[1].split("\n.SH ", 1)[0]
    assert re.findall(r"^\\fB(\d+)\\fR$", section, re.M) == [str(int(c)) for c in ExitCode]
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \|", README, re.M), f"README.md's exit code table lacks {int(code)}"


def test_files_and_examples_are_in_the_man_page() -> None:
    assert r"\fI./.vz/catalog.sqlite3\fR" in MAN
    assert r"\fI./.vz/indexes/<name>/ann\-*.usearch\fR" in MAN
    examples = MAN.split("\n.SH EXAMPLES\n", 1)[1]
    assert r"jq \-r \(aq.nextCursor // empty\(aq" in examples
