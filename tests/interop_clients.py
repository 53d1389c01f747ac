"""The npm installations the interop tests run, each with the Node.js it needs.

- `pinned`: tests/interop (wrangler pinned to a known release), under the system's node.
- `latest`: tests/interop-latest (the newest wrangler and the `cloudflare` TypeScript SDK when this
  was last bumped), under Node >= 22, which the newest wrangler needs: the system's node when it is
  new enough, else the copy `scripts/node22.sh` installs into .cache/node22.

scripts/test.sh runs `npm ci` in both. Nothing here installs anything: a missing installation or
node makes the tests that need it FAIL with the command to run, never skip (a skipped interop test
would hide a broken CI machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE22_CACHE = ROOT / ".cache" / "node22" / "node_modules" / ".bin" / "node"


@dataclass(frozen=True)
class Install:
    name: str
    dir: Path
    min_node: int

    @property
    def node(self) -> str:
        """The node binary to run this installation's clients with (fails the test when absent)."""
        node = _node_at_least(self.min_node)
        if node is None:
            pytest.fail(f"no Node.js >= {self.min_node} for tests/{self.dir.name}: run `bash scripts/test.sh` "
                        "(it runs scripts/node22.sh, which installs one into .cache/node22)")
        return node

    def package(self, name: str) -> Path:
        """The installed npm package `name` (fails the test when `npm ci` has not run)."""
        path = self.dir / "node_modules" / name
        if not (path / "package.json").exists():
            pytest.fail(f"{path} is missing: run `npm ci` in tests/{self.dir.name} (scripts/test.sh does)")
        return path

    def version(self, name: str) -> str:
        return str(json.loads((self.package(name) / "package.json").read_text())["version"])

    @property
    def wrangler_js(self) -> Path:
        return self.package("wrangler") / "bin" / "wrangler.js"


PINNED = Install("pinned", ROOT / "tests" / "interop", 20)
LATEST = Install("latest", ROOT / "tests" / "interop-latest", 22)
WRANGLERS = [pytest.param(PINNED, id="wrangler-pinned"), pytest.param(LATEST, id="wrangler-latest")]


@cache
def _major(node: str) -> int:
    out = subprocess.run([node, "-p", "process.versions.node"], capture_output=True, text=True, timeout=30)
    return int(out.stdout.split(".")[0]) if out.returncode == 0 else 0


def _node_at_least(major: int) -> str | None:
    for node in (shutil.which("node"), str(NODE22_CACHE) if NODE22_CACHE.exists() else None):
        if node and _major(node) >= major:
            return node
    return None
