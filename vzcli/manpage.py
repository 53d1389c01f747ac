"""Generate the vz(1) man page from the command tree.

Walks the click command that Typer builds from the app (`typer.main.get_command(app)`), so every
command, argument, option, default and option-level environment variable comes from the code that
parses them. The hand-written parts (environment, exit codes, files, examples) live here as data;
`render()` fails when the code grows an exit code or an environment variable they do not describe.

Output is deterministic: a fixed date (`DATE`, bumped by hand on release), the package version,
and no wrapping (roff fills the text to the reader's width).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import typer

from vzcli import __version__
from vzcli.errors import ExitCode

PROG = "vz"
DATE = "2026-11-22"  # the page's date: fixed so that regenerating gives the same bytes
REGENERATE = "python scripts/gen_assets.py"

ENVIRONMENT: dict[str, str] = {
    "VZ_STORE": "Store directory, as --store. Default: .vz in the current directory.",
    "VZ_REMOTE": "When true (1, true, yes, on), run against Cloudflare's REST API, as --remote; false is 0, "
                 "false, no, off or empty. Any other value is a usage error (exit 2).",
    "VZ_LOCK_TIMEOUT": "Seconds a writer waits for the store's write lock before failing (exit 1). "
                       "Default: 60. Readers never wait.",
    "VZ_MERGE_THRESHOLD": "Number of records written since the HNSW file was built (the delta) that "
                          "makes a writer merge them into a new file. Default: 2000.",
    "VZ_ANN_DTYPE": "How new HNSW files store vectors: f16 (default; half the disk and memory, "
                    "scores still computed from the float32 values in SQLite) or f32. Data float16 "
                    "cannot hold (values past 65504) gets an f32 file whatever this says.",
    "VZ_RESIDENT_MB": "MiB a long-lived process (each vz serve worker, a resident library backend) may hold "
                      "of its indexes' exact vectors and ids in memory, every index together (about 4 x "
                      "dimensions + 256 bytes per record). An index past it is searched through its shared "
                      "HNSW file, and its queries read what they return from SQLite: the same answers, a "
                      "little slower. Default: 1024; 0 holds none.",
    "VZ_API_TOKEN": "vz serve: the token every request must carry, as --api-token.",
    "VZ_DEBUG": "When true (as VZ_REMOTE), an internal error prints its Python traceback instead of a one-line message.",
    "NO_COLOR": "When set, no colour in human output (JSON output never has colour).",
    "CLOUDFLARE_ACCOUNT_ID": "Remote mode: the Cloudflare account that owns the indexes.",
    "CLOUDFLARE_API_TOKEN": "Remote mode: an API token with Vectorize permissions.",
    "CLOUDFLARE_API_KEY": "Remote mode: a global API key, used with CLOUDFLARE_EMAIL; when both are "
                          "set they take precedence over CLOUDFLARE_API_TOKEN, as in wrangler.",
    "CLOUDFLARE_EMAIL": "Remote mode: the account e-mail that goes with CLOUDFLARE_API_KEY.",
    "CLOUDFLARE_API_BASE_URL": "Remote mode: the API base URL. Default: "
                               "https://api.cloudflare.com/client/v4 (point it at vz serve to test).",
}

EXIT_STATUS: dict[ExitCode, str] = {
    ExitCode.OK: "Success, including an empty result (a query with no matches, an empty list).",
    ExitCode.FAILURE: "Operational failure: index or vector not found, conflict, invalid data (a bad "
                      "NDJSON line), I/O error, store locked for longer than VZ_LOCK_TIMEOUT.",
    ExitCode.USAGE: "Usage error: a bad option value, an invalid filter, a bad cursor, top-k over "
                    "the limit.",
    ExitCode.INTERRUPTED: "Interrupted (Ctrl-C).",
}

FILES: list[tuple[str, str]] = [
    ("./.vz/catalog.sqlite3", "The catalog (SQLite, WAL mode): indexes, records, metadata indexes "
                              "and the mutation log. The source of truth."),
    ("./.vz/indexes/<name>/ann-*.usearch", "The HNSW file of index <name> (usearch), derived from "
                                           "the catalog; rebuilt by vz optimize."),
]

PAGINATION_LOOP = """\
cursor=
while :; do
  page=$(vz list-vectors docs --count 1000 --json ${cursor:+--cursor "$cursor"})
  jq -r '.vectors[].id' <<<"$page"
  cursor=$(jq -r '.nextCursor // empty' <<<"$page")
  [ -n "$cursor" ] || break
