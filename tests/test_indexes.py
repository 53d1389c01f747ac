"""Index commands: create, delete, get, list, info — every success shape and every error path."""

from __future__ import annotations

import json
import re

import pytest
from corehelp import create, fails, rec, write

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _strip_times(obj: dict) -> dict:
    assert TS.match(obj["created_on"]) and obj["created_on"] == obj["modified_on"], obj
    return {k: v for k, v in obj.items() if k not in ("created_on", "modified_on")}


# --- create -------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot-product"])
def test_create_json_is_the_index_object(vz, metric) -> None:
    r = vz("create", "docs", "--dimensions", "32", "--metric", metric, "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert list(out) == ["name", "config", "created_on", "modified_on"]
    assert _strip_times(out) == {"name": "docs", "config": {"dimensions": 32, "metric": metric}}
    assert r.stderr == ""


def test_create_with_description_and_get_list_agree(vz) -> None:
    r = vz("create", "d-1", "--dimensions", "3", "--metric", "euclidean", "--description", "hello", "--json")
    assert r.exit_code == 0
    created = r.json()
    assert list(created) == ["name", "description", "config", "created_on", "modified_on"]
    assert created["description"] == "hello"
    got = vz("get", "d-1", "--json")
    assert got.exit_code == 0 and got.json() == created
    listed = vz("list", "--json")
    assert listed.exit_code == 0 and listed.json() == [created]


def test_create_human_output_has_binding_snippet(vz) -> None:
    r = vz("create", "docs", "--dimensions", "3", "--metric", "cosine")
    assert r.exit_code == 0
    assert "✅ Successfully created a new Vectorize index: 'docs'" in r.stdout
    assert '"index_name": "docs"' in r.stdout


@pytest.mark.parametrize("dims", ["1", "1536"])
def test_create_dimension_bounds_accepted(vz, dims) -> None:
    r = vz("create", "x", "--dimensions", dims, "--metric", "cosine", "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["config"]["dimensions"] == int(dims)


@pytest.mark.parametrize("dims", ["0", "1537", "-3"])
def test_create_dimension_out_of_range_is_usage_error(vz, store, dims) -> None:
    r = vz("create", "x", "--dimensions", dims, "--metric", "cosine", "--json")
    err = fails(r, 2, 3001)
    assert "Dimensions must be in range: [1, 1536]" in err
    assert r.stdout == ""


def test_create_bad_metric_is_usage_error(vz) -> None:
    r = vz("create", "x", "--dimensions", "3", "--metric", "manhattan", "--json")
    assert r.exit_code == 2
    assert "manhattan" in r.stderr and r.stdout == ""


def test_create_needs_dimensions_and_metric(vz) -> None:
    fails(vz("create", "x", "--dimensions", "3", "--json"), 2, 3001)
    fails(vz("create", "x", "--metric", "cosine", "--json"), 2, 3001)


@pytest.mark.parametrize("preset,dims", [
    ("@cf/baai/bge-small-en-v1.5", 384), ("@cf/baai/bge-base-en-v1.5", 768),
    ("@cf/baai/bge-large-en-v1.5", 1024), ("openai/text-embedding-ada-002", 1536),
    ("cohere/embed-multilingual-v2.0", 768)])
def test_presets(vz, preset, dims) -> None:
    r = vz("create", "p", "--preset", preset, "--json")
    assert r.exit_code == 0, r.stderr
    assert r.json()["config"] == {"dimensions": dims, "metric": "cosine"}


def test_preset_with_agreeing_options_is_fine(vz) -> None:
    r = vz("create", "p", "--preset", "@cf/baai/bge-small-en-v1.5", "--dimensions", "384", "--metric", "cosine",
           "--json")
    assert r.exit_code == 0
    assert r.json()["config"] == {"dimensions": 384, "metric": "cosine"}


@pytest.mark.parametrize("extra,word", [
    (["--dimensions", "3"], " dimensions 3 (the preset has 384)"),
    (["--metric", "euclidean"], " metric euclidean (the preset has cosine)")])
def test_preset_disagreeing_is_usage_error(vz, store, extra, word) -> None:
    r = vz("create", "p", "--preset", "@cf/baai/bge-small-en-v1.5", *extra, "--json")
    err = fails(r, 2, 3001)
    assert word in err
    assert vz("list", "--json").json() == []


def test_unknown_preset_is_usage_error(vz) -> None:
    r = vz("create", "p", "--preset", "nope/model", "--json")
    assert r.exit_code == 2 and r.stdout == ""


@pytest.mark.parametrize("name", ["../x", "A", "", "a" * 65, "1abc", "a_b", "a b", "a/b", "é"])
def test_bad_index_names(vz, store, name) -> None:
    r = vz("create", name, "--dimensions", "3", "--metric", "cosine", "--json")
    fails(r, 2, 3001)
    assert r.stdout == ""
    # nothing was created, not even outside the store
    assert not (store.parent / "x").exists()
    assert vz("list", "--json").json() == []


def test_longest_name_is_fine(vz) -> None:
    name = "a" + "b-9" * 21  # 64 bytes
    assert len(name) == 64
    assert create(vz, name, 3)["name"] == name


@pytest.mark.parametrize("cmd", [["get"], ["info"], ["delete", "-y"], ["list-vectors"], ["list-metadata-index"]])
def test_bad_name_rejected_by_every_command(vz, cmd) -> None:
    fails(vz(cmd[0], "../x", *cmd[1:]), 2, 3001)


def test_duplicate_create(vz) -> None:
    first = create(vz, "docs", 3)
    err = fails(vz("create", "docs", "--dimensions", "3", "--metric", "cosine", "--json"), 1, 3002)
    assert 'vectorize.index.duplicate_name - Index name "docs"' in err
    assert vz("get", "docs", "--json").json() == first


def test_if_not_exists_same_config_returns_existing(vz) -> None:
    first = create(vz, "docs", 3)
    r = vz("create", "docs", "--dimensions", "3", "--metric", "cosine", "--if-not-exists", "--json")
    assert r.exit_code == 0 and r.json() == first


def test_if_not_exists_different_config_names_fields(vz) -> None:
    create(vz, "docs", 3)
    r = vz("create", "docs", "--dimensions", "4", "--metric", "euclidean", "--if-not-exists", "--json")
    err = fails(r, 1, 3002)
    assert "dimensions 3 != 4" in err and "metric cosine != euclidean" in err
    r = vz("create", "docs", "--dimensions", "3", "--metric", "dot-product", "--if-not-exists", "--json")
    err = fails(r, 1, 3002)
    assert "metric cosine != dot-product" in err and "dimensions" not in err.split("configuration:")[1]
    r = vz("create", "docs", "--dimensions", "3", "--metric", "cosine", "--description", "new",
           "--if-not-exists", "--json")
    assert "description" in fails(r, 1, 3002)


# --- delete -------------------------------------------------------------------------------------

def test_delete_removes_index_and_files(vz, store) -> None:
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 2, 3])])
    assert (store / "indexes" / "docs").is_dir()
    r = vz("delete", "docs", "-y", "--json")
    assert r.exit_code == 0
    assert r.json() == {"name": "docs", "deleted": True}
    assert not (store / "indexes" / "docs").exists()
    fails(vz("get", "docs", "--json"), 1, 3000)
    assert vz("list", "--json").json() == []
    # the name can be reused, and the new index is empty
    create(vz, "docs", 5)
    assert vz("info", "docs", "--json").json() == {"dimensions": 5, "vectorCount": 0}


