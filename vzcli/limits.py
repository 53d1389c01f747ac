"""Cloudflare Vectorize V2 limits (reference/vectorize-api.md §1) and the validators built on them."""

from __future__ import annotations

import re

from vzcli.errors import InvalidConfig

MAX_DIMENSIONS = 1536
MIN_DIMENSIONS = 1
MAX_ID_BYTES = 64
MAX_NAMESPACE_BYTES = 64
MAX_INDEX_NAME_BYTES = 64
MAX_METADATA_BYTES = 10 * 1024
MAX_METADATA_INDEXES = 10
METADATA_INDEX_BYTES = 64  # strings are indexed on their first 64 bytes
TOPK_DEFAULT = 5
TOPK_MAX = 100
TOPK_MAX_WITH_DATA = 50  # with returnValues or returnMetadata="all"
LIST_COUNT_DEFAULT = 100
LIST_COUNT_MAX = 1000
GET_BY_IDS_MAX = 20  # REST API cap (measured by third parties)
DELETE_BY_IDS_MAX = 100  # REST API cap
BATCH_MAX = 5000  # vectors per HTTP insert/upsert request
INSERT_BATCH_DEFAULT = 1000  # wrangler's insert default
UPSERT_BATCH_DEFAULT = 5000  # wrangler's upsert default
BODY_MAX_BYTES = 100 * 1000 * 1000  # 100 MB upload
FILTER_MAX_BYTES = 2048
FILTER_KEY_MAX_CHARS = 512

METRICS = ("cosine", "euclidean", "dot-product")
METADATA_TYPES = ("string", "number", "boolean")
PRESETS: dict[str, tuple[int, str]] = {
    "@cf/baai/bge-small-en-v1.5": (384, "cosine"),
    "@cf/baai/bge-base-en-v1.5": (768, "cosine"),
    "@cf/baai/bge-large-en-v1.5": (1024, "cosine"),
    "openai/text-embedding-ada-002": (1536, "cosine"),
    "cohere/embed-multilingual-v2.0": (768, "cosine"),
}

_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,63}")


def check_index_name(name: str) -> str:
    """1–64 bytes of lowercase ASCII letters, digits and dashes, starting with a letter.

    The rule keeps every name a plain directory name: no `/`, `..`, NUL or uppercase that could
    collide on case-insensitive file systems, so an index can never reach outside the store.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidConfig(
            f"Index name {name!r} is invalid: use 1-64 lowercase ASCII letters, digits and dashes, "
            "starting with a letter (for example 'my-index')"
        )
    return name


def resolve_config(dimensions: int | None, metric: str | None, preset: str | None) -> tuple[int, str]:
    """Turn (dimensions, metric) or a preset into a concrete config; disagreement is an error."""
    if preset is not None:
        if preset not in PRESETS:
            raise InvalidConfig(f"Unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        pdims, pmetric = PRESETS[preset]
        clashes = []
        if dimensions is not None and dimensions != pdims:
            clashes.append(f"dimensions {dimensions} (the preset has {pdims})")
        if metric is not None and metric != pmetric:
            clashes.append(f"metric {metric} (the preset has {pmetric})")
        if clashes:
            raise InvalidConfig(f"Preset {preset} disagrees with " + " and ".join(clashes)
                                + "; pass the preset alone, or dimensions and metric alone")
        return pdims, pmetric
    if dimensions is None or metric is None:
        raise InvalidConfig("You must provide both dimensions and a metric, or a known model preset "
                            "when creating an index.")
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not (
            MIN_DIMENSIONS <= dimensions <= MAX_DIMENSIONS):
        raise InvalidConfig(f"Dimensions must be in range: [{MIN_DIMENSIONS}, {MAX_DIMENSIONS}], got {dimensions!r}")
    if metric not in METRICS:
        raise InvalidConfig(f"Metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return dimensions, metric


def is_utf8(s: str) -> bool:
    """False for a string holding lone surrogates: undecodable bytes of a command-line argument
    (Python maps them to U+DC80..U+DCFF), which SQLite and JSON cannot store."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_len(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def truncate_utf8(s: str, limit: int = METADATA_INDEX_BYTES) -> str:
    """The longest well-formed UTF-8 prefix of `s` that fits in `limit` bytes."""
    b = s.encode("utf-8", "surrogatepass")
    if len(b) <= limit:
        return s
    return b[:limit].decode("utf-8", "ignore")

# HNSW settings of a new index (stored per index, so older indexes keep theirs): M, ef_construction,
# ef_search. pgvector's defaults for M and ef_construction: on vz's benchmark data (clustered,
# and a harder 2,000-cluster set) ef_construction 64 builds 1.5-2.2x faster than usearch's 128
# at the same recall@10 (bench/RESULTS.md, section C).
HNSW_BUILD = (16, 64, 64)
