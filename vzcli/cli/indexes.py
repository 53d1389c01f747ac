"""Index commands: create, delete, get, list, info, optimize."""

from __future__ import annotations

import sys
from enum import Enum

import typer

from vzcli import render
from vzcli.cli import State, app, complete_index, handled
from vzcli.limits import PRESETS

NAME_HELP = "The name of the Vectorize index."
JSON_HELP = "Return output as JSON."

Metric = Enum("Metric", {m: m for m in ("euclidean", "cosine", "dot-product")}, type=str)  # type: ignore[misc]
Preset = Enum("Preset", {p: p for p in PRESETS}, type=str)  # type: ignore[misc]


def _binding_snippet(name: str) -> str:
    return ('{\n  "vectorize": [\n    {\n      "binding": "VECTORIZE",\n'
            f'      "index_name": "{name}"\n    }}\n  ]\n}}')


@app.command(rich_help_panel="Indexes")
@handled
def create(
    name: str = typer.Argument(..., help="The name of the Vectorize index to create (must be unique)."),
    dimensions: int = typer.Option(None, help="The dimension size to configure this index for (1-1536), "
                                              "based on the output dimensions of your ML model."),
    metric: Metric = typer.Option(None, help="The distance metric to use for searching within the index."),
    preset: Preset = typer.Option(None, help="An embeddings model preset: sets dimensions and metric (cosine)."),
    description: str = typer.Option(None, help="An optional description for this index."),
    if_not_exists: bool = typer.Option(False, "--if-not-exists",
                                       help="Succeed if an index with the same configuration exists."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Create a Vectorize index."""
    if not json_ and preset is not None:
        render.say(f"Configuring index based for the embedding model {preset.value}.")
    if not json_:
        render.say(f"🚧 Creating index: '{name}'")
    idx = State.backend().create_index(name, dimensions=dimensions, metric=metric.value if metric else None,
                                       preset=preset.value if preset else None, description=description,
                                       if_not_exists=if_not_exists)
    if json_:
        render.json_out(idx)
        return
    render.say(f"✅ Successfully created a new Vectorize index: '{idx['name']}'")
    render.say("To access your new Vectorize Index in your Worker, add the following snippet to your "
               "configuration file:")
    render.say(_binding_snippet(idx["name"]))


@app.command(rich_help_panel="Indexes")
@handled
def delete(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    force: bool = typer.Option(False, "--force", "-y", help="Skip confirmation."),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed if the index does not exist."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete a Vectorize index and all its vectors (asks first on a terminal)."""
    if not json_:
        render.say(f"Deleting Vectorize index {name}")
    if not force and sys.stdin.isatty() and sys.stdout.isatty():
        if not render.confirm(f"OK to delete the index '{name}'?"):
            render.say("Deletion cancelled.")
            return
    deleted = State.backend().delete_index(name, if_exists=if_exists)
    if json_:
        render.json_out({"name": name, "deleted": deleted})
    elif deleted:
        render.say(f"✅ Deleted index {name}")
    else:
        render.say(f"Index {name} does not exist; nothing to delete.")


def _index_row(i: dict) -> list:
    return [i["name"], i["config"]["dimensions"], i["config"]["metric"], i.get("description") or "",
            i["created_on"], i["modified_on"]]


INDEX_COLUMNS = ["name", "dimensions", "metric", "description", "created", "modified"]


@app.command(rich_help_panel="Indexes")
@handled
def get(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Get a Vectorize index by name."""
    idx = State.backend().get_index(name)
    if json_:
        render.json_out(idx)
    else:
        render.table(INDEX_COLUMNS, [_index_row(idx)])


@app.command("list", rich_help_panel="Indexes")
@handled
def list_(json_: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List your Vectorize indexes."""
    items = State.backend().list_indexes()
    if json_:
        render.json_out(items)
        return
    if not items:
        render.hint("You haven't created any indexes in this store.\n"
                    "Use 'vz create <name> --dimensions N --metric cosine' to create one.")
        return
    render.say("📋 Listing Vectorize indexes...")
    render.table(INDEX_COLUMNS, [_index_row(i) for i in items])


@app.command(rich_help_panel="Indexes")
@handled
def info(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Get additional details about the index: vector count and the last processed mutation."""
    res = State.backend().info(name)
    if json_:
        render.json_out(res)
        return
    render.say("📋 Fetching index info...")
    render.table(["dimensions", "vectorCount", "processedUpToMutation", "processedUpToDatetime"],
                 [[res["dimensions"], res["vectorCount"], res.get("processedUpToMutation", ""),
                   res.get("processedUpToDatetime", "")]])


@app.command(rich_help_panel="Indexes")
@handled
def optimize(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Rebuild the index's HNSW file from SQLite: merges recent writes and drops tombstones."""
    res = State.backend().optimize(name)
    if json_:
        render.json_out(res)
    else:
        render.say(f"✅ Optimized index '{name}': {res['vectorCount']} vectors in the HNSW file "
                   f"({res['seconds']}s).")
