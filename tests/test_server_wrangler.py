"""The real `wrangler vectorize` against `vz serve`: every subcommand, with each wrangler the tests
install (the pinned one in tests/interop and the latest in tests/interop-latest, under Node >= 22;
see tests/interop_clients.py).

wrangler runs with CLOUDFLARE_API_BASE_URL pointing at a `vz serve` subprocess on 127.0.0.1 and
an environment that keeps it off the internet (reference/wrangler-cli.md §3.3–3.5, §9): metrics
and error reports off, the update check's cache pre-seeded under a private TMPDIR, the npm
registry pointed at loopback, HOME in a temp dir, no inherited variables. Its output is checked:
the JSON it prints is parsed, the ✅/✨ lines are matched exactly.

These tests need node and `npm ci` in both installations (scripts/test.sh does it). If either is
missing they FAIL, on purpose: a skipped interop test would hide a broken CI machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_server import ServedStore, served_store  # noqa: F401  (the fixture)
from interop_clients import WRANGLERS, Install

pytestmark = pytest.mark.interop

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

VECTORS = (
    '{"id":"a","values":[1,0,0],"metadata":{"genre":"x"}}\n'
    '{"id":"b","values":[0,1,0],"namespace":"ns1","metadata":{"genre":"y"}}\n'
    '{"id":"c","values":[0.9,0.1,0]}\n'
    '{"id":"d","values":[0,0,1],"metadata":{"genre":"y"}}\n'
    '{"id":"e","values":[0.5,0.5,0.5]}\n'
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The JSON document wrangler printed (after the banner and 📋 line, if any)."""
        lines = self.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith(("{", "[")))
        return json.loads("\n".join(lines[start:]))

    def lines(self) -> list[str]:
        return self.stdout.splitlines()


class Wrangler:
    """Runs `node wrangler.js vectorize ...` in a sealed environment against one server."""

    def __init__(self, install: Install, srv: ServedStore, home: Path, token: str | None = None) -> None:
        self.install = install
        self.node = install.node
        self.js = install.wrangler_js
        self.cwd = home / "proj"
        self.cwd.mkdir(parents=True, exist_ok=True)
        tmp = home / "tmp"
        (tmp / "update-check").mkdir(parents=True, exist_ok=True)
        # the update check's cache says "checked just now, latest is this version": no registry call
        far_future_ms = int((time.time() + 10 * 365 * 86400) * 1000)
        (tmp / "update-check" / "wrangler-latest.json").write_text(
            json.dumps({"latest": install.version("wrangler"), "lastUpdate": far_future_ms}))
        self.env = {
            "PATH": os.path.dirname(self.node) + os.pathsep + "/usr/bin:/bin",
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "TMPDIR": str(tmp),
            "TERM": "dumb",
            "CLOUDFLARE_API_BASE_URL": srv.api,
            "CLOUDFLARE_API_TOKEN": token if token is not None else (srv.token or "unused"),
            "CLOUDFLARE_ACCOUNT_ID": srv.account,
            "WRANGLER_SEND_METRICS": "false",
            "WRANGLER_SEND_ERROR_REPORTS": "false",
            "WRANGLER_NO_SKILLS_UPDATE_PROMPTS": "true",
            "WRANGLER_LOG_PATH": str(home / "logs"),
            "npm_registry": srv.base_url + "/npmreg/",
            "npm_config_registry": srv.base_url + "/npmreg/",
        }

    def __call__(self, *args: str, timeout: float = 120) -> Run:
        p = subprocess.run([self.node, str(self.js), "vectorize", *args], cwd=self.cwd, env=self.env,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return Run(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))

    def ok(self, *args: str) -> Run:
        r = self(*args)
        assert r.code == 0, f"wrangler vectorize {' '.join(args)}: exit {r.code}\n{r.stdout}\n{r.stderr}"
        return r


@pytest.fixture(params=WRANGLERS)
def wrangler(request: pytest.FixtureRequest, served_store: ServedStore,  # noqa: F811
             tmp_path: Path) -> Iterator[Wrangler]:
    yield Wrangler(request.param, served_store, tmp_path / "home")


