"""The generated files (completions/, man/vz.1) match the app, and work in real shells and man."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vzcli.cli import app
from vzcli.cli.shell import completion_script
from vzcli.manpage import PAGINATION_LOOP

ROOT = Path(__file__).resolve().parent.parent
GEN = [sys.executable, str(ROOT / "scripts" / "gen_assets.py")]
REGENERATE = "python scripts/gen_assets.py"
SHELL_FILES = {"bash": "completions/bash/vz", "zsh": "completions/zsh/_vz", "fish": "completions/fish/vz.fish"}
VENV_BIN = str(Path(sys.executable).parent)  # where the `vz` console script of this environment lives


def shell_env(store: Path) -> dict[str, str]:
    """The environment a real shell gets: this environment's `vz` first on PATH, the test's store."""
    assert (Path(VENV_BIN) / "vz").exists(), f"no vz console script in {VENV_BIN}: pip install -e ."
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_VZ", "_TYPER", "VZ_"))}
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["VZ_STORE"] = str(store)
    return env


def test_committed_files_match_the_app() -> None:
    r = subprocess.run([*GEN, "--check"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (
        f"generated files are out of date: run `{REGENERATE}` and commit the result\n{r.stderr}{r.stdout}")


def test_check_mode_names_the_regenerate_command_and_write_mode_fixes_it(tmp_path: Path) -> None:
    r = subprocess.run([*GEN, "--check", "--root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert f"completions/bash/vz is out of date with the app: run `{REGENERATE}`" in r.stderr
    assert f"man/vz.1 is out of date with the app: run `{REGENERATE}`" in r.stderr
    assert "+++ man/vz.1 (generated)" in r.stdout  # the diff shows what changed
    w = subprocess.run([*GEN, "--root", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert w.returncode == 0, w.stderr
    for rel in [*SHELL_FILES.values(), "man/vz.1"]:
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), rel
    again = subprocess.run([*GEN, "--check", "--root", str(tmp_path)], capture_output=True, text=True,
                           timeout=120)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")


@pytest.mark.parametrize("shell", sorted(SHELL_FILES))
def test_completion_command_prints_the_committed_script(vz: Callable, shell: str) -> None:
    r = vz("completion", shell)
    assert r.exit_code == 0
    assert r.stdout == (ROOT / SHELL_FILES[shell]).read_text()


def test_completion_rejects_an_unknown_shell(vz: Callable) -> None:
    r = vz("completion", "powershell")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "'powershell' is not one of 'bash', 'zsh', 'fish'" in r.stderr


@pytest.mark.parametrize("shell", sorted(SHELL_FILES))
def test_scripts_are_typers_runtime_shims(shell: str) -> None:
    """The scripts are what `_VZ_COMPLETE=source_SHELL vz` prints (zsh: plus autoload support)."""
    from typer.completion import completion_init

    completion_init()  # what vzcli.cli.shell does on import in a process started with _VZ_COMPLETE
    r = CliRunner().invoke(app, [], prog_name="vz", env={"_VZ_COMPLETE": f"source_{shell}"})
    assert r.exit_code == 0, r.stderr
    runtime = r.stdout.strip()
    ours = completion_script(shell)
    if shell == "zsh":
        function = runtime[: runtime.rindex("compdef _vz_completion vz")].strip()
        assert ours.startswith(function + "\n\n")
        assert "_vz_completion \"$@\"" in ours and "  compdef _vz_completion vz\n" in ours
    else:
        assert ours == runtime + "\n"


def test_man_command_prints_the_committed_page(vz: Callable) -> None:
    r = vz("man")
    assert r.exit_code == 0
    assert r.stdout == (ROOT / "man" / "vz.1").read_text()


# -- real shells ---------------------------------------------------------------------------------

def bash_complete(words: list[str], store: Path) -> list[str]:
    """Source the committed bash script, find the function `complete -p vz` names, call it with
    COMP_WORDS/COMP_CWORD set (the last word is the one being completed), print COMPREPLY."""
    script = f"""
set -e
source {ROOT / SHELL_FILES['bash']}
spec=$(complete -p vz)
fn=$(sed -E 's/.* -F ([^ ]+) .*/\\1/' <<<"$spec")
COMP_WORDS=({' '.join(f"'{w}'" for w in words)})
COMP_CWORD={len(words) - 1}
"$fn" vz
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                       env=shell_env(store), timeout=60)
    assert r.returncode == 0, r.stderr
    return [x for x in r.stdout.splitlines() if x]


@pytest.fixture
def three_indexes(vz: Callable, store: Path) -> Path:
    for name in ("docs", "docs-2", "other"):
        assert vz("create", name, "--dimensions", "3", "--metric", "cosine").exit_code == 0
    return store


def test_bash_completes_commands(store: Path) -> None:
    assert bash_complete(["vz", "cre"], store) == ["create", "create-metadata-index"]


