"""End to end: a Worker's `env.VECTORIZE` in `wrangler dev`, served by `vz serve` through the shim.

One `vz serve` (with a token) and one `wrangler dev` (the sample app in tests/interop/devbinding-app,
configured with the TOML snippet `vz dev-binding` prints, plus the shim it writes) run for the whole
module, on loopback only, once with each wrangler the tests install (the pinned one and the latest,
under Node >= 22; tests/interop_clients.py). Each test calls
the app over HTTP so that it calls a binding method, and checks the answer against the CLI's view
of the same store. wrangler runs offline: no metrics, no error reports, no `Request.cf` download, its
update check pointed at a closed loopback port and pre-empted by a fresh cache, no account.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers_server import start_server, stop_server
from interop_clients import WRANGLERS, Install
from typer.testing import CliRunner

from vzcli.cli import app

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent
APP = HERE / "interop" / "devbinding-app"
TOKEN = "e2e-token"
DOCS, OTHER, MISSING = "e2e-docs", "e2e-other", "e2e-missing"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
STARTUP_DEADLINE = 90.0
BINDINGS = [f"VECTORIZE={DOCS}", f"OTHER={OTHER}", f"MISSING={MISSING}"]
APP_TOML = 'name = "devbinding-app"\nmain = "index.js"\ncompatibility_date = "2025-01-01"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(store: Path, *args: Any, input: str | None = None) -> Any:
    """`vz --store STORE ARGS` in-process: the CLI's view of the store vz serve is serving."""
    r = CliRunner().invoke(app, ["--store", str(store), *map(str, args)], input=input, prog_name="vz")
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r


