"""`vz dev-binding`: write the shim Worker that gives `wrangler dev` a local `env.VECTORIZE`."""

from __future__ import annotations

from pathlib import Path

import typer

from vzcli import devbinding, render
from vzcli.cli import State, app, handled

DEFAULT_URL = "http://127.0.0.1:8788"  # vz serve's default address


@app.command("dev-binding", rich_help_panel="Server")
@handled
def dev_binding(
    specs: list[str] = typer.Argument(..., metavar="BINDING=INDEX",
                                      help="One or more indexes to bind, each as BINDING=INDEX; a bare INDEX "
                                           "is bound as VECTORIZE."),
    out: Path = typer.Option(Path(devbinding.DEFAULT_SERVICE), "--out", "-o",
                             help="Directory to write the shim Worker into (wrangler.jsonc, shim.js)."),
    url: str = typer.Option(DEFAULT_URL, "--url", help="Address of `vz serve` (or its /client/v4 API root)."),
    api_token: str = typer.Option("", "--api-token", envvar="VZ_API_TOKEN", show_envvar=True,
                                  help="The token `vz serve --api-token` requires (stored in the shim's vars)."),
    account_id: str = typer.Option(devbinding.DEFAULT_ACCOUNT_ID, "--account-id",
                                   help="Account id put in the REST paths (vz serve accepts any)."),
    name: str = typer.Option(devbinding.DEFAULT_SERVICE, "--name",
                             help="The shim Worker's name: the `service` your bindings point at."),
    force: bool = typer.Option(False, "--force", help="Overwrite files in --out that vz did not write."),
    vitest: bool = typer.Option(False, "--vitest",
                                help="Also write vitest.mjs (Miniflare options for Cloudflare's vitest integration) "
                                     "and vitest-global-setup.mjs (starts vz serve for the test run)."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON: the files, bindings and snippets."),
) -> None:
    """Write a shim Worker that serves indexes of `vz serve` as Vectorize bindings in `wrangler dev`.

    Your Worker's code stays unchanged: in the config you run `wrangler dev` with, replace each
    `vectorize` binding by the printed service binding, start `vz serve`, then run
    `wrangler dev -c wrangler.jsonc -c OUT/wrangler.jsonc`. Run the command again to change the indexes.
    """
    bindings = devbinding.parse_bindings(specs)
    devbinding.check_service_name(name)
    info = devbinding.write_shim(out, bindings, service=name, url=url, account_id=account_id,
                                 token=api_token, force=force, vitest=vitest)
    if not vitest:  # with --vitest the indexes live in the test run's temporary store
        _warn_missing(bindings)
    if json_:
        render.json_out(info)
        return
    render.say(f"✅ Wrote the Vectorize shim Worker \"{name}\" to {out}/ (wrangler.jsonc, shim.js), "
               f"calling vz serve at {info['apiBase']}:")
    for b in bindings:
        render.say(f"   env.{b.binding} → index \"{b.index}\"")
    render.say("\nIn the config you run `wrangler dev` with, replace each `vectorize` binding of the same name by "
               "(wrangler.json / wrangler.jsonc):\n")
    render.say(_indent(info["snippets"]["json"]))
    render.say("\nor (wrangler.toml):\n")
    render.say(_indent(info["snippets"]["toml"]))
    render.say(f"\nThen run `vz serve` and, in another terminal:\n\n  {info['command']}")
    if vitest:
        render.say(f"\nFor vitest (@cloudflare/vitest-plugin), import vzMiniflare and vzGlobalSetup from "
                   f"{info['vitest']['module']} (docs/testing.md).")


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _warn_missing(bindings: list[devbinding.Binding]) -> None:
    """A hint, not an error: the index may be created later, or live in the store vz serve was given."""
    if State.remote:
        return
    try:
        from vzcli.local import LocalBackend
        from vzcli.store import Store

        names = {i["name"] for i in LocalBackend(Store(State.store)).list_indexes()}
    except Exception:  # a hint must never make the command fail
        return
    for index in sorted({b.index for b in bindings} - names):
        render.warn(f"There is no index \"{index}\" in this store yet: create it (vz create {index} ...) "
                    "before your Worker calls it.")