def test_bash_completes_options(store: Path) -> None:
    assert bash_complete(["vz", "query", "docs", "--top"], store) == ["--top-k", "--topK"]


def test_bash_completes_index_names_from_the_store(three_indexes: Path) -> None:
    assert bash_complete(["vz", "query", "do"], three_indexes) == ["docs", "docs-2"]
    assert bash_complete(["vz", "info", ""], three_indexes) == ["docs", "docs-2", "other"]


def test_bash_completes_index_names_from_the_store_option(vz: Callable, three_indexes: Path,
                                                          tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    r = vz("--store", str(other), "create", "elsewhere", "--dimensions", "3", "--metric", "cosine")
    assert r.exit_code == 0
    assert bash_complete(["vz", "--store", str(other), "delete", ""], three_indexes) == ["elsewhere"]


def test_bash_completion_on_a_missing_store_offers_nothing(tmp_path: Path) -> None:
    assert bash_complete(["vz", "get", ""], tmp_path / "nowhere") == []
    assert not (tmp_path / "nowhere").exists()  # completing never creates a store


def needs(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


def test_fish_completes_commands_and_index_names(three_indexes: Path) -> None:
    fish = needs("fish")
    script = f"source {ROOT / SHELL_FILES['fish']}; complete -C 'vz cre'; echo ---; complete -C 'vz get do'"
    r = subprocess.run([fish, "--no-config", "-c", script], capture_output=True, text=True,
                       env=shell_env(three_indexes), timeout=60)
    assert r.returncode == 0, r.stderr
    commands, names = r.stdout.split("---\n")
    assert [x.split("\t")[0] for x in commands.splitlines()] == ["create", "create-metadata-index"]
    assert [x.split("\t")[0] for x in names.splitlines()] == ["docs", "docs-2"]


def test_zsh_script_completes_when_autoloaded_and_registers_when_sourced(three_indexes: Path) -> None:
    zsh = needs("zsh")
    # compinit autoloads _vz from $fpath; stand in for the completion builtins to see what it offers.
    autoload = f"""
fpath=({ROOT / 'completions' / 'zsh'} $fpath)
autoload -Uz _vz
_arguments() {{ print -r -- "$@" }}
words=(vz get do); CURRENT=3
_vz
"""
    r = subprocess.run([zsh, "-f", "-c", autoload], capture_output=True, text=True,
                       env=shell_env(three_indexes), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == '*: :(("docs" "docs-2"))\n'
    sourced = f"compdef() {{ print -r -- compdef $@ }}; source {ROOT / SHELL_FILES['zsh']}"
    r = subprocess.run([zsh, "-f", "-c", sourced], capture_output=True, text=True,
                       env=shell_env(three_indexes), timeout=60)
    assert (r.returncode, r.stdout) == (0, "compdef _vz_completion vz\n"), r.stderr


# -- the man page ----------------------------------------------------------------------------------

def test_man_page_renders_without_warnings() -> None:
    man = needs("man")
    env = {**os.environ, "MANWIDTH": "80", "LANG": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    r = subprocess.run([man, "--warnings=w", "-l", str(ROOT / "man" / "vz.1")], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0
    assert r.stderr == ""
    text = re.sub(r".\x08", "", r.stdout)  # drop overstrike bold/underline, if any
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "GLOBAL OPTIONS", "COMMANDS", "ENVIRONMENT",
                    "EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    assert "vz - a local, offline Cloudflare Vectorize" in text
    assert "--top-k, --topK <int>" in text


def test_man_page_is_ascii_roff() -> None:
    page = (ROOT / "man" / "vz.1").read_bytes()
    assert page.isascii()
    assert page.startswith(b'.TH VZ 1 "')


def test_pagination_example_pages_through_every_id(vz: Callable, store: Path) -> None:
    """The man page's cursor loop (bash + jq) prints every id once, across several pages."""
    jq = needs("jq")
    assert jq
    ids = [f"v{i:04d}" for i in range(2345)]
    ndjson = "".join(f'{{"id": "{i}", "values": [1, {n % 7}, 2]}}\n' for n, i in enumerate(ids))
    assert vz("create", "docs", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    assert vz("insert", "docs", "--file", "-", input=ndjson).exit_code == 0
    script = "set -euo pipefail\n" + PAGINATION_LOOP
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                       env=shell_env(store), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == sorted(ids)


def test_the_wheel_ships_every_generated_file_where_shells_and_man_look() -> None:
    import tomllib

    shared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "shared-data"]
    assert shared == {
        "completions/bash/vz": "share/bash-completion/completions/vz",
        "completions/zsh/_vz": "share/zsh/site-functions/_vz",
        "completions/fish/vz.fish": "share/fish/vendor_completions.d/vz.fish",
        "man/vz.1": "share/man/man1/vz.1",
    }
    assert all((ROOT / src).stat().st_size > 0 for src in shared)
