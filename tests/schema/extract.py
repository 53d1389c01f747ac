"""Extract the Vectorize v2 part of Cloudflare's published OpenAPI document.

    git -C <api-schemas clone> show COMMIT:openapi.json | python tests/schema/extract.py - COMMIT \
        > tests/schema/vectorize-v2.openapi.json

Keeps every path under /accounts/{account_id}/vectorize/v2/indexes and the components those paths
reference, directly or through other components, unchanged; records where they came from under
`x-extracted-from`. The output is sorted and indented so that a later extraction diffs cleanly.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PREFIX = "/accounts/{account_id}/vectorize/v2/indexes"


def refs_in(node: Any) -> set[str]:
    """Every `$ref` string inside `node`."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for v in node.values():
            found |= refs_in(v)
        return found
    if isinstance(node, list):
        return set().union(*map(refs_in, node)) if node else set()
    return set()


def extract(doc: dict[str, Any], commit: str) -> dict[str, Any]:
    paths = {p: ops for p, ops in doc["paths"].items() if p.startswith(PREFIX)}
    components: dict[str, dict[str, Any]] = {}
    todo = sorted(refs_in(paths))
    seen: set[str] = set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        target = doc["components"][kind][name]
        components.setdefault(kind, {})[name] = target
        todo.extend(sorted(refs_in(target) - seen))
    return {
        "openapi": doc["openapi"],
        "info": {**doc["info"], "title": doc["info"].get("title", "") + " (Vectorize v2 paths only)"},
        "x-extracted-from": {"repository": "cloudflare/api-schemas", "commit": commit, "file": "openapi.json",
                             "tool": "tests/schema/extract.py", "licence": "tests/schema/LICENSE (BSD-3-Clause)"},
        "paths": paths,
        "components": components,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    src = sys.stdin if argv[1] == "-" else open(argv[1], encoding="utf-8")
    with src:
        doc = json.load(src)
    json.dump(extract(doc, argv[2]), sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