def test_delete_without_tty_proceeds_without_asking(vz) -> None:
    create(vz, "docs", 3)
    r = vz("delete", "docs")
    assert r.exit_code == 0
    assert "✅ Deleted index docs" in r.stdout
    assert vz("list", "--json").json() == []


def test_delete_unknown(vz) -> None:
    create(vz, "other", 3)
    err = fails(vz("delete", "nope", "-y", "--json"), 1, 3000)
    assert 'Index name "nope"' in err
    r = vz("delete", "nope", "--if-exists", "--json")
    assert r.exit_code == 0 and r.json() == {"name": "nope", "deleted": False}


def test_delete_on_missing_store(vz, store) -> None:
    fails(vz("delete", "nope", "-y"), 1, 3000)
    r = vz("delete", "nope", "-y", "--if-exists", "--json")
    assert r.exit_code == 0 and r.json() == {"name": "nope", "deleted": False}
    assert not store.exists()


# --- get / list / info --------------------------------------------------------------------------

def test_get_unknown(vz) -> None:
    create(vz, "a", 3)
    err = fails(vz("get", "b", "--json"), 1, 3000)
    assert err.startswith('✘ [ERROR] vectorize.index.not_found - Index name "b"')


def test_list_empty_json_and_human_hint(vz) -> None:
    r = vz("list", "--json")
    assert r.exit_code == 0 and r.stdout == "[]\n" and r.stderr == ""
    r = vz("list")
    assert r.exit_code == 0 and r.stdout == ""
    assert "You haven't created any indexes" in r.stderr
    assert vz("-q", "list").stderr == ""