done"""

EXAMPLES: list[tuple[str, str]] = [
    ("Create an index, make a property filterable, and load NDJSON records:",
     "vz create docs --dimensions 384 --metric cosine\n"
     "vz create-metadata-index docs --property-name category --type string\n"
     "vz insert docs --file vectors.ndjson\n"
     "cat more.ndjson | vz upsert docs --file -"),
    ("Query by the values of a stored vector, with a metadata filter:",
     "vz query docs --vector-id doc-001 --top-k 3 --return-metadata all \\\n"
     "    --filter '{\"category\": \"books\"}'"),
    ("Print every id of an index with cursor pagination (bash and jq):", PAGINATION_LOOP),
    ("The same in one command, as NDJSON:", "vz list-vectors docs --all | jq -r .id"),
    ("Copy an index into another store:",
     "vz export docs | vz --store /tmp/copy insert docs --file -"),
    ("Install shell completion for the current user (bash):",
     "vz completion bash > ~/.local/share/bash-completion/completions/vz"),
]

# The page lists wrangler's `vectorize` commands first, in the order of its docs; vz's own commands
# (and any command not named here) follow in alphabetical order.
WRANGLER_ORDER = ("create", "delete", "get", "list", "info", "insert", "upsert", "query", "get-vectors",
                  "delete-vectors", "list-vectors", "create-metadata-index", "list-metadata-index",
                  "delete-metadata-index")

SEE_ALSO = "wrangler(1); https://developers.cloudflare.com/vectorize/"


@dataclass(frozen=True)
class Leaf:
    """A runnable command: its words after `vz` (e.g. ("create",)), the click command and context."""

    path: tuple[str, ...]
    command: Any
    ctx: Any


def root_context(cli: Any) -> Any:
    """A context for the root command with its own settings (help option names), parsing nothing."""
    return typer.Context(cli, info_name=PROG, **cli.context_settings)


def leaves(cli: Any, ctx: Any | None = None, path: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every visible runnable command under `cli`, depth first, in the order `--help` lists them."""
    ctx = ctx or root_context(cli)
    for name in cli.list_commands(ctx):
        sub = cli.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        sub_ctx = typer.Context(sub, info_name=name, parent=ctx, **sub.context_settings)
        if hasattr(sub, "list_commands"):
            yield from leaves(sub, sub_ctx, (*path, name))
        else:
            yield Leaf((*path, name), sub, sub_ctx)


def option_envvars(cli: Any) -> set[str]:
    """Environment variables that options read directly (`envvar=`), across the whole tree."""
    found: set[str] = set()
    cmds = [(cli, root_context(cli))] + [(leaf.command, leaf.ctx) for leaf in leaves(cli)]
    for cmd, ctx in cmds:
        for p in cmd.get_params(ctx):
            env = getattr(p, "envvar", None)
            if isinstance(env, str):
                found.add(env)
            elif env:
                found.update(env)
    return found


# -- roff helpers --------------------------------------------------------------------------------

_GLYPHS = {"—": r"\(em", "–": r"\(en", "’": r"\(aq", "‘": r"\(aq", "“": r"\(lq", "”": r"\(rq",
           "…": "...", "≤": r"\(<=", "≥": r"\(>=", "×": r"\(mu", "·": r"\(md", "→": r"\(->",
           "√": r"\(sr"}


def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens (so options stay copy-pasteable), quotes and
    non-ASCII characters (named glyphs, else \\[uXXXX])."""
    out = text.replace("\\", r"\e").replace("-", r"\-").replace("'", r"\(aq").replace('"', r"\(dq")
    return "".join(c if ord(c) < 128 else _GLYPHS.get(c, f"\\[u{ord(c):04X}]") for c in out)


def _line(text: str) -> str:
    """One input line of running text: roff reads a leading '.' as a request, so guard it."""
    return "\\&" + text if text[:1] in (".", "'") else text


def _paragraphs(help_text: str) -> list[str]:
    """Click help text as roff paragraphs. Click's `\\b` marks a block kept verbatim."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", help_text.strip()):
        lines = block.splitlines()
        if lines and lines[0].strip() == "\b":
            out.append(".nf\n" + "\n".join(_line(esc(x.rstrip())) for x in lines[1:]) + "\n.fi")
        else:
            out.append(_line(esc(" ".join(x.strip() for x in lines))))
    return out


def _term(record: str) -> str:
    """An option's help-record term ('-y, --force <str>', '--log / --no-log') in roff: option
    names bold, the metavar italic."""
    parts = []
    for piece in re.split(r"(, | / )", record):
        if piece in (", ", " / "):
            parts.append(esc(piece))
            continue
        name, _, metavar = piece.partition(" ")
        parts.append(rf"\fB{esc(name)}\fR")
        if metavar:  # `\:` lets a long choice list break after each `|`
            parts.append(r" \fI" + esc(metavar).replace("|", r"|\:") + r"\fR")
    return "".join(parts)


def _argument_word(p: Any) -> str:
    word = (p.metavar or p.name or "").upper()
    if p.nargs != 1:
        word += "..."
    return word if p.required else f"[{word}]"