def _vz(store: Path, *args: str) -> Any:
    p = subprocess.run([sys.executable, "-m", "vzcli", "--store", str(store), *args, "--json"],
                       capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def test_every_wrangler_vectorize_subcommand(wrangler: Wrangler, served_store: ServedStore,  # noqa: F811
                                            tmp_path: Path) -> None:
    w = wrangler
    (w.cwd / "vectors.ndjson").write_text(VECTORS)
    (w.cwd / "more.ndjson").write_text('{"id":"f","values":[1,1,0]}\r\n\r\n{"id":"c","values":[0,1,1]}\n\n')

    # create (--json: the result object verbatim) and create --preset (human: ✅ line)
    created = w.ok("create", "docs", "--dimensions", "3", "--metric", "cosine", "--description", "hello",
                   "--json").json()
    assert created["name"] == "docs" and created["description"] == "hello"
    assert created["config"] == {"dimensions": 3, "metric": "cosine"}
    r = w.ok("create", "small", "--preset", "@cf/baai/bge-small-en-v1.5")
    assert "Configuring index based for the embedding model @cf/baai/bge-small-en-v1.5." in r.lines()
    assert "✅ Successfully created a new Vectorize index: 'small'" in r.lines()

    # list / get / info
    assert [i["name"] for i in w.ok("list", "--json").json()] == ["docs", "small"]
    assert w.ok("get", "docs", "--json").json() == created
    assert w.ok("info", "docs", "--json").json() == {"dimensions": 3, "vectorCount": 0}

    # metadata index before inserting, as on Cloudflare
    r = w.ok("create-metadata-index", "docs", "--propertyName", "genre", "--type", "string")
    assert re.fullmatch(r"✅ Successfully enqueued metadata index creation request\. Mutation changeset "
                        rf"identifier: {UUID}\.", r.lines()[-1]), r.stdout
    assert w.ok("list-metadata-index", "docs", "--json").json() == [{"propertyName": "genre", "indexType": "string"}]

    # insert (multipart field `vectors`, batches of 2 → 3 requests) and upsert --json
    r = w.ok("insert", "docs", "--file", "vectors.ndjson", "--batch-size", "2")
    enq = [line for line in r.lines() if line.startswith("✨")]
    assert [re.sub(UUID, "M", line) for line in enq] == [
        "✨ Enqueued 2 vectors into index 'docs' for insertion. Mutation changeset identifier: M"] * 2 + [
        "✨ Enqueued 1 vectors into index 'docs' for insertion. Mutation changeset identifier: M"]
    assert r.lines()[-1] == "✅ Successfully enqueued 5 vectors into index 'docs' for insertion."
    mids = [line.rsplit(" ", 1)[1] for line in enq]
    info = w.ok("info", "docs", "--json").json()
    assert info["vectorCount"] == 5 and info["processedUpToMutation"] == mids[-1]
    # blank lines and CRLF: wrangler counts 4 lines, the server stores 2 records (f new, c replaced)
    assert w.ok("upsert", "docs", "--file", "more.ndjson", "--json").json() == {"index": "docs", "count": 4}
    assert w.ok("info", "docs", "--json").json()["vectorCount"] == 6

    # query: by vector, by id, with namespace and filter
    res = w.ok("query", "docs", "--vector", "1", "0", "0", "--top-k", "2", "--return-metadata", "all").json()
    assert res["count"] == 2 and [m["id"] for m in res["matches"]] == ["a", "f"]
    assert res["matches"][0] == {"id": "a", "score": 1.0, "metadata": {"genre": "x"}}
    res = w.ok("query", "docs", "--vector-id", "a", "--namespace", "ns1", "--return-values").json()
    assert res == {"count": 1, "matches": [{"id": "b", "score": 0.0, "values": [0.0, 1.0, 0.0],
                                            "namespace": "ns1"}]}
    res = w.ok("query", "docs", "--vector", "0", "0.5", "1", "--filter", '{"genre": "y"}',
               "--return-metadata", "indexed").json()
    assert [(m["id"], m["metadata"]) for m in res["matches"]] == [("d", {"genre": "y"}), ("b", {"genre": "y"})]
    r = w.ok("query", "docs", "--vector", "1", "0", "0", "--filter", '{"genre": "none-such"}')
    assert "Could not find any relevant vectors" in r.stderr

    # get-vectors prints the array
    assert w.ok("get-vectors", "docs", "--ids", "c", "zz", "b").json() == [
        {"id": "c", "values": [0.0, 1.0, 1.0], "metadata": {}},
        {"id": "b", "values": [0.0, 1.0, 0.0], "metadata": {"genre": "y"}, "namespace": "ns1"}]

    # list-vectors: --json verbatim, the cursor, and the human page with its hint
    page = w.ok("list-vectors", "docs", "--count", "4", "--json").json()
    assert (page["count"], page["totalCount"], page["isTruncated"]) == (4, 6, True)
    assert [v["id"] for v in page["vectors"]] == ["a", "b", "c", "d"]
    page2 = w.ok("list-vectors", "docs", "--count", "4", "--cursor", page["nextCursor"], "--json").json()
    assert page2 == {"count": 2, "totalCount": 6, "isTruncated": False, "nextCursor": None,
                     "cursorExpirationTimestamp": None, "vectors": [{"id": "e"}, {"id": "f"}]}
    r = w.ok("list-vectors", "docs", "--count", "2")
    assert "Showing 2 of 6 total vectors" in r.lines()
    assert r.lines()[-1].startswith("   wrangler vectorize list-vectors docs --cursor ")

    # delete-vectors, delete-metadata-index, delete
    r = w.ok("delete-vectors", "docs", "--ids", "a", "b")
    assert re.fullmatch(rf"✅ Successfully enqueued 2 vectors into index 'docs' for deletion\. Mutation changeset "
                        rf"identifier: {UUID}\.", r.lines()[-1]), r.stdout
    assert w.ok("info", "docs", "--json").json()["vectorCount"] == 4
    r = w.ok("delete-metadata-index", "docs", "--propertyName", "genre")
    assert re.fullmatch(rf"✅ Successfully enqueued metadata index deletion request\. Mutation changeset "
                        rf"identifier: {UUID}\.", r.lines()[-1]), r.stdout
    assert w.ok("list-metadata-index", "docs", "--json").json() == []

    # the server serves the very store the vz CLI uses
    assert [v["id"] for v in _vz(served_store.store, "list-vectors", "docs")["vectors"]] == ["c", "d", "e", "f"]

    r = w.ok("delete", "docs", "--force")
    assert r.lines()[-1] == "✅ Deleted index docs"
    assert [i["name"] for i in w.ok("list", "--json").json()] == ["small"]


def test_wrangler_reports_server_errors(wrangler: Wrangler, served_store: ServedStore,  # noqa: F811
                                       tmp_path: Path) -> None:
    w = wrangler
    r = w("get", "nope")
    assert r.code == 1
    assert 'vectorize.index.not_found - Index name "nope" [code: 3000]' in r.stderr
    w.ok("create", "docs", "--dimensions", "3", "--metric", "cosine", "--json")
    r = w("create", "docs", "--dimensions", "3", "--metric", "cosine", "--json")
    assert r.code == 1 and 'vectorize.index.duplicate_name - Index name "docs" [code: 3002]' in r.stderr
    (w.cwd / "bad.ndjson").write_text('{"id":"x","values":[1,2]}\n')
    r = w("insert", "docs", "--file", "bad.ndjson")
    assert r.code == 1 and "[code: 40012]" in r.stderr
    r = w("get-vectors", "docs", "--ids", *[str(i) for i in range(21)])
    assert r.code == 1 and "too many ids in payload; max id count is 20, got 21 [code: 40007]" in r.stderr
    r = w("query", "docs", "--vector", "1", "0", "0", "--top-k", "101")
    assert r.code == 1 and "max top K is 100, but got 101 [code: 40025]" in r.stderr
    # a wrong token: 401 with code 10000 on the vectorize call
    bad = Wrangler(w.install, served_store, tmp_path / "home2", token="wrong-token")
    r = bad("list", "--json")
    assert r.code == 1 and "Authentication error [code: 10000]" in r.stderr
    # the global API key form (X-Auth-Key + X-Auth-Email) is accepted with the same token
    key = Wrangler(w.install, served_store, tmp_path / "home3")
    del key.env["CLOUDFLARE_API_TOKEN"]
    key.env.update({"CLOUDFLARE_API_KEY": served_store.token or "", "CLOUDFLARE_EMAIL": "me@example.com"})
    assert [i["name"] for i in key.ok("list", "--json").json()] == ["docs"]
