"""Metadata-index commands: create-metadata-index, list-metadata-index, delete-metadata-index."""

from __future__ import annotations

from enum import Enum

import typer

from vzcli import render
from vzcli.cli import State, app, complete_index, handled

NAME_HELP = "The name of the Vectorize index."
PROP_HELP = "The name of the metadata property to index (a dotted path reads nested objects)."


class MetaType(str, Enum):
    string = "string"
    number = "number"
    boolean = "boolean"


@app.command("create-metadata-index", rich_help_panel="Metadata indexes")
@handled
def create_metadata_index(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    property_name: str = typer.Option(..., "--property-name", "--propertyName", help=PROP_HELP),
    type_: MetaType = typer.Option(..., "--type", help="The type of metadata property to index."),
    backfill: bool = typer.Option(False, "--backfill",
                                  help="Also index vectors written before this metadata index (Cloudflare cannot)."),
    if_not_exists: bool = typer.Option(False, "--if-not-exists",
                                       help="Succeed if the same metadata index already exists."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON."),
) -> None:
    """Enable metadata filtering on the specified property."""
    res = State.backend().create_metadata_index(name, property_name, type_.value, backfill=backfill,
                                                if_not_exists=if_not_exists, warn=render.warn)
    if json_:
        render.json_out({"mutationId": res["mutationId"]})
    elif res["mutationId"] is None:
        render.say(f"Metadata index on '{property_name}' already exists; nothing to do.")
    else:
        render.say("✅ Successfully enqueued metadata index creation request. Mutation changeset identifier: "
                   f"{res['mutationId']}.")


@app.command("list-metadata-index", rich_help_panel="Metadata indexes")
@handled
def list_metadata_index(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON."),
) -> None:
    """List metadata properties on which metadata filtering is enabled."""
    items = State.backend().list_metadata_indexes(name)["metadataIndexes"]
    if json_:
        render.json_out(items)
        return
    if not items:
        render.hint(f"You haven't created any metadata indexes on '{name}'.\n"
                    f"Use 'vz create-metadata-index {name} --property-name P --type string' to create one.")
        return
    render.say("📋 Fetching metadata indexes...")
    render.table(["propertyName", "type"], [[i["propertyName"], i["indexType"]] for i in items])


@app.command("delete-metadata-index", rich_help_panel="Metadata indexes")
@handled
def delete_metadata_index(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    property_name: str = typer.Option(..., "--property-name", "--propertyName", help=PROP_HELP),
    if_exists: bool = typer.Option(False, "--if-exists", help="Succeed if there is no such metadata index."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON."),
) -> None:
    """Delete a metadata index (its property stops being filterable)."""
    res = State.backend().delete_metadata_index(name, property_name, if_exists=if_exists)
    if json_:
        render.json_out({"mutationId": res["mutationId"]})
    elif res["mutationId"] is None:
        render.say(f"No metadata index on '{property_name}'; nothing to delete.")
    else:
        render.say("✅ Successfully enqueued metadata index deletion request. Mutation changeset identifier: "
                   f"{res['mutationId']}.")
