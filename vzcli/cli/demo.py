"""`vz demo`: build an index from the shipped dataset and query it."""

from __future__ import annotations

import io

import orjson
import typer

from vzcli import render
from vzcli.cli import State, app, handled

DEMO_INDEX = "vz-demo"


@app.command(rich_help_panel="Getting started")
@handled
def demo(
    name: str = typer.Option(DEMO_INDEX, "--name", help="Name of the demo index (re-created each run)."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON: the queries and their matches."),
) -> None:
    """Build an index from the shipped demo data (240 real sentence embeddings) and run example queries."""
    from importlib import resources  # not at import time: every vz command loads this module

    backend = State.backend()
    data = resources.files("vzcli.data")
    records = data.joinpath("demo.ndjson").read_bytes()
    queries = orjson.loads(data.joinpath("demo_queries.json").read_bytes())
    backend.delete_index(name, if_exists=True)
    backend.create_index(name, dimensions=384, metric="cosine",
                         description="vz demo: all-MiniLM-L6-v2 embeddings of 240 short texts")
    # Metadata indexes first: as on Cloudflare, only vectors written afterwards are filterable.
    backend.create_metadata_index(name, "category", "string")
    backend.create_metadata_index(name, "year", "number")
    res = backend.insert(name, io.BytesIO(records), source="demo.ndjson")
    if not json_:
        render.say(f"✅ Built index '{name}' from the shipped demo data: {res.count} vectors, 384 dimensions, cosine "
                   f"(store: {State.store or 'default'}).")
    out = []
    for q in queries:
        r = backend.query(name, vector=q["vector"], top_k=3, return_metadata="all", filter=q.get("filter"))
        hits = [{"id": m["id"], "score": round(m["score"], 4), "title": m["metadata"].get("title"),
                 "category": m["metadata"].get("category")} for m in r["matches"]]
        out.append({"query": q["text"], "filter": q.get("filter"), "matches": hits})
        if not json_:
            flt = f"  filter {orjson.dumps(q['filter']).decode()}" if q.get("filter") else ""
            render.say(f"\n🔎 {q['text']}{flt}")
            render.table(["id", "score", "title", "category"],
                         [[h["id"], f"{h['score']:.4f}", h["title"], h["category"]] for h in hits])
    if json_:
        render.json_out({"index": name, "count": res.count, "queries": out})
    else:
        render.say(f"\nTry it yourself:  vz query {name} --vector-id doc-001 --top-k 3 --return-metadata all")
