"""Vector commands: insert, upsert, query, get-vectors, delete-vectors, list-vectors, export."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import typer

from vzcli import limits, render
from vzcli.cli import State, app, complete_index, handled, usage
from vzcli.errors import ExitCode, UsageError, VzError

NAME_HELP = "The name of the Vectorize index."
JSON_HELP = "Return output as JSON."
GREEDY = {"allow_extra_args": True, "ignore_unknown_options": True}


class Unparsable(str, Enum):
    error = "error"
    discard = "discard"


class ReturnMetadata(str, Enum):
    all = "all"
    indexed = "indexed"
    none = "none"


class _Counting(io.RawIOBase):
    """Counts bytes read, for the progress bar."""

    def __init__(self, raw: BinaryIO, progress: render.Progress) -> None:
        self.raw, self.progress, self.n = raw, progress, 0

    def readable(self) -> bool:
        return True

    # seekable when the file is: the write estimates the records to come from the input's size
    # (`writes._BulkBuild.expected`); seeking reads nothing, so the count stays right
    def seekable(self) -> bool:
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self.n += n
        self.progress.update(self.n)
        return n


def open_input(path: str) -> tuple[BinaryIO, str, int | None]:
    """(binary stream, name for messages, size if known) for a path or '-' (stdin)."""
    if path == "-":
        # a 1 MiB buffer: with the default 8 KiB, reading a line longer than that (a 768-d vector
        # is ~10 KB of JSON) costs five times as much
        try:
            return open(sys.stdin.fileno(), "rb", buffering=1 << 20, closefd=False), "<stdin>", None  # noqa: SIM115
        except (AttributeError, OSError, ValueError):  # a stdin without a descriptor (tests, embedding)
            return sys.stdin.buffer, "<stdin>", None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"Cannot read {path}: it is a directory; give an NDJSON file or - for stdin", code=40023)
    try:
        f = open(p, "rb")  # noqa: SIM115 (closed by the caller)
    except OSError as e:
        raise UsageError(f"Cannot read {path}: {e.strerror}", code=40023, exit_code=ExitCode.FAILURE) from None
    return f, path, os.fstat(f.fileno()).st_size


def _write(name: str, file: str, batch_size: int, unparsable: Unparsable, json_: bool, upsert: bool) -> None:
    from vzcli.writes import interrupt_guard

    with interrupt_guard():  # Ctrl-C: exit 130 only while nothing is written; a committed write is reported
        _write_and_report(name, file, batch_size, unparsable, json_, upsert)


def _write_and_report(name: str, file: str, batch_size: int, unparsable: Unparsable, json_: bool,
                      upsert: bool) -> None:
    if not 1 <= batch_size <= limits.BATCH_MAX:
        raise usage(f"--batch-size must be between 1 and {limits.BATCH_MAX}, got {batch_size}")
    stream, source, size = open_input(file)
    backend = State.backend()
    verb = "upsertion" if upsert else "insertion"
    try:
        with render.Progress(size, f"{'Upserting' if upsert else 'Inserting'} {source}") as progress:
            reader = io.BufferedReader(_Counting(stream, progress), 1 << 20) if size else stream
            fn = backend.upsert if upsert else backend.insert
            res = fn(name, reader, source=source, discard=unparsable is Unparsable.discard)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()  # a file, or stdin's own buffered reader (its descriptor stays open)
    if res.discarded:
        shown = "\n".join("  " + m for m in res.errors[:5])
        more = f"\n  … and {res.discarded - 5} more" if res.discarded > 5 else ""
        render.warn(f"discarded {res.discarded} unparsable line(s):\n{shown}{more}")
    for note in res.notes:
        render.warn(note)
    if json_:
        out: dict[str, Any] = {"index": name, "count": res.count, "mutationId": res.mutation_id}
        if unparsable is Unparsable.discard:
            out["discarded"] = res.discarded
        render.json_out(out)
        return
    render.say(f"✨ Enqueued {res.count} vectors into index '{name}' for {verb}. "
               f"Mutation changeset identifier: {res.mutation_id}")
    render.say(f"✅ Successfully enqueued {res.count} vectors into index '{name}' for {verb}.")
    if not State.remote:
        if upsert:
            render.say(f"   {res.inserted} new, {res.replaced} replaced in full, {res.unchanged} unchanged.")
        else:
            render.say(f"   {res.inserted} inserted, {res.skipped} skipped (id already present, kept unchanged).")


FILE_HELP = "A file of line-separated JSON (NDJSON) vector objects, or - for stdin."
UNPARSABLE_HELP = "What to do with a bad line: fail the whole command (error) or skip it (discard)."


@app.command(rich_help_panel="Vectors")
@handled
def insert(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    file: str = typer.Option(..., "--file", help=FILE_HELP),
    batch_size: int = typer.Option(limits.INSERT_BATCH_DEFAULT, "--batch-size", "--batchSize",
                                   help="Records per batch (1-5000); vz applies the whole file as one mutation."),
    unparsable: Unparsable = typer.Option(Unparsable.error, "--unparsable-behavior", help=UNPARSABLE_HELP),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Insert vectors into a Vectorize index (existing ids are kept unchanged)."""
    _write(name, file, batch_size, unparsable, json_, upsert=False)


