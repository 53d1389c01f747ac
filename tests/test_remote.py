"""Remote mode against `vz serve` on loopback: every command prints what it prints locally.

Each command runs twice: locally against store A (the `vz` fixture's store) and with `--remote`
against a `vz serve` of store B, which the same commands keep identical. Outputs are compared
whole, after blanking only what must differ between two stores (mutation ids, timestamps, cursors).
Then export/upsert round-trips in both directions must be lossless, byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_server import ServedStore, served_store  # noqa: F401  (fixture)

VOLATILE = {"mutationId", "created_on", "modified_on", "processedUpToDatetime", "processedUpToMutation",
            "cursorExpirationTimestamp", "nextCursor"}


def norm(obj: Any) -> Any:
    """Blank the values that differ between two stores by nature (keeping null apart from a value)."""
    if isinstance(obj, dict):
        return {k: ("<v>" if v is not None else None) if k in VOLATILE else norm(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [norm(v) for v in obj]
    return obj


@pytest.fixture
def remote_env(served_store: ServedStore, monkeypatch: pytest.MonkeyPatch) -> ServedStore:  # noqa: F811
    monkeypatch.setenv("CLOUDFLARE_API_BASE_URL", served_store.api)
    monkeypatch.setenv("CLOUDFLARE_ACCOUNT_ID", served_store.account)
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", served_store.token or "")
    for var in ("CLOUDFLARE_API_KEY", "CLOUDFLARE_EMAIL", "VZ_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    return served_store


class Both:
    """Run one command locally and remotely; check the exit codes and outputs agree."""

    def __init__(self, vz: Any) -> None:
        self.vz = vz

    def __call__(self, *args: str, input: bytes | str | None = None, exit_code: int = 0,
                 raw: bool = False, same_stderr: bool = True) -> tuple[Any, Any]:
        loc = self.vz(*args, input=input)
        rem = self.vz("--remote", *args, input=input)
        assert (loc.exit_code, rem.exit_code) == (exit_code, exit_code), (args, loc.stderr, rem.stderr)
        if exit_code:
            assert loc.stdout == rem.stdout == ""
            if same_stderr:
                assert loc.stderr == rem.stderr, args
        elif raw:
            assert loc.stdout == rem.stdout, args
        else:
            assert norm(loc.json()) == norm(rem.json()), args
        return loc, rem


@pytest.fixture
def both(vz: Any, remote_env: ServedStore) -> Both:
    return Both(vz)


def records(n: int, dims: int, seed: int = 1) -> list[dict[str, Any]]:
    """Awkward but valid records: unicode ids, namespaces, nested metadata, extreme float32 values."""
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal((n, dims)).astype(np.float32)
    # subnormal, huge, negative zero, float32 max (whose shortest text reads back above it as a float64)
    extremes = [np.float32(1e-45), np.float32(3.4e38), np.float32(-0.0), -np.finfo(np.float32).max]
    vals[0, :min(dims, 4)] = extremes[:dims]
    out = []
    for i in range(n):
        r: dict[str, Any] = {"id": f"vec-{i:03d}" if i % 7 else f"é-ünï-{i}", "values": vals[i].tolist()}
        if i % 3 == 1:
            r["namespace"] = "ns-a"
        elif i % 3 == 2:
            r["namespace"] = "ns-b"
        if i % 4:
            r["metadata"] = {"genre": ["drama", "comedy", "news"][i % 3], "year": 1990 + i, "score": i / 8,
                             "nested": {"ok": bool(i % 2), "deep": {"s": f"x{i}"}}, "tags": ["a", f"t{i}"]}
        out.append(r)
    return out


def nd(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in recs)


def test_every_command_prints_the_same_json(both: Both, vz: Any, tmp_path: Path) -> None:
    data = tmp_path / "data.ndjson"
    recs = records(45, 4)
    data.write_bytes(nd(recs[:30]))

    # indexes
    both("list", "--json")
    both("create", "idx", "--dimensions", "4", "--metric", "cosine", "--description", "an index", "--json")
    both("create", "eu", "--dimensions", "4", "--metric", "euclidean", "--json")
    both("create", "pre", "--preset", "@cf/baai/bge-small-en-v1.5", "--json")
    both("create", "idx", "--dimensions", "4", "--metric", "cosine", "--json", exit_code=1)
    both("create", "idx", "--dimensions", "4", "--metric", "cosine", "--description", "an index",
         "--if-not-exists", "--json")
    both("create", "idx", "--dimensions", "5", "--metric", "cosine", "--if-not-exists", "--json", exit_code=1)
    both("create", "Bad_Name", "--dimensions", "4", "--metric", "cosine", "--json", exit_code=2)
    both("create", "nodims", "--metric", "cosine", "--json", exit_code=2)
    both("get", "idx", "--json")
    both("get", "nope", "--json", exit_code=1)
    both("list", "--json")
    both("info", "idx", "--json")  # before any mutation: dimensions and vectorCount only

    # metadata indexes, then writes
    both("create-metadata-index", "idx", "--property-name", "genre", "--type", "string", "--json")
    both("create-metadata-index", "idx", "--property-name", "year", "--type", "number", "--json")
    both("create-metadata-index", "idx", "--property-name", "nested.ok", "--type", "boolean", "--json")
    both("create-metadata-index", "idx", "--property-name", "genre", "--type", "string", "--if-not-exists", "--json")
    both("create-metadata-index", "idx", "--property-name", "genre", "--type", "number", "--json", exit_code=1)
    both("list-metadata-index", "idx", "--json")
    both("insert", "idx", "--file", str(data), "--json")
    both("insert", "idx", "--file", "-", "--json", input=nd(recs[25:35]))  # 5 ids already there: kept
    both("upsert", "idx", "--file", "-", "--json", input=nd(recs[35:45] + recs[:3]))
    both("upsert", "eu", "--file", str(data), "--json")
    bad = nd(recs[:2]) + b'{"id": "short", "values": [1, 2]}\nnot json\n'
    both("insert", "idx", "--file", "-", "--json", input=bad, exit_code=1)
    both("insert", "idx", "--file", "-", "--unparsable-behavior", "discard", "--json", input=bad)
    both("insert", "idx", "--file", "-", "--json", input=b"\n", exit_code=1)
    both("insert", "nope", "--file", str(data), "--json", exit_code=1)
    both("info", "idx", "--json")
    both("info", "nope", "--json", exit_code=1)

    # queries
    q = ["--vector", "0.5", "-1", "0.25", "2"]
    both("query", "idx", *q, "--json")
    both("query", "idx", *q, "--top-k", "10", "--return-values", "--return-metadata", "all", "--json")
    both("query", "idx", *q, "--top-k", "20", "--return-metadata", "indexed", "--json")
    both("query", "eu", *q, "--top-k", "7", "--return-values", "--json")
    both("query", "idx", *q, "--namespace", "ns-a", "--return-metadata", "all", "--json")
    both("query", "idx", *q, "--top-k", "50", "--filter", '{"genre": "drama", "year": {"$gte": 2000}}',
         "--return-metadata", "all", "--json")
    both("query", "idx", *q, "--filter", '{"genre": {"$in": ["news", "comedy"]}, "nested.ok": true}', "--json")
    both("query", "idx", "--vector-id", "vec-008", "--top-k", "3", "--return-values", "--json")
    both("query", "idx", "--vector-file", "-", "--json", input="[1, 2, 3, 4]")
    # the same failures, with the same exit codes and messages
    both("query", "nope", *q, "--json", exit_code=1)
    both("query", "idx", "--vector", "1", "2", "--json", exit_code=1)  # dimension mismatch
    both("query", "idx", "--vector-id", "no-such-id", "--json", exit_code=1)
    both("query", "idx", *q, "--filter", '{"genre": {"$regex": "x"}}', "--json", exit_code=2)
    both("query", "idx", *q, "--filter", '{"year": {"$gt": 1, "$eq": 2}}', "--json", exit_code=2)
    both("query", "idx", *q, "--top-k", "101", "--json", exit_code=2)
    both("query", "idx", *q, "--top-k", "51", "--return-values", "--json", exit_code=2)

    # reads by id, listing, export
    ids = [r["id"] for r in recs] + ["missing"]
    both("get-vectors", "idx", "--ids", *ids, "--json")  # 46 ids: three get_by_ids requests remotely
    both("get-vectors", "idx", "--ids-file", "-", "--json", input="\n".join(reversed(ids)))
    both("get-vectors", "idx", "--ids", "x" * 65, "--json", exit_code=2)
    both("get-vectors", "nope", "--ids", "a", "--json", exit_code=1)
    loc, rem = both("list-vectors", "idx", "--count", "7", "--json")
    both("list-vectors", "idx", "--count", "1000", "--json")
    page2 = [vz(*mode, "list-vectors", "idx", "--count", "7", "--cursor", r.json()["nextCursor"], "--json")
             for mode, r in (((), loc), (("--remote",), rem))]
    assert norm(page2[0].json()) == norm(page2[1].json()) and page2[0].json()["count"] == 7
    both("list-vectors", "idx", "--cursor", "garbage", "--json", exit_code=2)
    both("list-vectors", "idx", "--all", raw=True)
    both("list-vectors", "idx", "--all", "--count", "4", raw=True)
    both("export", "idx", raw=True)
    both("export", "idx", "--namespace", "ns-b", raw=True)
    both("export", "nope", exit_code=1)
    for mode in ((), ("--remote",)):
        r = vz(*mode, "export", "idx", "--output", str(tmp_path / f"out{len(mode)}.ndjson"))
        assert r.exit_code == 0 and r.stdout == ""
    assert (tmp_path / "out0.ndjson").read_bytes() == (tmp_path / "out1.ndjson").read_bytes()

    # deletes
    both("delete-vectors", "idx", "--ids", *ids[:30], "--json")  # 31 ids with "missing"
    both("delete-vectors", "idx", "--ids-file", "-", "--json", input="\n".join(ids[::2]))
    both("delete-vectors", "nope", "--ids", "a", "--json", exit_code=1)
    both("info", "idx", "--json")
    both("export", "idx", raw=True)
    both("delete-metadata-index", "idx", "--property-name", "year", "--json")
    both("delete-metadata-index", "idx", "--property-name", "year", "--if-exists", "--json")
    both("delete-metadata-index", "idx", "--property-name", "year", "--json", exit_code=1)
    both("list-metadata-index", "idx", "--json")
    both("delete", "eu", "--force", "--json")
    both("delete", "eu", "--force", "--if-exists", "--json")
    both("delete", "eu", "--force", "--json", exit_code=1)
    both("list", "--json")


def test_demo_builds_and_queries_the_same(both: Both) -> None:
    both("demo", "--json")  # 240 records of 384 dimensions, 2 metadata indexes, 6 filtered queries


def test_optimize_is_local_only(both: Both, vz: Any) -> None:
    """The one documented difference: Cloudflare maintains its indexes itself."""
    both("create", "idx", "--dimensions", "2", "--metric", "cosine", "--json")
    assert vz("optimize", "idx", "--json").exit_code == 0
    r = vz("--remote", "optimize", "idx", "--json")
    assert r.exit_code == 2 and r.stdout == "" and "optimize is local-only" in r.stderr


def test_human_output_matches_where_it_is_deterministic(both: Both, vz: Any) -> None:
    both("create", "idx", "--dimensions", "3", "--metric", "cosine", "--json")
    both("create-metadata-index", "idx", "--property-name", "g", "--type", "string", "--json")
    both("insert", "idx", "--file", "-", "--json", input=nd([{"id": f"v{i}", "values": [i, 1, 2]} for i in range(5)]))
    for args in (["list-metadata-index", "idx"], ["list-vectors", "idx", "--count", "10"],
                 ["query", "idx", "--vector", "1", "1", "1"], ["get-vectors", "idx", "--ids", "v1", "v3"]):
        loc, rem = vz(*args), vz("--remote", *args)
        assert (loc.exit_code, loc.stdout, loc.stderr) == (rem.exit_code, rem.stdout, rem.stderr), args


def test_remote_mode_needs_its_settings(vz: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "t")
    monkeypatch.delenv("CLOUDFLARE_ACCOUNT_ID", raising=False)
    r = vz("--remote", "list", "--json")
    assert r.exit_code == 2 and r.stdout == "" and "CLOUDFLARE_ACCOUNT_ID" in r.stderr


def test_wrong_token_is_an_auth_error(vz: Any, remote_env: ServedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "wrong")
    r = vz("--remote", "list", "--json")
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "✘ [ERROR] Authentication error [code: 10000]\n")


# --- round trips -----------------------------------------------------------------------------------
def lines(text: str) -> list[str]:
    """NDJSON lines: split on \n only (str.splitlines would also split inside strings at U+2028 etc.)."""
    return [x for x in text.split("\n") if x]


def sorted_lines(text: str) -> list[str]:
    return sorted(lines(text))


def assert_exact(exported: str, recs: list[dict[str, Any]]) -> None:
    """Every exported record is the original: float32 values bit for bit, metadata, namespace."""
    got = {o["id"]: o for o in map(json.loads, lines(exported))}
    assert sorted(got) == sorted(r["id"] for r in recs)
    for r in recs:
        o = got[r["id"]]
        a, b = np.array(o["values"], dtype=np.float32), np.array(r["values"], dtype=np.float32)
        assert a.tobytes() == b.tobytes(), r["id"]  # also tells -0.0 from 0.0
        assert o["metadata"] == r.get("metadata", {}) and o.get("namespace") == r.get("namespace")


def test_round_trip_local_to_remote_and_back(vz: Any, remote_env: ServedStore) -> None:
    recs = records(1100, 8, seed=7)  # more than one list page (1000) and many get_by_ids chunks
    assert vz("create", "src", "--dimensions", "8", "--metric", "dot-product").exit_code == 0
    assert vz("upsert", "src", "--file", "-", input=nd(recs)).exit_code == 0
    local = vz("export", "src")
    assert local.exit_code == 0
    assert_exact(local.stdout, recs)

    # push it up: vz export src | vz --remote upsert up --file -
    assert vz("--remote", "create", "up", "--dimensions", "8", "--metric", "dot-product").exit_code == 0
    r = vz("--remote", "upsert", "up", "--file", "-", "--json", input=local.stdout)
    assert (r.exit_code, r.json()["count"]) == (0, 1100), r.stderr
    remote = vz("--remote", "export", "up")
    assert remote.exit_code == 0
    assert sorted_lines(remote.stdout) == sorted_lines(local.stdout)

    # and pull it down again: vz --remote export up | vz upsert down --file -
    assert vz("create", "down", "--dimensions", "8", "--metric", "dot-product").exit_code == 0
    assert vz("upsert", "down", "--file", "-", input=remote.stdout).exit_code == 0
    assert sorted_lines(vz("export", "down").stdout) == sorted_lines(local.stdout)
    assert vz("--remote", "export", "up", "--namespace", "ns-a").stdout == vz("export", "src", "--namespace",
                                                                                "ns-a").stdout


def test_round_trip_remote_to_local_and_back(vz: Any, remote_env: ServedStore) -> None:
    recs = records(300, 5, seed=3)
    assert vz("--remote", "create", "prod", "--dimensions", "5", "--metric", "euclidean").exit_code == 0
    assert vz("--remote", "insert", "prod", "--file", "-", input=nd(recs)).exit_code == 0
    remote = vz("--remote", "export", "prod")
    assert remote.exit_code == 0
    assert_exact(remote.stdout, recs)
    assert vz("create", "local", "--dimensions", "5", "--metric", "euclidean").exit_code == 0
    assert vz("insert", "local", "--file", "-", input=remote.stdout).exit_code == 0
    local = vz("export", "local")
    assert sorted_lines(local.stdout) == sorted_lines(remote.stdout)
    assert vz("--remote", "create", "again", "--dimensions", "5", "--metric", "euclidean").exit_code == 0
    assert vz("--remote", "insert", "again", "--file", "-", input=local.stdout).exit_code == 0
    assert sorted_lines(vz("--remote", "export", "again").stdout) == sorted_lines(remote.stdout)


def test_shell_pipeline_pulls_an_index_down(vz: Any, remote_env: ServedStore) -> None:
    """The README's one-liner, with real processes: vz --remote export prod | vz upsert local --file -."""
    recs = records(40, 3, seed=5)
    assert vz("--remote", "create", "prod", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    assert vz("--remote", "insert", "prod", "--file", "-", input=nd(recs)).exit_code == 0
    assert vz("create", "local", "--dimensions", "3", "--metric", "cosine").exit_code == 0
    vz_bin = Path(sys.executable).with_name("vz")
    env = {k: v for k, v in os.environ.items() if k != "VZ_REMOTE"}  # VZ_STORE: the vz fixture's store
    p = subprocess.run(["bash", "-o", "pipefail", "-c", f"'{vz_bin}' --remote export prod | '{vz_bin}' upsert local "
                        "--file - --json"], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["count"] == 40
    assert_exact(vz("export", "local").stdout, recs)


# --- property: any valid record survives export -> remote upsert -> remote export -> local upsert -------
def _ok_key(k: str) -> bool:
    return "." not in k and '"' not in k and not k.startswith("$")


def _utf8_le(n: int):  # type: ignore[no-untyped-def]
    return lambda s: 0 < len(s.encode()) <= n


def _record_strategy():  # type: ignore[no-untyped-def]
    from hypothesis import strategies as st

    text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
    leaf = st.one_of(st.booleans(), st.integers(-(2 ** 53), 2 ** 53), text,
                     st.floats(allow_nan=False, allow_infinity=False), st.lists(text, max_size=3))
    keys = text.filter(_ok_key)
    metadata = st.dictionaries(keys, st.one_of(leaf, st.dictionaries(keys, leaf, max_size=3)), max_size=4)
    return st.fixed_dictionaries(
        # U+0000 is left out of ids: the local store's get_by_ids/delete_by_ids/upsert lose such ids
        # (their json_each lookups), a core bug reported to the lead, not a remote-mode one
        {"id": text.filter(_utf8_le(64)).filter(lambda s: "\x00" not in s),
         "values": st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=3, max_size=3)},
        optional={"namespace": text.filter(_utf8_le(64)), "metadata": metadata})


def test_any_valid_records_round_trip(vz: Any, remote_env: ServedStore) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    counter = iter(range(10_000))

    # one server for the whole property (starting one per example would take minutes); each example
    # works in indexes of its own
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.lists(_record_strategy(), min_size=1, max_size=12, unique_by=lambda r: r["id"]))
    def prop(recs: list[dict[str, Any]]) -> None:
        n = next(counter)
        src, up, down = f"src-{n}", f"up-{n}", f"down-{n}"
        for mode, name in (((), src), (("--remote",), up), ((), down)):
            assert vz(*mode, "create", name, "--dimensions", "3", "--metric", "cosine").exit_code == 0
        r = vz("upsert", src, "--file", "-", input=nd(recs))
        assert r.exit_code == 0, r.stderr
        local = vz("export", src).stdout
        assert_exact(local, recs)
        r = vz("--remote", "upsert", up, "--file", "-", input=local)
        assert r.exit_code == 0, r.stderr
        remote = vz("--remote", "export", up).stdout
        assert remote == local  # the same id order too: vz serve lists in byte order, like the store
        assert vz("upsert", down, "--file", "-", input=remote).exit_code == 0
        assert vz("export", down).stdout == local

    prop()
