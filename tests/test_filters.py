"""Metadata filters end to end: the docs' worked example, every operator, every validation rule."""

from __future__ import annotations

import json

import numpy as np
import pytest
from corehelp import create, fails, rec, write

LONG = "é" * 40  # 80 bytes; indexed as its first 64 bytes = 32 × "é"
EDGE = "a" * 63 + "é"  # 65 bytes; cut at the UTF-8 boundary to 63 × "a"

RECORDS = [
    rec("v1", [1, 0], metadata={"s": "apple", "n": 1, "b": True, "nest": {"x": 1}, "free": "x"}, namespace="ns"),
    rec("v2", [0.9, 0.1], metadata={"s": "banana", "n": 2.5, "b": False}, namespace="ns"),
    rec("v3", [0.8, 0.2], metadata={"s": "cherry", "n": -3}),
    rec("v4", [0.7, 0.3], metadata={"s": 5, "n": "7", "b": "true"}),  # every type wrong: nothing indexed
    rec("v5", [0.6, 0.4]),
    rec("v6", [0.5, 0.5], metadata={"s": "Apple", "n": 1e10, "b": True, "nest": {"x": 2}}),
    rec("v7", [0.4, 0.6], metadata={"s": LONG, "n": 0}),
    rec("v8", [0.3, 0.7], metadata={"s": ["x", "y"]}),  # string arrays are not indexed
    rec("v9", [0.2, 0.8], metadata={"s": EDGE}),
]
ALL = {r["id"] for r in RECORDS}
HAS_S = {"v1", "v2", "v3", "v6", "v7", "v9"}


@pytest.fixture
def idx(vz):
    create(vz, "f", 2)
    for prop, typ in (("s", "string"), ("n", "number"), ("b", "boolean"), ("nest.x", "number")):
        assert vz("create-metadata-index", "f", "--property-name", prop, "--type", typ).exit_code == 0
    write(vz, "f", RECORDS)
    return "f"


def _match(vz, name, flt, *extra):
    r = vz("query", name, "--vector", "1", "0", "--top-k", "100", "--filter",
           flt if isinstance(flt, str) else json.dumps(flt), *extra, "--json")
    assert r.exit_code == 0, r.stderr
    return r


CASES = [
    ({"s": "apple"}, {"v1"}),
    ({"s": {"$eq": "apple"}}, {"v1"}),
    ({"s": {"$ne": "apple"}}, HAS_S - {"v1"}),
    ({"s": {"$in": ["apple", "cherry", "zzz"]}}, {"v1", "v3"}),
    ({"s": {"$nin": ["apple", "cherry"]}}, HAS_S - {"v1", "v3"}),
    ({"s": {"$in": []}}, set()),
    ({"s": {"$nin": []}}, HAS_S),
    ({"s": {"$lt": "b"}}, {"v1", "v6", "v9"}),  # bytes: "Apple" < "a…" < "apple" < "b"
    ({"s": {"$gte": "b", "$lt": "c"}}, {"v2"}),
    ({"s": {"$gt": "cherry"}}, {"v7"}),  # "é" is 0xC3…, above every ASCII letter
    ({"s": {"$gte": "cherry"}}, {"v3", "v7"}),
    ({"s": {"$lte": "Apple"}}, {"v6"}),
    ({"s": {"$gt": "apple", "$lte": "cherry"}}, {"v2", "v3"}),
    ({"s": None}, ALL - HAS_S),
    ({"s": {"$eq": None}}, ALL - HAS_S),
    ({"s": {"$ne": None}}, HAS_S),
    ({"s": {"$in": ["apple", None]}}, {"v1"} | (ALL - HAS_S)),
    ({"s": {"$in": [None]}}, ALL - HAS_S),
    ({"s": {"$nin": ["apple", None]}}, HAS_S - {"v1"}),
    ({"s": 5}, set()),  # v4's 5 was never indexed: wrong type
    ({"s": {"$in": [5, "banana", True]}}, {"v2"}),
    ({"s": {"$nin": [5, "banana"]}}, HAS_S - {"v2"}),
    ({"s": True}, set()),
    ({"s": {"$ne": 5}}, set()),  # a type mismatch never matches, not even $ne
    ({"s": LONG}, {"v7"}),  # filter strings are cut to 64 bytes too
    ({"s": "é" * 32}, {"v7"}),
    ({"s": "é" * 32 + "x"}, {"v7"}),
    ({"s": "é" * 31}, set()),
    ({"s": "a" * 63}, {"v9"}),
    ({"s": EDGE}, {"v9"}),
    ({"n": 1}, {"v1"}),
    ({"n": 1.0}, {"v1"}),
    ({"n": {"$gt": 0}}, {"v1", "v2", "v6"}),
    ({"n": {"$gte": 0, "$lte": 2.5}}, {"v1", "v2", "v7"}),
    ({"n": {"$gt": -3, "$lt": 1}}, {"v7"}),
    ({"n": {"$lt": 0}}, {"v3"}),
    ({"n": {"$lte": -3}}, {"v3"}),
    ({"n": {"$gte": 1e10}}, {"v6"}),
    ({"n": {"$ne": 1}}, {"v2", "v3", "v6", "v7"}),
    ({"n": "7"}, set()),
    ({"n": {"$gt": "a"}}, set()),  # a string range on a number index
    ({"n": {"$in": [1, 2.5, "x"]}}, {"v1", "v2"}),
    ({"n": {"$nin": [1, 2.5]}}, {"v3", "v6", "v7"}),
    ({"b": True}, {"v1", "v6"}),
    ({"b": False}, {"v2"}),
    ({"b": {"$ne": True}}, {"v2"}),
    ({"b": {"$in": [True, False]}}, {"v1", "v2", "v6"}),
    ({"b": {"$nin": [True]}}, {"v2"}),
    ({"b": "true"}, set()),
    ({"b": 1}, set()),
    ({"b": {"$gt": "a"}}, set()),
    ({"b": {"$gte": 0}}, set()),
    ({"nest.x": 1}, {"v1"}),
    ({"nest.x": {"$gte": 1}}, {"v1", "v6"}),
    ({"s": {"$ne": "banana"}, "n": {"$gte": 0}}, {"v1", "v6", "v7"}),  # implicit AND
    ({"s": "apple", "b": False}, set()),
    ({"b": True, "nest.x": {"$gt": 1}, "n": {"$gt": 5}}, {"v6"}),
]


