"""Metadata-index commands: create / list / delete, the limit of 10, errors, --backfill and coverage."""

from __future__ import annotations

import json
import re

import pytest
from corehelp import create, fails, rec, write

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def docs(vz):
    create(vz, "docs", 2)
    return "docs"


def _mi(vz, name, prop, typ, *extra):
    r = vz("create-metadata-index", name, "--property-name", prop, "--type", typ, *extra, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def _list(vz, name):
    r = vz("list-metadata-index", name, "--json")
    assert r.exit_code == 0, r.stderr
    return r.json()


def _ids(vz, name, flt, top_k="100"):
    r = vz("query", name, "--vector", "1", "0", "--top-k", top_k, "--filter", json.dumps(flt), "--json")
    assert r.exit_code == 0, r.stderr
    return sorted(m["id"] for m in r.json()["matches"])


def test_create_list_delete(vz, docs) -> None:
    out = _mi(vz, docs, "genre", "string")
    assert list(out) == ["mutationId"] and UUID4.match(out["mutationId"])
    assert vz("info", docs, "--json").json()["processedUpToMutation"] == out["mutationId"]
    r = vz("create-metadata-index", docs, "--propertyName", "year", "--type", "number", "--json")
    assert r.exit_code == 0
    _mi(vz, docs, "meta.flag", "boolean")
    assert _list(vz, docs) == [{"propertyName": "genre", "indexType": "string"},
                               {"propertyName": "year", "indexType": "number"},
                               {"propertyName": "meta.flag", "indexType": "boolean"}]
    r = vz("delete-metadata-index", docs, "--propertyName", "year", "--json")
    assert r.exit_code == 0 and UUID4.match(r.json()["mutationId"])
    assert [m["propertyName"] for m in _list(vz, docs)] == ["genre", "meta.flag"]


def test_human_output(vz, docs) -> None:
    r = vz("list-metadata-index", docs)
    assert r.exit_code == 0 and r.stdout == "" and "haven't created any metadata indexes" in r.stderr
    assert vz("list-metadata-index", docs, "--json").stdout == "[]\n"
    r = vz("create-metadata-index", docs, "--property-name", "genre", "--type", "string")
    assert r.exit_code == 0 and "Successfully enqueued metadata index creation request" in r.stdout
    r = vz("list-metadata-index", docs)
    assert r.exit_code == 0 and "genre" in r.stdout and "string" in r.stdout
    r = vz("delete-metadata-index", docs, "--property-name", "genre")
    assert r.exit_code == 0 and "Successfully enqueued metadata index deletion request" in r.stdout


def test_at_most_ten(vz, docs) -> None:
    for i in range(10):
        _mi(vz, docs, f"p{i}", "string")
    r = vz("create-metadata-index", docs, "--property-name", "p10", "--type", "number", "--json")
    err = fails(r, 1, 40040)
    assert "already has 10 metadata indexes" in err and r.stdout == ""
    assert len(_list(vz, docs)) == 10
    vz("delete-metadata-index", docs, "--property-name", "p3")
    _mi(vz, docs, "p10", "number")
    assert len(_list(vz, docs)) == 10


def test_duplicate_and_missing(vz, docs) -> None:
    _mi(vz, docs, "genre", "string")
    err = fails(vz("create-metadata-index", docs, "--property-name", "genre", "--type", "string"), 1, 40040)
    assert 'metadata index for property "genre" already exists' in err
    fails(vz("create-metadata-index", docs, "--property-name", "genre", "--type", "number"), 1, 40040)
    assert _mi(vz, docs, "genre", "string", "--if-not-exists") == {"mutationId": None}
    # --if-not-exists with another type is still a conflict
    fails(vz("create-metadata-index", docs, "--property-name", "genre", "--type", "number", "--if-not-exists"),
          1, 40040)
    err = fails(vz("delete-metadata-index", docs, "--property-name", "nope"), 1, 40040)
    assert 'no metadata index for property "nope"' in err
    r = vz("delete-metadata-index", docs, "--property-name", "nope", "--if-exists", "--json")
    assert r.exit_code == 0 and r.json() == {"mutationId": None}


@pytest.mark.parametrize("args", [
    ["--property-name", "p", "--type", "date"], ["--property-name", "p"], ["--type", "string"],
    ["--property-name", "", "--type", "string"], ["--property-name", "$p", "--type", "string"],
    ["--property-name", 'a"b', "--type", "string"], ["--property-name", "a..b", "--type", "string"]])
def test_bad_arguments_are_usage_errors(vz, docs, args) -> None:
    r = vz("create-metadata-index", docs, *args, "--json")
    assert r.exit_code == 2, r.stderr
    assert r.stdout == ""
    assert _list(vz, docs) == []


def test_unknown_index(vz, docs) -> None:
    fails(vz("create-metadata-index", "nope", "--property-name", "p", "--type", "string"), 1, 3000)
    fails(vz("list-metadata-index", "nope"), 1, 3000)
    fails(vz("delete-metadata-index", "nope", "--property-name", "p"), 1, 3000)


# --- coverage: vectors written before the index ------------------------------------------------------

def test_vectors_before_the_index_are_not_filterable_until_reupserted(vz, docs) -> None:
    write(vz, docs, [rec("old1", [1, 0], metadata={"g": "a"}), rec("old2", [1, 0], metadata={"g": "a"})])
    r = vz("create-metadata-index", docs, "--property-name", "g", "--type", "string", "--json")
    assert r.exit_code == 0
    assert "2 existing vector(s)" in r.stderr and "--backfill" in r.stderr
    assert json.loads(r.stdout) == {"mutationId": r.json()["mutationId"]}  # the warning stayed off stdout
    write(vz, docs, [rec("new", [1, 0], metadata={"g": "a"})])
    assert _ids(vz, docs, {"g": "a"}) == ["new"]
    # insert of an existing id keeps the old record, so it stays unindexed
    write(vz, docs, [rec("old1", [1, 0], metadata={"g": "a"})])
    assert _ids(vz, docs, {"g": "a"}) == ["new"]
    # re-upserting makes it filterable, even when the record is identical to the stored one
    write(vz, docs, [rec("old1", [1, 0], metadata={"g": "a"})], upsert=True)
    assert _ids(vz, docs, {"g": "a"}) == ["new", "old1"]
    write(vz, docs, [rec("old2", [0, 1], metadata={"g": "a"})], upsert=True)
    assert _ids(vz, docs, {"g": "a"}) == ["new", "old1", "old2"]


def test_no_warning_on_an_empty_index(vz, docs) -> None:
    r = vz("create-metadata-index", docs, "--property-name", "g", "--type", "string")
    assert r.exit_code == 0 and r.stderr == ""


def test_backfill_indexes_existing_vectors(vz, docs) -> None:
    write(vz, docs, [rec("s", [1, 0], metadata={"g": "a", "n": {"x": 3}}), rec("t", [1, 0], metadata={"g": 5}),
                     rec("u", [1, 0])])
    r = vz("create-metadata-index", docs, "--property-name", "g", "--type", "string", "--backfill", "--json")
    assert r.exit_code == 0 and r.stderr == ""
    _mi(vz, docs, "n.x", "number", "--backfill")
    assert _ids(vz, docs, {"g": "a"}) == ["s"]
    assert _ids(vz, docs, {"n.x": {"$gte": 3}}) == ["s"]
    assert _ids(vz, docs, {"g": {"$ne": "zzz"}}) == ["s"]  # t has a number: not indexed for a string index


def test_deleting_a_metadata_index_makes_its_filter_match_nothing(vz, docs) -> None:
    _mi(vz, docs, "g", "string")
    write(vz, docs, [rec("a", [1, 0], metadata={"g": "x"})])
    assert _ids(vz, docs, {"g": "x"}) == ["a"]
    vz("delete-metadata-index", docs, "--property-name", "g")
    r = vz("query", docs, "--vector", "1", "0", "--filter", '{"g": "x"}', "--json")
    assert r.exit_code == 0 and r.json() == {"count": 0, "matches": []}
    assert "'g' has no metadata index" in r.stderr
    # recreating it without --backfill does not bring old values back
    _mi(vz, docs, "g", "string")
    assert _ids(vz, docs, {"g": "x"}) == []


def test_delete_index_drops_its_metadata_indexes(vz, docs) -> None:
    _mi(vz, docs, "g", "string")
    vz("delete", docs, "-y")
    create(vz, docs, 2)
    assert _list(vz, docs) == []