@app.command(rich_help_panel="Vectors")
@handled
def upsert(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    file: str = typer.Option(..., "--file", help=FILE_HELP),
    batch_size: int = typer.Option(limits.UPSERT_BATCH_DEFAULT, "--batch-size", "--batchSize",
                                   help="Records per batch (1-5000); vz applies the whole file as one mutation."),
    unparsable: Unparsable = typer.Option(Unparsable.error, "--unparsable-behavior", help=UNPARSABLE_HELP),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Upsert vectors into a Vectorize index (an existing id is replaced in full)."""
    _write(name, file, batch_size, unparsable, json_, upsert=True)


def _numbers(tokens: list[str]) -> list[float]:
    """--vector 1 2 3, --vector 1,2,3 or --vector '[1, 2, 3]'."""
    import orjson

    out: list[float] = []
    for tok in tokens:
        t = tok.strip()
        if t.startswith("["):
            try:
                arr = orjson.loads(t)
            except orjson.JSONDecodeError:
                raise usage(f"--vector: {t!r} is not a JSON array of numbers") from None
            if not isinstance(arr, list):
                raise usage("--vector: expected a JSON array of numbers")
            for x in arr:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise usage(f"--vector: {x!r} is not a number")
                out.append(float(x))
            continue
        for part in t.split(","):
            if not part:
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise usage(f"--vector: {part!r} is not a number") from None
    return out


def _extras(ctx: typer.Context, flag: str, given: bool) -> list[str]:
    if ctx.args and not given:
        raise usage(f"unexpected argument(s): {' '.join(ctx.args)}")
    return list(ctx.args)


def _read_vector_file(path: str) -> list[float]:
    import orjson

    stream, source, _ = open_input(path)
    try:
        data = stream.read()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()  # a file, or stdin's own buffered reader (its descriptor stays open)
    try:
        arr = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise UsageError(f"{source}: not a JSON array of numbers") from None
    if not isinstance(arr, list):
        raise UsageError(f"{source}: expected a JSON array of numbers like [0.1, 0.2]")
    return arr


@app.command(context_settings=GREEDY, rich_help_panel="Vectors")
@handled
def query(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    vector: str = typer.Option(None, "--vector", help="Vector to query, as space-separated numbers: --vector 1 2 3."),
    vector_id: str = typer.Option(None, "--vector-id", "--vectorId",
                                  help="Identifier of a vector in the index to query with."),
    vector_file: str = typer.Option(None, "--vector-file", help="A JSON array of numbers to query with, or - for stdin."),
    top_k: int = typer.Option(limits.TOPK_DEFAULT, "--top-k", "--topK",
                              help="The number of results to return (max 100; 50 with values or all metadata)."),
    return_values: bool = typer.Option(False, "--return-values", "--returnValues",
                                       help="Include the vector values in the results."),
    return_metadata: ReturnMetadata = typer.Option(ReturnMetadata.none, "--return-metadata", "--returnMetadata",
                                                   help="Include metadata: all, indexed (only indexed properties) or none."),
    namespace: str = typer.Option(None, "--namespace", help="Search only this namespace."),
    filter_: str = typer.Option(None, "--filter", help='A metadata filter as JSON, e.g. \'{"genre": "drama", "year": {"$gte": 2000}}\'.'),
    exact: bool = typer.Option(False, "--exact", help="Exhaustive search instead of HNSW."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON (the output is always JSON)."),
) -> None:
    """Query a Vectorize index for the nearest neighbours of a vector (prints {count, matches} JSON)."""
    extra = _extras(ctx, "--vector", vector is not None)
    sources = sum(x is not None for x in (vector, vector_id, vector_file))
    if sources != 1:
        raise usage("Give exactly one of --vector, --vector-id or --vector-file.")
    vec: list[float] | None = None
    if vector is not None:
        vec = _numbers([vector, *extra])
    elif vector_file is not None:
        vec = _read_vector_file(vector_file)
    flt: Any = None
    if filter_ is not None:
        from vzcli.errors import InvalidFilter
        from vzcli.filters import load_filter_json

        flt = load_filter_json(filter_)
        if flt is None:  # the backend reads None as "no filter"; `--filter null` is not that
            raise InvalidFilter("filter must be a non-empty JSON object, e.g. --filter '{\"genre\": \"drama\"}'")
    res = State.backend().query(name, vector=vec, vector_id=vector_id, top_k=top_k, return_values=return_values,
                                return_metadata=return_metadata.value, namespace=namespace, filter=flt,
                                exact=exact, warn=render.warn)
    render.json_out(res, human=not json_)
    if res["count"] == 0 and not json_:
        render.hint("Could not find any relevant vectors")


def _ids(ctx: typer.Context, ids: str | None, ids_file: str | None) -> list[str]:
    extra = _extras(ctx, "--ids", ids is not None)
    if (ids is None) == (ids_file is None):
        raise usage("Give vector ids with --ids a b c, or --ids-file PATH (one id a line, - for stdin).")
    if ids is not None:
        return [ids, *extra]
    stream, source, _ = open_input(ids_file or "-")
    try:
        data = stream.read()
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()  # a file, or stdin's own buffered reader (its descriptor stays open)
    return read_ids(data, source)


def read_ids(data: bytes, source: str) -> list[str]:
    """Ids from an --ids-file, verbatim: one a line, only the terminator (\\n or \\r\\n) removed.

    Nothing else is stripped or repaired: spaces belong to the id, and a line that is not UTF-8 or
    not a valid id (a blank line is an empty id) is an error naming file:line, so a command never
    acts on an id the file does not spell out.
    """
    from vzcli.records import check_id

    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # the final line's terminator ends the last id; it does not start another
    if not lines:
        raise usage(f"{source}: no ids found (one id a line)")
    out: list[str] = []
    for n, line in enumerate(lines, 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            vid = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{source}:{n}: not valid UTF-8 (byte {e.start + 1} of the line); an id file "
                             "must be UTF-8 text, one id a line", code=40008) from None
        try:
            check_id(vid)
        except VzError as e:
            hint = " (a blank line; remove it)" if not vid else ""
            raise UsageError(f"{source}:{n}: {e.message}{hint}", code=e.code) from None
        out.append(vid)
    return out


@app.command("get-vectors", context_settings=GREEDY, rich_help_panel="Vectors")
@handled
def get_vectors(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    ids: str = typer.Option(None, "--ids", help="Vector identifiers to fetch: --ids a b c."),
    ids_file: str = typer.Option(None, "--ids-file", help="A file of ids, one a line, or - for stdin."),
    json_: bool = typer.Option(False, "--json", help="Return output as JSON (the output is always JSON)."),
) -> None:
    """Get vectors by id (a JSON array; unknown ids are left out)."""
    res = State.backend().get_by_ids(name, _ids(ctx, ids, ids_file))
    render.json_out(res, human=not json_)
    if not res and not json_:
        render.hint("The index does not contain vectors corresponding to the provided identifiers")


@app.command("delete-vectors", context_settings=GREEDY, rich_help_panel="Vectors")
@handled
def delete_vectors(
    ctx: typer.Context,
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    ids: str = typer.Option(None, "--ids", help="Vector identifiers to delete: --ids a b c."),
    ids_file: str = typer.Option(None, "--ids-file", help="A file of ids, one a line, or - for stdin."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete vectors by id (unknown ids are ignored)."""
    id_list = _ids(ctx, ids, ids_file)
    res = State.backend().delete_by_ids(name, id_list)
    if json_:
        render.json_out({"index": name, "count": res.count, "mutationId": res.mutation_id})
        return
    render.say(f"✅ Successfully enqueued {res.count} vectors into index '{name}' for deletion. "
               f"Mutation changeset identifier: {res.mutation_id}.")


@app.command("list-vectors", rich_help_panel="Vectors")
@handled
def list_vectors(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    count: int = typer.Option(None, "--count", help="Maximum number of vectors to return (1-1000).",
                              show_default="100"),
    cursor: str = typer.Option(None, "--cursor", help="Cursor for pagination to get the next page of results."),
    all_: bool = typer.Option(False, "--all", help="Stream every id as NDJSON ({\"id\": ...} a line), no cursor loop."),
    json_: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List vector identifiers in a Vectorize index, in a stable order, page by page."""
    backend = State.backend()
    if count is not None and not 1 <= count <= limits.LIST_COUNT_MAX:
        # before --all, which would otherwise take a page size of 0 as the default
        raise UsageError(f"--count must be between 1 and {limits.LIST_COUNT_MAX}, got {count}", code=40051)
    if all_:
        if cursor is not None:
            raise usage("--all walks every page itself; it does not take --cursor")
        render.ndjson_out({"id": i} for i in backend.iter_ids(name, page=count or limits.LIST_COUNT_MAX))
        return
    res = backend.list_vectors(name, count=count or limits.LIST_COUNT_DEFAULT, cursor=cursor)
    if json_:
        render.json_out(res)
        return
    if not res["vectors"]:
        render.hint("No vectors found in this index.")
        return
    render.say(f"📋 Listing vectors in index '{name}'...")
    render.table(["#", "Vector ID"], [[i + 1, v["id"]] for i, v in enumerate(res["vectors"])])
    render.say(f"\nShowing {res['count']} of {res['totalCount']} total vectors")
    if res["isTruncated"] and res.get("nextCursor"):
        render.say(f"\n💡 To get the next page, run:\n   vz list-vectors {name} --cursor {res['nextCursor']}")


@app.command(rich_help_panel="Vectors")
@handled
def export(
    name: str = typer.Argument(..., help=NAME_HELP, autocompletion=complete_index),
    namespace: str = typer.Option(None, "--namespace", help="Export only this namespace."),
    output: str = typer.Option("-", "--output", "-o", help="Where to write the NDJSON (- for stdout)."),
) -> None:
    """Export every vector as NDJSON ({id, values, namespace?, metadata}) that insert and upsert accept."""
    import orjson

    backend = State.backend()
    # a progress bar only on a terminal: its total costs an info call (one request in remote mode)
    total = backend.info(name)["vectorCount"] if sys.stderr.isatty() and not render.is_quiet() else None
    with render.Progress(total, f"Exporting {name}", min_total=10_000, unit="vectors") as progress:
        records = _counted(backend.export(name, namespace=namespace), progress)
        if output == "-":
            render.ndjson_out(records)
            return
        from vzcli.outfile import output as write_through

        n = 0
        with write_through(output) as f:
            for rec in records:
                f.write(orjson.dumps(rec) + b"\n")
                n += 1
    render.hint(f"Exported {n} vectors from '{name}' to {output}")


def _counted(records: Iterator[dict[str, Any]], progress: render.Progress) -> Iterator[dict[str, Any]]:
    n = 0
    for n, rec in enumerate(records, 1):
        yield rec
        if n % 1000 == 0:
            progress.update(n)
    progress.update(n)