@pytest.mark.parametrize("flt,expected", CASES, ids=[json.dumps(c[0])[:60] for c in CASES])
def test_operator(vz, idx, flt, expected) -> None:
    for extra in ([], ["--exact"]):
        r = _match(vz, idx, flt, *extra)
        got = r.json()
        assert {m["id"] for m in got["matches"]} == expected
        assert got["count"] == len(expected)
        assert r.stderr == ""


def test_filtered_scores_equal_unfiltered(vz, idx) -> None:
    unfiltered = {m["id"]: m["score"] for m in _match(vz, idx, {"s": {"$ne": "q"}}).json()["matches"]}
    r = vz("query", idx, "--vector", "1", "0", "--top-k", "100", "--json")
    full = {m["id"]: m["score"] for m in r.json()["matches"]}
    assert all(full[k] == v for k, v in unfiltered.items())
    assert len(full) == len(ALL)


@pytest.mark.parametrize("flt", [{"free": "x"}, {"zzz": 1}, {"s": "apple", "zzz": {"$ne": 1}}, {"nest": 1}])
def test_unindexed_property_matches_nothing_and_warns(vz, idx, flt) -> None:
    r = vz("query", idx, "--vector", "1", "0", "--filter", json.dumps(flt), "--json")
    assert r.exit_code == 0 and r.json() == {"count": 0, "matches": []}
    assert "has no metadata index" in r.stderr and "vz create-metadata-index f --property-name" in r.stderr
    assert vz("-q", "query", idx, "--vector", "1", "0", "--filter", json.dumps(flt)).stderr == ""


def test_namespace_applies_before_the_filter(vz, idx) -> None:
    r = _match(vz, idx, {"s": {"$ne": "zzz"}}, "--namespace", "ns")
    assert {m["id"] for m in r.json()["matches"]} == {"v1", "v2"}
    assert all(m["namespace"] == "ns" for m in r.json()["matches"])
    r = _match(vz, idx, {"s": "cherry"}, "--namespace", "ns")
    assert r.json() == {"count": 0, "matches": []}
    r = vz("query", idx, "--vector", "1", "0", "--top-k", "1", "--namespace", "ns", "--filter", '{"b": false}', "--json")
    assert [m["id"] for m in r.json()["matches"]] == ["v2"]


def test_return_metadata_indexed(vz, idx) -> None:
    r = vz("query", idx, "--vector", "1", "0", "--top-k", "100", "--return-metadata", "indexed", "--json")
    got = {m["id"]: m["metadata"] for m in r.json()["matches"]}
    assert got == {
        "v1": {"s": "apple", "n": 1, "b": True, "nest": {"x": 1}},
        "v2": {"s": "banana", "n": 2.5, "b": False},
        "v3": {"s": "cherry", "n": -3},
        "v4": {}, "v5": {}, "v8": {},
        "v6": {"s": "Apple", "n": 10000000000, "b": True, "nest": {"x": 2}},
        "v7": {"s": "é" * 32, "n": 0},
        "v9": {"s": "a" * 63},
    }
    r = vz("query", idx, "--vector", "1", "0", "--top-k", "1", "--return-metadata", "all", "--json")
    assert r.json()["matches"][0]["metadata"] == RECORDS[0]["metadata"]


def test_top_k_with_filter_takes_the_best_of_the_filtered_set(vz, idx) -> None:
    r = vz("query", idx, "--vector", "0", "1", "--top-k", "2", "--filter", '{"n": {"$gte": -10}}', "--json")
    assert [m["id"] for m in r.json()["matches"]] == ["v7", "v6"]


