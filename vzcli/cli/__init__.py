"""The `vz` command line: a thin skin over the backend interface (parse, call one method, render)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from typer._click import exceptions as click  # typer ≥ 0.28 vendors click; its parse errors are these
from typer.core import TyperGroup

from vzcli import __version__, envconf, render
from vzcli.errors import ExitCode, UsageError, VzError

F = TypeVar("F", bound=Callable[..., Any])

HELP = """vz: a local, offline Cloudflare Vectorize.

Wrangler's `vectorize` commands, flags, JSON shapes, limits and error codes, over a store on disk
(SQLite + usearch HNSW). Store: --store, else $VZ_STORE, else ./.vz.
"""



class _Group(TyperGroup):
    """The root command: click's own parse errors get vz's error format too.

    A bad option value, an unknown or missing option or argument is reported like every other
    error (`✘ [ERROR] message [code: 40000]`, exit 2) as the last line on stderr, after the usage
    line and how to get help, as wrangler prints its usage before its error. Ctrl-C while the
    command line is parsed says "interrupted", as it does in a command (typer would exit 130 in
    silence).
    """

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _interrupted()

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            _interrupted()

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click.NoArgsIsHelpError as e:  # bare `vz`: the help, as before
            e.show()
            sys.exit(e.exit_code)
        except click.UsageError as e:
            if e.ctx is not None:
                help_opt = (e.ctx.help_option_names or ["--help"])[0]
                sys.stderr.write(f"{e.ctx.get_usage()}\nTry '{e.ctx.command_path} {help_opt}' for help.\n")
            render.error(f"{e.format_message()} [code: {UsageError.code}]")
            sys.exit(int(ExitCode.USAGE))
        except click.ClickException as e:
            render.error(f"{e.format_message()} [code: {VzError.code}]")
            sys.exit(e.exit_code)
        except typer.Abort:  # end of input at a prompt
            render.error(f"aborted [code: {VzError.code}]")
            sys.exit(int(ExitCode.FAILURE))
        sys.exit(rv if isinstance(rv, int) else 0)  # an int is the code of a typer.Exit


app = typer.Typer(name="vz", help=HELP, no_args_is_help=True, add_completion=False, cls=_Group,
                  context_settings={"help_option_names": ["-h", "--help"]}, rich_markup_mode=None,
                  pretty_exceptions_enable=False)


class State:
    store: Path | None = None
    remote: bool = False

    @classmethod
    def backend(cls) -> Any:
        if cls.remote:
            from vzcli.remote import RemoteBackend

            return RemoteBackend.from_env()
        from vzcli.local import LocalBackend
        from vzcli.store import Store

        return LocalBackend(Store(cls.store), resident=False)  # one command per process


def _version(value: bool) -> None:
    if value:
        print(f"vz {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    store: Path = typer.Option(None, "--store", envvar="VZ_STORE", show_envvar=True,
                               help="Store directory (created on first write).", show_default="./.vz"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Silence everything but errors."),
    remote: bool = typer.Option(False, "--remote",
                                help="Run against Cloudflare's REST API instead of the local store "
                                     "(CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL). "
                                     "[env var: VZ_REMOTE]"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    render.set_quiet(quiet)
    try:
        # every VZ_* variable, before any command can write: a bad one is a usage error naming it
        envconf.check_all()
    except VzError as e:
        raise failed(e) from None
    State.store = store
    State.remote = remote or envconf.remote()


def _interrupted() -> NoReturn:
    render.error("interrupted")
    raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def handled(fn: F) -> F:
    """Translate core errors into a message on stderr and an exit code, once, for every command."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VzError as e:
            raise failed(e) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            _interrupted()
        except typer.Exit:
            raise
        except OSError as e:
            render.error(f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
            raise typer.Exit(int(ExitCode.FAILURE)) from None
        except Exception as e:  # a bug: no traceback for users, but say how to get one
            if isinstance(e, ImportError) and isinstance(e.__cause__ or e.__context__, KeyboardInterrupt):
                _interrupted()  # Ctrl-C inside an extension's initialisation (pybind11: "initialization failed")
            if envconf.debug():
                raise
            render.error(f"internal error: {type(e).__name__}: {e} (set VZ_DEBUG=1 for a traceback)")
            raise typer.Exit(int(ExitCode.FAILURE)) from None

    return wrapper  # type: ignore[return-value]


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def failed(e: VzError) -> typer.Exit:
    """Report a core error on stderr (`✘ [ERROR] message [code: N]`); the Exit to raise for it."""
    render.error(f"{e.message} [code: {e.code}]")
    return typer.Exit(int(e.exit_code))


def usage(msg: str) -> typer.Exit:
    """Report a usage error (exit 2) from inside a command, with the code every usage error carries."""
    return failed(UsageError(msg))


def complete_index(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: index names from the store."""
    try:
        from vzcli.local import LocalBackend
        from vzcli.store import Store

        root = ctx.find_root()
        store = root.params.get("store") or envconf.store_dir()
        return [i["name"] for i in LocalBackend(Store(store)).list_indexes() if i["name"].startswith(incomplete)]
    except Exception:
        return []


from vzcli.cli import demo, devbinding, doctor, indexes, metadata, serve, shell, vectors  # noqa: E402  (registers the commands)

del demo, devbinding, doctor, indexes, metadata, serve, shell, vectors


def main() -> None:
    """Console entry point: click's own usage errors exit 2; nothing else leaves a traceback."""
    try:
        app(prog_name="vz")
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
