"""Input is taken verbatim or refused (issue 18): --ids-file, VZ_* variables, terminal-safe human
output, click's parse errors in vz's error format, and error messages that quote what was given."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from corehelp import create, fails, write

from vzcli import envconf
from vzcli.errors import UsageError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

# what a terminal may interpret: C0 (but newline), DEL, C1
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")
ERROR_LINE = re.compile(r"✘ \[ERROR\] .+ \[code: \d+\]")


def ids_of(r: Any) -> list[str]:
    assert r.exit_code == 0, r.stderr
    return [v["id"] for v in r.json()]


# --- --ids-file -----------------------------------------------------------------------------------

@pytest.fixture
def spaced(vz: Any) -> Any:
    create(vz, "s", 2)
    write(vz, "s", [{"id": i, "values": [1, k]} for k, i in
                    enumerate(["a", " a", "a ", "a\tb", "x\ry", "\ufffdb", "b"])])
    return vz


def test_ids_file_is_read_verbatim(spaced: Any, tmp_path: Path) -> None:
    f = tmp_path / "ids"
    f.write_bytes(b" a\na \na\tb\r\nx\ry\nb")  # CRLF and LF terminators, a lone CR inside an id, no final newline
    assert ids_of(spaced("get-vectors", "s", "--ids-file", str(f), "--json")) == [" a", "a ", "a\tb", "x\ry", "b"]
    r = spaced("delete-vectors", "s", "--ids-file", "-", "--json", input=b" a\n")
    assert r.exit_code == 0 and r.json()["count"] == 1
    # the id " a" went, "a" (what stripping would have deleted) stays
    assert ids_of(spaced("get-vectors", "s", "--ids", "a", " a", "--json")) == ["a"]


def test_ids_file_invalid_utf8_is_an_error_naming_the_line(spaced: Any, tmp_path: Path) -> None:
    f = tmp_path / "ids"
    f.write_bytes(b"a\n\xffb\n")  # decoding with "replace" would make it "\ufffdb", a stored id
    err = fails(spaced("delete-vectors", "s", "--ids-file", str(f)), 2, 40008)
    assert f"{f}:2: not valid UTF-8" in err
    assert ids_of(spaced("get-vectors", "s", "--ids", "a", "\ufffdb", "--json")) == ["a", "\ufffdb"]
    err = fails(spaced("get-vectors", "s", "--ids-file", "-", input=b"\xc3\n"), 2, 40008)
    assert "<stdin>:1: not valid UTF-8" in err


def test_ids_file_blank_line_and_bad_ids_are_errors_with_file_line(spaced: Any, tmp_path: Path) -> None:
    f = tmp_path / "ids"
    f.write_bytes(b"a\n\nb\n")
    err = fails(spaced("delete-vectors", "s", "--ids-file", str(f)), 2, 40008)
    assert f"{f}:2: id must not be empty (a blank line; remove it)" in err
    f.write_bytes(b"a\r\n\r\n")
    assert f"{f}:2: id must not be empty" in fails(spaced("delete-vectors", "s", "--ids-file", str(f)), 2, 40008)
    f.write_bytes(b"a\nb\n" + b"i" * 65 + b"\n")
    assert f"{f}:3: id too long; max is 64 bytes, got 65 bytes" in fails(
        spaced("get-vectors", "s", "--ids-file", str(f)), 2, 40008)
    f.write_bytes(b"a\x00b\n")
    assert f"{f}:1: id 'a\\x00b' contains U+0000" in fails(spaced("get-vectors", "s", "--ids-file", str(f)), 2, 40008)
    f.write_bytes(b"")
    assert "no ids found" in fails(spaced("delete-vectors", "s", "--ids-file", str(f)), 2, 40000)
    assert spaced("info", "s", "--json").json()["vectorCount"] == 7  # nothing was deleted


# --- VZ_* environment variables ------------------------------------------------------------------

@pytest.mark.parametrize(("var", "value"), [
    ("VZ_LOCK_TIMEOUT", "abc"), ("VZ_LOCK_TIMEOUT", "-1"), ("VZ_LOCK_TIMEOUT", "nan"), ("VZ_LOCK_TIMEOUT", "inf"),
    ("VZ_MERGE_THRESHOLD", "abc"), ("VZ_MERGE_THRESHOLD", "0"), ("VZ_MERGE_THRESHOLD", "2.5"),
    ("VZ_RESIDENT_MB", "-1"), ("VZ_RESIDENT_MB", "1.5"), ("VZ_RESIDENT_MB", "lots"),
    ("VZ_REMOTE", "maybe"), ("VZ_DEBUG", "verbose"), ("VZ_API_TOKEN", "two words"), ("VZ_API_TOKEN", "t\x1b"),
])
def test_bad_environment_value_is_a_usage_error_before_any_write(vz: Any, monkeypatch: pytest.MonkeyPatch,
                                                                var: str, value: str) -> None:
    create(vz, "e", 2)
    monkeypatch.setenv(var, value)
    r = vz("insert", "e", "--file", "-", input='{"id": "a", "values": [1, 0]}\n')
    err = fails(r, 2, 40000)
    assert f"environment variable {var}" in err and "unset " + var in err and "internal error" not in err
    if var != "VZ_API_TOKEN":  # a token is never echoed
        assert repr(value) in err
    assert r.stdout == ""
    monkeypatch.delenv(var)
    assert vz("info", "e", "--json").json()["vectorCount"] == 0


def test_bad_merge_threshold_fails_before_the_write_commits(vz: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    create(vz, "e", 2)
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "lots")
    err = fails(vz("upsert", "e", "--file", "-", input='{"id": "a", "values": [1, 0]}\n'), 2, 40000)
    assert "VZ_MERGE_THRESHOLD='lots' is invalid: expected a whole number ≥ 1" in err
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "1")
    assert vz("info", "e", "--json").json()["vectorCount"] == 0


def test_bad_environment_value_stops_vz_serve(vz: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZ_LOCK_TIMEOUT", "soon")
    fails(vz("serve", "--port", "0"), 2, 40000)
    monkeypatch.delenv("VZ_LOCK_TIMEOUT")
    monkeypatch.setenv("VZ_API_TOKEN", "tok en")
    assert "VZ_API_TOKEN is invalid" in fails(vz("serve", "--port", "0"), 2, 40000)


def test_good_environment_values(vz: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"VZ_LOCK_TIMEOUT": "0.5", "VZ_MERGE_THRESHOLD": " 7", "VZ_REMOTE": "No", "VZ_DEBUG": "",
           "VZ_API_TOKEN": "s3cr3t-TOKEN_~", "VZ_STORE": "/x", "VZ_RESIDENT_MB": "0"}
    envconf.check_all(env)
    assert envconf.lock_timeout(env) == 0.5 and envconf.merge_threshold(env) == 7
    assert envconf.resident_mb(env) == 0 and envconf.resident_mb({"VZ_RESIDENT_MB": " 2048"}) == 2048
    assert envconf.resident_mb({}) == 1024
    assert envconf.remote(env) is False and envconf.debug(env) is False
    assert envconf.store_dir(env) == Path("/x") and envconf.api_token(env) == "s3cr3t-TOKEN_~"
    assert envconf.lock_timeout({}) == 60.0 and envconf.merge_threshold({}) == 2000 and envconf.store_dir({}) is None
    assert envconf.remote({"VZ_REMOTE": "yes"}) is True
    for var in ("VZ_LOCK_TIMEOUT", "VZ_MERGE_THRESHOLD", "VZ_DEBUG"):
        monkeypatch.setenv(var, "")  # empty means unset, as click reads an empty variable
    monkeypatch.setenv("VZ_REMOTE", "0")
    assert vz("list", "--json").stdout == "[]\n"
    monkeypatch.setenv("VZ_REMOTE", "1")  # remote mode, which then wants its settings
    for var in ("CLOUDFLARE_ACCOUNT_ID", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert "remote mode needs" in fails(vz("list", "--json"), 2, 40000)


def test_library_readers_validate_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vzcli.ann import merge_threshold
    from vzcli.store import Store

    monkeypatch.setenv("VZ_LOCK_TIMEOUT", "x")
    with pytest.raises(UsageError, match="VZ_LOCK_TIMEOUT"):
        Store(tmp_path)
    monkeypatch.setenv("VZ_MERGE_THRESHOLD", "-5")
    with pytest.raises(UsageError, match="VZ_MERGE_THRESHOLD"):
        merge_threshold()


# --- control characters in human output ------------------------------------------------------------

NASTY = ["\x1b[31mred", "bel\x07", "csi\x9b2J", "del\x7f", "[bold]markup[/bold]", "nl\nid"]


@pytest.fixture
def nasty(vz: Any) -> Any:
    create(vz, "n", 2)
    assert vz("create-metadata-index", "n", "--property-name", "t", "--type", "string").exit_code == 0
    write(vz, "n", [{"id": i, "values": [1, k], "namespace": "\x1b]0;title\x07",
                     "metadata": {"t": "\x1b[2J\x9b", "\x1b": 1}} for k, i in enumerate(NASTY)])
    return vz


def test_list_vectors_table_escapes_control_characters(nasty: Any) -> None:
    r = nasty("list-vectors", "n")
    assert r.exit_code == 0 and not RAW_CONTROL.search(r.stdout), repr(r.stdout)
    for shown in ("\\x1b[31mred", "bel\\x07", "csi\\x9b2J", "del\\x7f", "[bold]markup[/bold]", "nl\\nid"):
        assert f"│ {shown} " in r.stdout, (shown, r.stdout)
    assert [v["id"] for v in nasty("list-vectors", "n", "--json").json()["vectors"]] == sorted(
        NASTY, key=lambda s: s.encode())


@pytest.mark.parametrize("args", [["get-vectors", "n", "--ids", *NASTY],
                                  ["query", "n", "--vector", "1", "1", "--return-metadata", "all", "--top-k", "6"]])
def test_json_printed_for_humans_escapes_del_and_c1_and_json_is_unchanged(nasty: Any, args: list[str]) -> None:
    human, machine = nasty(*args), nasty(*args, "--json")
    assert human.exit_code == machine.exit_code == 0
    assert not RAW_CONTROL.search(human.stdout), repr(human.stdout)
    assert "\\u009b" in human.stdout and "\\u007f" in human.stdout
    assert json.loads(human.stdout) == json.loads(machine.stdout)  # the same document
    assert "\x9b" in machine.stdout and "\x7f" in machine.stdout  # --json: orjson's bytes, untouched
    assert machine.stdout.encode() == json.dumps(machine.json(), indent=2, ensure_ascii=False).encode() + b"\n"


def test_error_and_warning_messages_escape_control_characters(nasty: Any) -> None:
    r = nasty("query", "n", "--vector-id", "\x1b]0;pwned\x07")
    assert r.exit_code == 1 and not RAW_CONTROL.search(r.stderr)
    assert "\\x1b]0;pwned\\x07" in r.stderr and ERROR_LINE.fullmatch(r.stderr.strip())
    r = nasty("query", "n", "--vector", "1", "1", "--filter", '{"\\u009bq": 1}', "--json")
    assert r.exit_code == 0 and "\\x9bq" in r.stderr and not RAW_CONTROL.search(r.stderr)
    r = nasty("delete-metadata-index", "n", "--property-name", "\x1b[5m", "--if-exists")
    assert r.exit_code == 0 and "\\x1b[5m" in r.stdout and not RAW_CONTROL.search(r.stdout + r.stderr)
    r = nasty("query", "n", "--vector", "1", "\x1b[31m")
    assert r.exit_code == 2 and not RAW_CONTROL.search(r.stderr)


def test_index_and_metadata_tables_escape_control_characters(vz: Any) -> None:
    assert vz("create", "d", "--dimensions", "2", "--metric", "cosine", "--description", "\x1b]0;t\x07[red]x").exit_code == 0
    assert vz("create-metadata-index", "d", "--property-name", "p\x9b1m", "--type", "string").exit_code == 0
    for args in (["list"], ["get", "d"], ["list-metadata-index", "d"]):
        r = vz(*args)
        assert r.exit_code == 0 and not RAW_CONTROL.search(r.stdout + r.stderr), (args, r.stdout)
    assert "\\x1b]0;t\\x07[red]x" in vz("list").stdout
    assert "p\\x9b1m" in vz("list-metadata-index", "d").stdout
    assert vz("get", "d", "--json").json()["description"] == "\x1b]0;t\x07[red]x"


# --- parse errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "usage", "message"), [
    (["query", "x", "--top-k", "abc"], "vz query", "Invalid value for '--top-k' / '--topK': 'abc' is not a valid int."),
    (["query", "x", "--top-k", "1e308"], "vz query", "Invalid value for '--top-k' / '--topK': '1e308' is not a valid int."),
    (["list-vectors", "x", "--count", "many"], "vz list-vectors", "Invalid value for '--count': 'many' is not a valid int."),
    (["insert", "x"], "vz insert", "Missing option '--file'."),
    (["query"], "vz query", "Missing argument 'name'."),
    (["list", "--bogus"], "vz list", "No such option: --bogus"),
    (["--bogus", "list"], "vz", "No such option: --bogus"),
    (["nosuch"], "vz", "No such command 'nosuch'."),
    (["create", "x", "--metric", "manhattan"], "vz create",
     "Invalid value for '--metric': 'manhattan' is not one of 'euclidean', 'cosine', 'dot-product'."),
])
def test_parse_errors_use_the_error_format(vz: Any, args: list[str], usage: str, message: str) -> None:
    r = vz(*args)
    assert r.exit_code == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"Usage: {usage} [OPTIONS]")
    assert lines[1] == f"Try '{usage} -h' for help."
    assert lines[2:] == [f"✘ [ERROR] {message} [code: 40000]"]


def test_help_version_and_bare_vz_still_work(vz: Any) -> None:
    r = vz("--help")
    assert r.exit_code == 0 and r.stdout.startswith("Usage: vz [OPTIONS] COMMAND") and "VZ_REMOTE" in r.stdout
    assert vz("query", "-h").exit_code == 0
    assert vz("--version").exit_code == 0
    r = vz()
    assert r.exit_code == 2 and "Usage: vz [OPTIONS] COMMAND" in r.stdout + r.stderr and "✘" not in r.stderr


# --- error messages that quote what was given ------------------------------------------------------

def deep(n: int) -> str:
    return '{"a": ' * n + "1" + "}" * n


@pytest.mark.parametrize("depth", [9, 600, 5000])
def test_deep_filter_is_reported_as_too_deep(vz: Any, depth: int) -> None:
    create(vz, "f", 2)
    err = fails(vz("query", "f", "--vector", "1", "0", "--filter", deep(depth)), 2, 40030)
    assert "filter is nested too deeply: at most 8 levels" in err and "not valid JSON" not in err


def test_filter_at_the_depth_limit_gets_its_own_message(vz: Any) -> None:
    create(vz, "f", 2)
    err = fails(vz("query", "f", "--vector", "1", "0", "--filter", deep(8)), 2, 40030)
    assert "nested too deeply" not in err


def test_http_deep_filter_and_huge_topk(tmp_path: Path) -> None:
    from vzcli.server import create_app

    base = "/client/v4/accounts/acct/vectorize/v2/indexes"
    client = TestClient(create_app(tmp_path / "store"), base_url="http://127.0.0.1")
    assert client.post(base, json={"name": "h", "config": {"dimensions": 2, "metric": "cosine"}}).status_code == 200
    r = client.post(f"{base}/h/query", json={"vector": [1, 0], "filter": json.loads(deep(600))})
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == 40030
    assert "filter is nested too deeply: at most 8 levels" in r.json()["errors"][0]["message"]
    r = client.post(f"{base}/h/query", content=b'{"vector": [1, 0], "topK": 1e308}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["errors"] == [{"code": 40025, "message": "max top K is 100, but got 1e+308"}]
    r = client.post(f"{base}/h/query", json={"vector": [1, 0], "topK": 1e308, "returnValues": True})
    assert r.json()["errors"][0]["message"].startswith(
        "with returnValues=true or returnMetadata=all, max top K is 50, but got 1e+308;")


def test_cli_huge_topk_is_printed_as_given(vz: Any) -> None:
    create(vz, "t", 2)
    err = fails(vz("query", "t", "--vector", "1", "0", "--top-k", "1" + "0" * 30), 2, 40025)
    assert err.strip() == f"✘ [ERROR] max top K is 100, but got 1{'0' * 30} [code: 40025]"
