"""The `vz` command line: a thin skin over the backend interface (parse, call one method, render)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

from vzcli import __version__, render
from vzcli.errors import ExitCode, VzError

F = TypeVar("F", bound=Callable[..., Any])

HELP = """vz: a local, offline Cloudflare Vectorize.

Wrangler's `vectorize` commands, flags, JSON shapes, limits and error codes, over a store on disk
(SQLite + usearch HNSW). Store: --store, else $VZ_STORE, else ./.vz.
"""

app = typer.Typer(name="vz", help=HELP, no_args_is_help=True, add_completion=False,
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
    remote: bool = typer.Option(False, "--remote", envvar="VZ_REMOTE", show_envvar=True,
                                help="Run against Cloudflare's REST API instead of the local store "
                                     "(CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_API_TOKEN, CLOUDFLARE_API_BASE_URL)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    State.store = store
    State.remote = remote
    render.set_quiet(quiet)


def handled(fn: F) -> F:
    """Translate core errors into a message on stderr and an exit code, once, for every command."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VzError as e:
            render.error(f"{e.message} [code: {e.code}]")
            raise typer.Exit(int(e.exit_code)) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            render.error("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except typer.Exit:
            raise
        except OSError as e:
            render.error(f"{e.strerror or e}" + (f": {e.filename}" if getattr(e, "filename", None) else ""))
            raise typer.Exit(int(ExitCode.FAILURE)) from None
        except Exception as e:  # a bug: no traceback for users, but say how to get one
            if os.environ.get("VZ_DEBUG"):
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


def usage(msg: str) -> typer.Exit:
    """Report a usage error (exit 2) from inside a command, with the code every usage error carries."""
    from vzcli.errors import UsageError

    render.error(f"{msg} [code: {UsageError.code}]")
    return typer.Exit(int(ExitCode.USAGE))


def complete_index(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: index names from the store."""
    try:
        from vzcli.local import LocalBackend
        from vzcli.store import Store

        root = ctx.find_root()
        store = root.params.get("store") or os.environ.get("VZ_STORE")
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