def _params(cmd: Any, ctx: Any) -> list[str]:
    out: list[str] = []
    for p in cmd.get_params(ctx):
        record = p.get_help_record(ctx)
        if record is None or (ctx.parent is not None and p.name == "help"):
            continue  # -h/--help is described once, under GLOBAL OPTIONS
        if p.param_type_name == "argument":
            term = rf"\fI{esc(_argument_word(p).strip('[]'))}\fR"
        else:
            term = _term(record[0])
        out += [".TP", term, _line(esc(record[1])) if record[1] else ""]
    return [x for x in out if x != ""]


def _synopsis(leaf: Leaf) -> str:
    words = [rf"\fB{PROG}\fR", r"[\fIGLOBAL OPTIONS\fR]"] + [rf"\fB{esc(w)}\fR" for w in leaf.path]
    words.append(r"[\fIOPTIONS\fR]")
    for p in leaf.command.get_params(leaf.ctx):
        if p.param_type_name == "argument":
            words.append(rf"\fI{esc(_argument_word(p))}\fR")
    return " ".join(words)


def render(cli: Any) -> str:
    """The complete vz(1) page, in roff, for the root click command `cli`."""
    ctx = root_context(cli)
    missing = [c.name for c in ExitCode if c not in EXIT_STATUS]
    if missing:
        raise RuntimeError(f"vzcli/manpage.py: EXIT_STATUS has no description for {missing}")
    environment = dict(ENVIRONMENT)
    for env in sorted(option_envvars(cli) - environment.keys()):
        environment[env] = "See the option that reads it in COMMANDS."

    first, *rest = _paragraphs(cli.help or "")
    summary = re.sub(r"^vz: ", "", first).rstrip(".")
    out = [
        f'.TH {PROG.upper()} 1 "{DATE}" "{PROG} {__version__}" "User Commands"',
        # Left-adjusted and unhyphenated: option and variable names must stay whole and searchable.
        ".ad l", ".nh",
        ".SH NAME", rf"{PROG} \- {summary}",
        ".SH SYNOPSIS",
        rf"\fB{PROG}\fR [\fIGLOBAL OPTIONS\fR] \fICOMMAND\fR [\fIOPTIONS\fR] [\fIARGUMENTS\fR]",
        ".SH DESCRIPTION",
    ]
    for para in rest:
        out += [para, ".PP"]
    out += [
        "Every command takes \\fB\\-\\-json\\fR: standard output then holds exactly one JSON document "
        "(NDJSON for \\fBlist\\-vectors \\-\\-all\\fR and \\fBexport\\fR); messages, hints and warnings "
        "go to standard error.",
        ".PP",
        "Errors print \\fB[ERROR] \\fImessage\\fB [code: \\fIN\\fB]\\fR on standard error, with "
        "Cloudflare\\(aqs error code, and exit non\\-zero (see \\fBEXIT STATUS\\fR).",
        ".PP",
        "Every command also takes \\fB\\-h\\fR/\\fB\\-\\-help\\fR, which prints the same "
        "information as this page.",
        ".SH GLOBAL OPTIONS",
        "Global options come before the command.",
        *_params(cli, ctx),
        ".SH COMMANDS",
    ]
    def page_order(leaf: Leaf) -> tuple[int, tuple[str, ...]]:
        name = leaf.path[0]
        return (WRANGLER_ORDER.index(name) if name in WRANGLER_ORDER else len(WRANGLER_ORDER), leaf.path)

    for leaf in sorted(leaves(cli), key=page_order):
        out += [f'.SS "{esc(" ".join(leaf.path))}"', _synopsis(leaf), ".PP"]
        for para in _paragraphs(leaf.command.help or ""):
            out += [para, ".PP"]
        out += _params(leaf.command, leaf.ctx)
    out.append(".SH ENVIRONMENT")
    for name, text in environment.items():
        out += [".TP", rf"\fB{esc(name)}\fR", _line(esc(text))]
    out.append(".SH EXIT STATUS")
    for code in ExitCode:
        out += [".TP", rf"\fB{int(code)}\fR", _line(esc(EXIT_STATUS[code]))]
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", rf"\fI{esc(path)}\fR", _line(esc(text))]
    out += [".PP", "The store directory is \\fB\\-\\-store\\fR, else \\fB$VZ_STORE\\fR, else \\fI.vz\\fR "
            "in the current directory; it is created on the first write."]
    out.append(".SH EXAMPLES")
    for text, example in EXAMPLES:
        out += [".PP", _line(esc(text)), ".PP", ".RS 4", ".nf"]
        out += [_line(esc(x)) for x in example.splitlines()]
        out += [".fi", ".RE"]
    out += [".SH SEE ALSO", esc(SEE_ALSO)]
    return "\n".join(out) + "\n"