# --- the worked example of Cloudflare's docs (vectorize-api.md §2.1) -----------------------------------

def test_docs_worked_example(vz) -> None:
    rng = np.random.default_rng(42)
    create(vz, "tutorial-index", 32, "cosine")
    for prop in ("url", "streaming_platform"):
        r = vz("create-metadata-index", "tutorial-index", "--property-name", prop, "--type", "string")
        assert r.exit_code == 0
    platforms = {"1": "netflix", "2": "hbo", "3": "hbo", "4": "netflix", "5": "hbo"}
    vecs = {k: rng.uniform(0, 1, 32).round(3) for k in platforms}
    write(vz, "tutorial-index", [rec(k, v, metadata={"url": f"/products/sku/{k}", "streaming_platform": p})
                                 for k, (p, v) in zip(platforms, zip(platforms.values(), vecs.values(), strict=True),
                                                      strict=True)])
    q = [repr(float(x)) for x in vecs["5"] * 0.9 + 0.05]
    full = vz("query", "tutorial-index", "--vector", *q, "--top-k", "5", "--json").json()
    assert full["count"] == 5
    r = vz("query", "tutorial-index", "--vector", *q, "--top-k", "3", "--filter",
           '{"streaming_platform": "netflix"}', "--json")
    assert r.exit_code == 0
    got = r.json()
    assert got["count"] == 2  # fewer than topK: only two vectors are on netflix
    expected = [m for m in full["matches"] if platforms[m["id"]] == "netflix"]
    assert got["matches"] == expected  # same order, same scores as unfiltered
    # and a filter on a property with no metadata index returns nothing, with a warning
    r = vz("query", "tutorial-index", "--vector", *q, "--filter", '{"genre": "drama"}', "--json")
    assert r.json() == {"count": 0, "matches": []} and "genre" in r.stderr


# --- validation: exit 2, code 40030, and the query does not run ---------------------------------------------

INVALID = [
    "[]", '"x"', "1", "null", '{"s":', "not json",
    json.dumps({"s": "x" * 2040}),  # 2048 bytes compact: must be < 2048
    json.dumps({"": 1}), json.dumps({'a"b': 1}), json.dumps({"$and": [{"s": 1}]}), json.dumps({"$s": 1}),
    json.dumps({"k" * 513: 1}), json.dumps({"a..b": 1}), json.dumps({".a": 1}), json.dumps({"a.": 1}),
    json.dumps({"s": [1, 2]}), json.dumps({"s": {"$eq": [1]}}), json.dumps({"s": {"$ne": ["a"]}}),
    json.dumps({"s": {"$eq": {"a": 1}}}),
    json.dumps({"s": {"$in": "x"}}), json.dumps({"s": {"$nin": 1}}), json.dumps({"s": {"$in": [[1]]}}),
    json.dumps({"s": {"$in": [{"a": 1}]}}), json.dumps({"s": {"$in": None}}),
    json.dumps({"s": {"$gt": True}}), json.dumps({"s": {"$gt": None}}), json.dumps({"s": {"$lt": [1]}}),
    json.dumps({"s": {"$lte": {"a": 1}}}),
    json.dumps({"s": {"$eq": 1, "$ne": 2}}), json.dumps({"s": {"$gt": 1, "$gte": 2}}),
    json.dumps({"s": {"$lt": 1, "$lte": 2}}), json.dumps({"s": {"$in": [1], "$gt": 0}}),
    json.dumps({"s": {"$eq": 1, "$lt": 2}}), json.dumps({"s": {"$nin": [1], "$in": [2]}}),
    json.dumps({"s": {"$gt": 1, "$lt": 5, "$ne": 3}}),
    json.dumps({"s": {"$regex": "a"}}), json.dumps({"s": {"$and": 1}}), json.dumps({"s": {"$exists": True}}),
    json.dumps({"s": {"x": 1}}), json.dumps({"s": {}}),
    '{"s": NaN}', '{"s": {"$gt": Infinity}}', '{"n": 1e999}',
]


@pytest.mark.parametrize("flt", INVALID, ids=[f[:40] for f in INVALID])
def test_invalid_filter(vz, idx, flt) -> None:
    r = vz("query", idx, "--vector", "1", "0", "--filter", flt, "--json")
    fails(r, 2, 40030)
    assert r.stdout == ""
    # validated before anything else: an unknown index or a wrong vector would fail differently
    fails(vz("query", "no-such-index", "--vector", "1", "0", "--filter", flt), 2, 40030)


def test_filter_limits_just_inside(vz, idx) -> None:
    ok = {"s": "x" * 2039}
    assert len(json.dumps(ok, separators=(",", ":"))) == 2047
    assert _match(vz, idx, ok).json()["count"] == 0
    r = _match(vz, idx, {"k" * 512: 1})
    assert r.json()["count"] == 0 and "has no metadata index" in r.stderr
    assert _match(vz, idx, {"s": {"$in": ["apple", 1, True, None, "x"]}}).json()["count"] == 1 + len(ALL - HAS_S)
