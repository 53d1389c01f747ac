"""Typed errors carrying Cloudflare Vectorize codes.

Every failure the core can report is one of these classes. Each adapter translates them once:
the CLI into a message on stderr plus an exit code, the server into Cloudflare's error envelope
plus an HTTP status. Codes follow Cloudflare where it has one (reference/vectorize-api.md §8.4);
where Cloudflare's code is unknown, vz picks one and the README's Compatibility section lists it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the `vz` CLI (stable; documented in the README and man page)."""

    OK = 0
    FAILURE = 1  # operational failure: not found, conflict, invalid data, I/O, lock timeout
    USAGE = 2  # the command line itself is wrong: bad option value, invalid filter
    INTERRUPTED = 130


class VzError(Exception):
    """Base class: a Cloudflare-style error with a numeric code."""

    code: int = 1000
    status: int = 400
    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None,
                 exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if exit_code is not None:
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class UsageError(VzError):
    """The request or command line is malformed (exit 2)."""

    code = 40000
    exit_code = ExitCode.USAGE


class IndexNotFound(VzError):
    code = 3000
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f'vectorize.index.not_found - Index name "{name}"')
        self.name = name


class DuplicateIndex(VzError):
    code = 3002
    status = 409

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f'vectorize.index.duplicate_name - Index name "{name}"' + (f" {detail}" if detail else ""))


class InvalidConfig(UsageError):
    """Bad index name, dimensions, metric or preset (vz's code: 3001)."""

    code = 3001

    def __init__(self, detail: str) -> None:
        super().__init__(f"vectorize.index.invalid_config - {detail}")


class InvalidVector(VzError):
    """A record in an insert/upsert batch is invalid (40012 dimensions, 40008 id, ...)."""

    code = 40012


class Unparsable(VzError):
    code = 40023


class QueryDimensionMismatch(VzError):
    code = 40006


class TooManyIds(UsageError):
    code = 40007


class TopKTooLarge(UsageError):
    code = 40025


class BadCursor(UsageError):
    code = 40052

    def __init__(self, message: str = "List vectors cursor appears to be corrupted") -> None:
        super().__init__(message)


class InvalidFilter(UsageError):
    """Invalid metadata filter (vz's code: 40030; Cloudflare's is undocumented)."""

    code = 40030


class VectorNotFound(VzError):
    """queryById with an id that is not in the index (vz's code: 40034)."""

    code = 40034
    status = 404


class MetadataIndexError(VzError):
    """Duplicate, missing or too many metadata indexes (vz's code: 40040)."""

    code = 40040


class BodyTooLarge(VzError):
    code = 40005
    status = 413


class StoreError(VzError):
    """The store cannot be opened, is read-only, full or locked for too long (vz's code: 1002)."""

    code = 1002
    status = 500


class LockTimeout(StoreError):
    code = 1003
    status = 503


class ForeignCatalog(StoreError):
    """The store's catalog file is not vz's: another program's database, or not SQLite at all
    (vz's code: 1004). vz neither reads nor writes it."""

    code = 1004


class CorruptCatalog(StoreError):
    """SQLite reports the catalog as malformed (vz's code: 1005); `vz doctor --repair` recovers it."""

    code = 1005


class MissingCatalog(StoreError):
    """Index directories remain but the catalog is gone (vz's code: 1006)."""

    code = 1006


class AuthError(VzError):
    code = 10000
    status = 401


class RemoteError(VzError):
    """An error answered by a remote API that maps to no specific class."""


# --- warnings ---------------------------------------------------------------------------------------
# A warning reports something a client should know about a request that succeeded. The server puts
# each one in the envelope's `messages` with its code; the CLI prints it on stderr. The codes are
# stable and listed in the README ("Warning codes"); Cloudflare's schema wants message codes >= 1000.
WARN_UNINDEXED_FILTER = 1201  # a filter property has no metadata index: it matches nothing
WARN_UNCOVERED_VECTORS = 1202  # a new metadata index does not cover the vectors written before it
WARN_DISCARDED_LINES = 1203  # unparsable-behavior=discard skipped lines of an insert/upsert body


class Notice(str):
    """A warning with a stable code and two wordings.

    The string itself is the CLI's wording, which may name the vz command that fixes the cause;
    `api_message` is the HTTP API's, which names the API call instead (an HTTP client may have no
    CLI). Being a `str`, a Notice passes through every `warn(str)` callback unchanged.
    """

    code: int
    api_message: str

    def __new__(cls, code: int, cli_message: str, api_message: str) -> Notice:
        obj = super().__new__(cls, cli_message)
        obj.code = code
        obj.api_message = api_message
        return obj