def test_list_is_sorted_and_human_table(vz) -> None:
    for n in ("b", "a", "c"):
        create(vz, n, 3)
    assert [i["name"] for i in vz("list", "--json").json()] == ["a", "b", "c"]
    r = vz("list")
    assert r.exit_code == 0
    assert r.stdout.index("│ a ") < r.stdout.index("│ b ") < r.stdout.index("│ c ")


def test_info_before_and_after_mutations(vz) -> None:
    create(vz, "docs", 3)
    assert vz("info", "docs", "--json").json() == {"dimensions": 3, "vectorCount": 0}
    m1 = write(vz, "docs", [rec("a", [1, 2, 3]), rec("b", [3, 2, 1])])["mutationId"]
    info = vz("info", "docs", "--json").json()
    assert list(info) == ["dimensions", "vectorCount", "processedUpToDatetime", "processedUpToMutation"]
    assert info["vectorCount"] == 2 and info["processedUpToMutation"] == m1 and UUID4.match(m1)
    assert TS.match(info["processedUpToDatetime"])
    r = vz("delete-vectors", "docs", "--ids", "a", "--json")
    m2 = r.json()["mutationId"]
    info2 = vz("info", "docs", "--json").json()
    assert info2["vectorCount"] == 1 and info2["processedUpToMutation"] == m2 != m1
    assert info2["processedUpToDatetime"] >= info["processedUpToDatetime"]


def test_info_unknown(vz) -> None:
    create(vz, "docs", 3)
    fails(vz("info", "nope", "--json"), 1, 3000)


def test_info_human_table(vz) -> None:
    create(vz, "docs", 7)
    r = vz("info", "docs")
    assert r.exit_code == 0 and "vectorCount" in r.stdout and "│ 7 " in r.stdout


# --- --json discipline and the missing store ------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["create", "j", "--dimensions", "3", "--metric", "cosine"], ["list"], ["get", "docs"], ["info", "docs"],
    ["delete", "docs", "-y"], ["list-metadata-index", "docs"], ["list-vectors", "docs"],
    ["query", "docs", "--vector", "1", "2", "3"], ["get-vectors", "docs", "--ids", "a"],
    ["delete-vectors", "docs", "--ids", "a"], ["optimize", "docs"],
    ["create-metadata-index", "docs", "--property-name", "p", "--type", "string"],
    ["delete-metadata-index", "docs", "--property-name", "q", "--if-exists"]])
def test_json_stdout_is_exactly_one_document(vz, args) -> None:
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 2, 3])])
    r = vz(*args, "--json")
    assert r.exit_code == 0, r.stderr
    json.loads(r.stdout)  # one document, nothing before or after it
    assert r.stdout.endswith("\n") and r.stdout.strip().startswith(("{", "["))


@pytest.mark.parametrize("args,exit_code,code", [
    (["list", "--json"], 0, None), (["get", "docs", "--json"], 1, 3000), (["info", "docs", "--json"], 1, 3000),
    (["list-vectors", "docs", "--json"], 1, 3000), (["get-vectors", "docs", "--ids", "a"], 1, 3000),
    (["query", "docs", "--vector", "1"], 1, 3000), (["list-metadata-index", "docs"], 1, 3000),
    (["export", "docs"], 1, 3000), (["list-vectors", "docs", "--all"], 1, 3000)])
def test_read_commands_on_missing_store_do_not_create_it(vz, store, args, exit_code, code) -> None:
    r = vz(*args)
    assert r.exit_code == exit_code, r.stderr
    if code is not None:
        fails(r, exit_code, code)
    assert not store.exists()


def test_write_to_unknown_index_does_not_create_store(vz, store) -> None:
    fails(vz("insert", "docs", "--file", "-", input='{"id":"a","values":[1]}\n'), 1, 3000)
    fails(vz("delete-vectors", "docs", "--ids", "a"), 1, 3000)
    fails(vz("create-metadata-index", "docs", "--property-name", "p", "--type", "string"), 1, 3000)
    fails(vz("delete-metadata-index", "docs", "--property-name", "p"), 1, 3000)
    assert not store.exists()


def test_store_option_overrides_env(vz, tmp_path) -> None:
    other = tmp_path / "other"
    r = vz("--store", str(other), "create", "x", "--dimensions", "3", "--metric", "cosine", "--json")
    assert r.exit_code == 0
    assert (other / "catalog.sqlite3").exists()
    assert vz("list", "--json").json() == []
    assert [i["name"] for i in vz("--store", str(other), "list", "--json").json()] == ["x"]
