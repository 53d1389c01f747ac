"""`vz completion SHELL` and `vz man`: print the shell completion script or the man page.

The completion scripts are Typer's thin shims: they only call `vz` back with `_VZ_COMPLETE` set,
and the running program computes the candidates (commands, options, index names from the store).
So a script never goes stale when commands change. The committed copies in completions/ and
man/vz.1 are written by scripts/gen_assets.py from the functions below.
"""

from __future__ import annotations

import os
from enum import Enum

import typer

from vzcli.cli import app

PROG = "vz"
COMPLETE_VAR = "_VZ_COMPLETE"

if os.environ.get(COMPLETE_VAR):
    # A completion request from a shim. Typer registers its completion classes only when the app
    # adds --install-completion, which vz does not (`vz completion` replaces it); without them the
    # request fails with "Shell bash not supported". Only these requests pay for the import.
    from typer.completion import completion_init

    completion_init()


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


# Typer's zsh script only registers the function with `compdef`, which is right when sourced
# (`source <(vz completion zsh)`) but returns nothing on the first Tab when zsh autoloads the
# file as `_vz` from $fpath (where the wheel installs it). Do both, as click's own script does.
_ZSH_REGISTER = f"compdef _{PROG}_completion {PROG}"
_ZSH_DUAL = f"""\
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  # autoloaded from $fpath as _{PROG}: complete now
  _{PROG}_completion "$@"
else
  # sourced: register for later
  {_ZSH_REGISTER}
fi"""


def completion_script(shell: str) -> str:
    """The completion script for `shell` (bash, zsh or fish), ending with a newline."""
    from typer._completion_shared import get_completion_script  # what Typer's --show-completion uses

    script = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)
    if shell == Shell.zsh.value:
        if not script.rstrip().endswith(_ZSH_REGISTER):
            raise RuntimeError("Typer's zsh completion script changed shape: review vzcli/cli/shell.py")
        script = script.rstrip()[: -len(_ZSH_REGISTER)] + _ZSH_DUAL
    return script.rstrip() + "\n"


@app.command("completion")
def completion(
    shell: Shell = typer.Argument(..., help="The shell to print the script for: bash, zsh or fish.", show_choices=True),
) -> None:
    """Print the shell completion script (commands, options and index names).

    \b
    bash:  vz completion bash > ~/.local/share/bash-completion/completions/vz
    zsh:   vz completion zsh > "${fpath[1]}/_vz"    (or: source <(vz completion zsh))
    fish:  vz completion fish > ~/.config/fish/completions/vz.fish
    """
    typer.echo(completion_script(shell.value), nl=False)


@app.command("man")
def man(ctx: typer.Context) -> None:
    """Print the vz(1) man page (roff): vz man | man -l -"""
    from vzcli.manpage import render

    typer.echo(render(ctx.find_root().command), nl=False)