@dataclass
class Stack:
    app_url: str
    store: Path
    root: Path
    wrangler: subprocess.Popen[bytes]

    def cli(self, *args: Any, input: str | None = None) -> Any:
        return run_cli(self.store, *args, input=input)

    def cli_json(self, *args: Any) -> Any:
        r = self.cli(*args, "--json")
        assert r.exit_code == 0, r.stderr
        return json.loads(r.stdout)

    def call(self, method: str, *args: Any, binding: str = "VECTORIZE", typed: str | None = None) -> Any:
        """Have the app call env[binding][method](*args); return the result, or raise BindingError."""
        body = json.dumps({"binding": binding, "method": method, "args": list(args), "typed": typed}).encode()
        req = urllib.request.Request(self.app_url, data=body, method="POST",
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            answer = json.loads(r.read())
        if not answer["ok"]:
            raise BindingError(answer["error"])
        return answer["result"]

    def logs(self) -> str:
        return "".join((self.root / name).read_text(errors="replace")[-4000:]
                       for name in ("wrangler.out", "wrangler.err"))


class BindingError(Exception):
    """The message of the error the binding threw inside the Worker."""


def offline_env(root: Path, closed_port: int, install: Install) -> dict[str, str]:
    """A clean environment in which wrangler makes no connection beyond loopback."""
    home = root / "home"
    tmp = root / "tmp"
    (tmp / "update-check").mkdir(parents=True)
    # wrangler's update check reads this cache first; an hour-fresh entry means no request at all.
    (tmp / "update-check" / "wrangler-latest.json").write_text(
        json.dumps({"latest": install.version("wrangler"), "lastUpdate": int(time.time() * 1000) + 86_400_000}))
    registry = f"http://127.0.0.1:{closed_port}/"
    return {
        "PATH": os.path.dirname(install.node) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "TMPDIR": str(tmp),
        "CI": "1",  # non-interactive: no prompts
        "NO_COLOR": "1",
        "WRANGLER_SEND_METRICS": "false",
        "WRANGLER_SEND_ERROR_REPORTS": "false",
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",  # miniflare would download Request.cf from workers.cloudflare.com
        "npm_registry": registry,  # the update check asks rc("npm")'s registry
        "npm_config_registry": registry,
    }


def wait_for_app(stack: Stack, deadline: float) -> None:
    """Poll the app until a binding call reaches vz serve through the shim (or the deadline passes)."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        if stack.wrangler.poll() is not None:
            raise RuntimeError(f"wrangler dev exited with {stack.wrangler.returncode}:\n{stack.logs()}")
        try:
            stack.call("describe")
            return
        except (urllib.error.URLError, ConnectionError, OSError, BindingError) as e:
            last = e
        time.sleep(0.2)  # polling a condition with a deadline
    raise RuntimeError(f"wrangler dev did not serve the app within {STARTUP_DEADLINE}s ({last}):\n{stack.logs()}")


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM wrangler's whole process group (workerd included), then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; make sure no workerd child outlives it
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return


@pytest.fixture(scope="module", params=WRANGLERS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    install: Install = request.param
    node, wrangler_js = install.node, install.wrangler_js
    root = tmp_path_factory.mktemp("devbinding-e2e")
    store = root / "store"
    base_url, server = start_server(store, token=TOKEN)
    proc = None
    try:
        assert run_cli(store, "create", DOCS, "--dimensions", "3", "--metric", "cosine").exit_code == 0
        assert run_cli(store, "create-metadata-index", DOCS, "--property-name", "genre",
                       "--type", "string").exit_code == 0
        assert run_cli(store, "create", OTHER, "--dimensions", "4", "--metric", "euclidean").exit_code == 0
        shim = root / "shim"
        r = run_cli(store, "dev-binding", *BINDINGS, "--out", shim, "--url", base_url, "--api-token", TOKEN,
                    "--json")
        assert r.exit_code == 0, r.stderr
        app_dir = root / "app"  # a copy: wrangler writes .wrangler/ next to the config
        shutil.copytree(APP, app_dir)
        # The app's bindings come from the TOML snippet the command printed, so real wrangler reads it;
        # test_sample_config_matches_the_json_snippet ties the committed JSONC config to the JSON one.
        (app_dir / "wrangler.toml").write_text(APP_TOML + "\n" + json.loads(r.stdout)["snippets"]["toml"] + "\n")
        port, inspector, closed = free_port(), free_port(), free_port()
        cmd = [node, str(wrangler_js), "dev", "-c", str(app_dir / "wrangler.toml"), "-c", str(shim / "wrangler.jsonc"),
               "--ip", "127.0.0.1", "--port", str(port), "--inspector-port", str(inspector),
               "--log-level", "warn"]
        with (root / "wrangler.out").open("w") as out, (root / "wrangler.err").open("w") as err:
            proc = subprocess.Popen(cmd, cwd=app_dir, env=offline_env(root, closed, install), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
        stack = Stack(app_url=f"http://127.0.0.1:{port}/", store=store, root=root, wrangler=proc)
        wait_for_app(stack, time.monotonic() + STARTUP_DEADLINE)
        yield stack
    finally:
        if proc is not None:
            stop_group(proc)
        assert stop_server(server) == 0


def test_sample_config_matches_the_json_snippet(tmp_path):
    """The committed sample config (what a user writes) holds exactly the JSON snippet's services."""
    r = run_cli(tmp_path / "store", "-q", "dev-binding", *BINDINGS, "--out", tmp_path / "shim", "--json")
    assert r.exit_code == 0, r.stderr
    snippet = json.loads("{" + json.loads(r.stdout)["snippets"]["json"] + "}")
    config = json.loads("\n".join(line for line in (APP / "wrangler.jsonc").read_text().splitlines()
                                  if not line.lstrip().startswith("//")))
    assert config == {"name": "devbinding-app", "main": "index.js", "compatibility_date": "2025-01-01",
                      **snippet}


def test_describe_is_the_index_info(stack):
    assert stack.call("describe") == stack.cli_json("info", DOCS)
    assert stack.call("describe", binding="OTHER") == stack.cli_json("info", OTHER)
    assert stack.call("describe", binding="OTHER")["dimensions"] == 4


def test_insert_and_every_kind_of_query(stack):
    vectors = [
        {"id": "q-a", "values": [1, 0, 0], "metadata": {"genre": "jazz", "year": 1959}},
        {"id": "q-b", "values": [0.8, 0.6, 0], "metadata": {"genre": "rock"}, "namespace": "music"},
        {"id": "q-c", "values": [0, 1, 0], "metadata": {"genre": "jazz"}, "namespace": "music"},
        {"id": "q-d", "values": [0.5, 0.5, 0.5]},
    ]
    result = stack.call("insert", vectors)
    assert list(result) == ["mutationId"] and UUID.fullmatch(result["mutationId"])
    info = stack.cli_json("info", DOCS)
    assert info["processedUpToMutation"] == result["mutationId"]
    assert stack.call("describe") == info

    got = stack.call("getByIds", ["q-a", "q-b", "q-c", "q-d", "q-nope"])
    assert got == stack.cli_json("get-vectors", DOCS, "--ids", "q-a", "q-b", "q-c", "q-d", "q-nope")
    assert {v["id"] for v in got} == {"q-a", "q-b", "q-c", "q-d"}

    # A Float32Array query with values and all metadata, as the CLI runs it.
    cli = stack.cli_json("query", DOCS, "--vector", "1", "0.1", "0", "--top-k", "3", "--return-values",
                         "--return-metadata", "all")
    assert stack.call("query", [1, 0.1, 0], {"topK": 3, "returnValues": True, "returnMetadata": "all"},
                      typed="f32") == cli
    assert cli["count"] == 3 and cli["matches"][0]["id"] == "q-a"
    # The legacy boolean true means "all".
    assert stack.call("query", [1, 0.1, 0], {"topK": 3, "returnValues": True, "returnMetadata": True}) == cli
    # Defaults (topK 5, no values, no metadata), number[] and Float64Array alike.
    cli = stack.cli_json("query", DOCS, "--vector", "0", "1", "0")
    assert stack.call("query", [0, 1, 0]) == cli
    assert stack.call("query", [0, 1, 0], typed="f64") == cli
    # Namespace and metadata filter.
    cli = stack.cli_json("query", DOCS, "--vector", "1", "1", "0", "--namespace", "music", "--filter",
                         '{"genre": "jazz"}', "--return-metadata", "indexed")
    assert stack.call("query", [1, 1, 0], {"namespace": "music", "filter": {"genre": "jazz"},
                                           "returnMetadata": "indexed"}) == cli
    assert [m["id"] for m in cli["matches"]] == ["q-c"]
    # An empty filter is no filter (frameworks send it on every unfiltered query; Cloudflare accepts it).
    cli = stack.cli_json("query", DOCS, "--vector", "1", "1", "0", "--top-k", "4")
    assert stack.call("query", [1, 1, 0], {"topK": 4, "filter": {}}) == cli and cli["count"] == 4
    # queryById takes the same options.
    cli = stack.cli_json("query", DOCS, "--vector-id", "q-b", "--top-k", "2", "--return-metadata", "all")
    assert stack.call("queryById", "q-b", {"topK": 2, "returnMetadata": "all"}) == cli
    assert cli["matches"][0]["id"] == "q-b"


def test_upsert_with_typed_arrays_in_a_second_index(stack):
    first = stack.call("upsert", [{"id": "u-1", "values": [0.1, 0.2, 0.3, 0.4], "metadata": {"v": 1}}],
                       binding="OTHER", typed="f32")
    second = stack.call("upsert", [{"id": "u-1", "values": [1.5, 2.5, 3.5, 4.5]},
                                   {"id": "u-2", "values": [0.1, 0, 0, 1], "namespace": "ns"}],
                        binding="OTHER", typed="f64")
    assert UUID.fullmatch(first["mutationId"]) and UUID.fullmatch(second["mutationId"])
    assert first["mutationId"] != second["mutationId"]
    got = stack.call("getByIds", ["u-1", "u-2"], binding="OTHER")
    assert got == stack.cli_json("get-vectors", OTHER, "--ids", "u-1", "u-2")
    # The upsert replaced u-1 in full (no metadata left); values are stored as float32.
    assert sorted(got, key=lambda v: v["id"]) == [
        {"id": "u-1", "values": [1.5, 2.5, 3.5, 4.5], "metadata": {}},
        {"id": "u-2", "values": [0.10000000149011612, 0, 0, 1], "metadata": {}, "namespace": "ns"},
    ]
    assert stack.call("describe", binding="OTHER") == stack.cli_json("info", OTHER)
    assert stack.cli_json("info", OTHER)["processedUpToMutation"] == second["mutationId"]


def test_delete_by_ids(stack):
    stack.call("insert", [{"id": "d-1", "values": [1, 2, 3]}, {"id": "d-2", "values": [3, 2, 1]}])
    before = stack.cli_json("info", DOCS)["vectorCount"]
    result = stack.call("deleteByIds", ["d-1", "d-unknown"])
    assert UUID.fullmatch(result["mutationId"])
    assert stack.cli_json("get-vectors", DOCS, "--ids", "d-1", "d-2") == [{"id": "d-2", "values": [3, 2, 1], "metadata": {}}]
    info = stack.call("describe")
    assert info == stack.cli_json("info", DOCS)
    assert info["vectorCount"] == before - 1 and info["processedUpToMutation"] == result["mutationId"]


def cli_error(stack: Stack, *args: str, input: str | None = None) -> tuple[int, str]:
    """The code and message of the CLI's `✘ [ERROR] message [code: N]` for the same operation."""
    r = stack.cli(*args, input=input)
    m = re.fullmatch(r"✘ \[ERROR\] (.*) \[code: (\d+)\]\n", r.stderr, re.S)
    assert r.exit_code != 0 and m, r.stderr
    return int(m.group(2)), m.group(1)


def error_of(stack: Stack, method: str, *args: Any, binding: str = "VECTORIZE") -> str:
    with pytest.raises(BindingError) as e:
        stack.call(method, *args, binding=binding)
    return str(e.value)


def test_errors_are_thrown_as_the_binding_throws_them(stack):
    code, msg = cli_error(stack, "query", DOCS, "--vector", "1", "2")
    assert (code, msg) == (40006, "invalid query vector, expected 3 dimensions, and got 2 dimensions")
    assert error_of(stack, "query", [1, 2]) == f"VECTOR_QUERY_ERROR (code = {code}): {msg}"

    code, msg = cli_error(stack, "query", DOCS, "--vector-id", "no-such-id")
    assert code == 40034
    assert error_of(stack, "queryById", "no-such-id") == f"VECTOR_QUERY_ERROR (code = {code}): {msg}"

    # The per-request id caps are the REST API's (the CLI batches), so the messages are compared exactly.
    assert error_of(stack, "getByIds", [f"x{i}" for i in range(21)]) == \
        "VECTOR_GET_ERROR (code = 40007): too many ids in payload; max id count is 20, got 21"
    assert error_of(stack, "deleteByIds", [f"x{i}" for i in range(101)]) == \
        "VECTOR_DELETE_ERROR (code = 40007): too many ids in payload; max id count is 100, got 101"

    code, msg = cli_error(stack, "info", MISSING)
    assert (code, msg) == (3000, f'vectorize.index.not_found - Index name "{MISSING}"')
    assert error_of(stack, "describe", binding="MISSING") == f"INDEX_GET_ERROR (code = {code}): {msg}"
    assert error_of(stack, "insert", [{"id": "m", "values": [1]}], binding="MISSING") == \
        f"VECTOR_INSERT_ERROR (code = {code}): {msg}"

    # The CLI names the input line; the REST body has no file, so the message is compared exactly.
    bad = [{"id": "bad-dims", "values": [1, 2]}]
    assert error_of(stack, "insert", bad) == (
        "VECTOR_INSERT_ERROR (code = 40012): request body:1: invalid vector for id=\"bad-dims\", "
        "expected 3 dimensions, and got 2 dimensions")
    assert error_of(stack, "upsert", bad).startswith("VECTOR_UPSERT_ERROR (code = 40012): ")
    # The Workers binding's batch limit (1000 per call; the REST API, which the CLI uses, takes 5000).
    many = [{"id": f"many-{i}", "values": [1, 0, 0]} for i in range(1001)]
    assert error_of(stack, "upsert", many) == \
        "VECTOR_UPSERT_ERROR (code = 40007): too many vectors in payload; max vector count is 1000, got 1001"
    assert error_of(stack, "insert", many) == \
        "VECTOR_INSERT_ERROR (code = 40007): too many vectors in payload; max vector count is 1000, got 1001"
    assert stack.cli_json("get-vectors", DOCS, "--ids", "many-0") == []
    # As on Cloudflare, a legacy `false` reaches the service, which rejects a boolean.
    assert error_of(stack, "query", [1, 2, 3], {"returnMetadata": False}) == (
        "VECTOR_QUERY_ERROR (code = 40026): Failed to parse the request body as JSON: returnMetadata: expected value")
    # The binding's own check, before any request.
    assert error_of(stack, "query", [1, 2, 3], {"returnMetadata": "everything"}) == (
        'Invalid returnMetadata option. Expected: true, false, "none", "indexed" or "all"; got: everything')
    # Nothing was written by the failed calls.
    assert stack.cli_json("get-vectors", DOCS, "--ids", "bad-dims") == []
    assert stack.cli("info", MISSING).exit_code == 1
