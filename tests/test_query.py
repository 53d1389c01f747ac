"""query: options, limits, output shape, and scores against numpy on the exact and the HNSW path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from corehelp import assert_ann_close, assert_same_ranking, create, fails, rec, ref_topk, write

METRICS = ["cosine", "euclidean", "dot-product"]


@pytest.fixture
def docs(vz):
    create(vz, "docs", 3)
    write(vz, "docs", [rec("a", [1, 0, 0], metadata={"k": "x", "n": 1}),
                       rec("b", [0, 1, 0], namespace="ns1"),
                       rec("c", [1, 1, 0], metadata={"k": "y"}, namespace="ns2")])
    return "docs"


def _q(vz, *args, input=None):
    r = vz("query", *args, "--json", input=input)
    assert r.exit_code == 0, r.stderr
    return r.json()


# --- input and options --------------------------------------------------------------------------

@pytest.mark.parametrize("vec", [["1", "0", "0"], ["1,0,0"], ["[1, 0, 0]"], ["1,", "0", ",0"]])
def test_vector_forms(vz, docs, vec) -> None:
    out = _q(vz, docs, "--vector", *vec, "--top-k", "1")
    assert out == {"count": 1, "matches": [{"id": "a", "score": 1.0}]}


def test_vector_file_and_stdin(vz, docs, tmp_path) -> None:
    f = tmp_path / "q.json"
    f.write_text("[0, 1, 0]")
    assert _q(vz, docs, "--vector-file", str(f), "--top-k", "1")["matches"][0]["id"] == "b"
    assert _q(vz, docs, "--vector-file", "-", "--top-k", "1", input="[0, 1, 0]\n")["matches"][0]["id"] == "b"
    f.write_text("{}")
    assert vz("query", docs, "--vector-file", str(f)).exit_code == 2
    f.write_text("nope")
    assert vz("query", docs, "--vector-file", str(f)).exit_code == 2


def test_vector_id(vz, docs) -> None:
    out = _q(vz, docs, "--vector-id", "c", "--top-k", "2")
    assert [m["id"] for m in out["matches"]] == ["c", "a"]
    assert out["matches"][0]["score"] == pytest.approx(1.0)


@pytest.mark.parametrize("args", [
    [], ["--vector", "1", "0", "0", "--vector-id", "a"], ["--vector-id", "a", "--vector-file", "-"],
    ["--vector", "1", "0", "0", "--vector-file", "-"]])
def test_exactly_one_vector_source(vz, docs, args) -> None:
    r = vz("query", docs, *args, input="[1,0,0]")
    assert r.exit_code == 2 and r.stdout == ""
    assert "exactly one of --vector, --vector-id or --vector-file" in r.stderr


@pytest.mark.parametrize("vec", [["1", "x", "0"], ["[1, true, 0]"], ["[1, 0"]])
def test_bad_vector_tokens(vz, docs, vec) -> None:
    r = vz("query", docs, "--vector", *vec)
    assert r.exit_code == 2 and r.stdout == ""


def test_unknown_vector_id(vz, docs) -> None:
    err = fails(vz("query", docs, "--vector-id", "nope"), 1, 40034)
    assert 'vector with id "nope" not found in index "docs"' in err


def test_dimension_mismatch(vz, docs) -> None:
    err = fails(vz("query", docs, "--vector", "1", "0"), 1, 40006)
    assert "expected 3 dimensions, and got 2 dimensions" in err
    fails(vz("query", docs, "--vector", "1", "0", "0", "0"), 1, 40006)


def test_unknown_index(vz, docs) -> None:
    fails(vz("query", "nope", "--vector", "1", "0", "0"), 1, 3000)


@pytest.mark.parametrize("args,msg", [
    (["--top-k", "101"], "max top K is 100, but got 101"),
    (["--top-k", "0"], "top K must be a whole number from 1 to 100"),
    (["--top-k", "51", "--return-values"],
     "with returnValues=true or returnMetadata=all, max top K is 50, but got 51; for a top K up to 100, "
     "retry with returnValues=false and returnMetadata=indexed"),
    (["--top-k", "51", "--return-metadata", "all"], "max top K is 50, but got 51")])
def test_top_k_limits(vz, docs, args, msg) -> None:
    r = vz("query", docs, "--vector", "1", "0", "0", *args)
    err = fails(r, 2, 40025)
    assert msg in err and r.stdout == ""


@pytest.mark.parametrize("args", [
    ["--top-k", "100"], ["--top-k", "100", "--return-metadata", "indexed"],
    ["--top-k", "50", "--return-values", "--return-metadata", "all"]])
def test_top_k_at_the_limits_is_fine(vz, docs, args) -> None:
    assert _q(vz, docs, "--vector", "1", "0", "0", *args)["count"] == 3


def test_default_top_k_is_five(vz) -> None:
    create(vz, "many", 2)
    write(vz, "many", [rec(f"v{i}", [1, i]) for i in range(8)])
    assert _q(vz, "many", "--vector", "1", "1")["count"] == 5


# --- output shape ---------------------------------------------------------------------------------

def test_match_shape_values_metadata_namespace(vz, docs) -> None:
    out = _q(vz, docs, "--vector", "1", "0", "0", "--top-k", "3", "--return-values", "--return-metadata", "all")
    assert out == {"count": 3, "matches": [
        {"id": "a", "score": 1.0, "values": [1.0, 0.0, 0.0], "metadata": {"k": "x", "n": 1}},
        {"id": "c", "score": pytest.approx(0.7071067811865475), "values": [1.0, 1.0, 0.0],
         "metadata": {"k": "y"}, "namespace": "ns2"},
        {"id": "b", "score": 0.0, "values": [0.0, 1.0, 0.0], "metadata": {}, "namespace": "ns1"}]}
    assert list(out["matches"][1]) == ["id", "score", "values", "metadata", "namespace"]


def test_match_shape_without_extras(vz, docs) -> None:
    out = _q(vz, docs, "--vector", "1", "0", "0", "--top-k", "3")
    assert [list(m) for m in out["matches"]] == [["id", "score"], ["id", "score", "namespace"],
                                                 ["id", "score", "namespace"]]


def test_return_metadata_indexed_without_metadata_indexes(vz, docs) -> None:
    out = _q(vz, docs, "--vector", "1", "0", "0", "--top-k", "1", "--return-metadata", "indexed")
    assert out["matches"] == [{"id": "a", "score": 1.0, "metadata": {}}]


def test_namespace_restricts(vz, docs) -> None:
    out = _q(vz, docs, "--vector", "1", "0", "0", "--namespace", "ns1")
    assert out == {"count": 1, "matches": [{"id": "b", "score": 0.0, "namespace": "ns1"}]}
    assert _q(vz, docs, "--vector", "1", "0", "0", "--namespace", "none-such") == {"count": 0, "matches": []}


def test_bad_namespace_is_usage_error(vz, docs) -> None:
    fails(vz("query", docs, "--vector", "1", "0", "0", "--namespace", "n" * 65), 2, 40010)


def test_empty_result_is_valid_json_exit_0(vz) -> None:
    create(vz, "empty", 3)
    r = vz("query", "empty", "--vector", "1", "2", "3", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"count": 0, "matches": []} and r.stderr == ""
    r = vz("query", "empty", "--vector", "1", "2", "3")
    assert r.exit_code == 0 and json.loads(r.stdout) == {"count": 0, "matches": []}
    assert "Could not find any relevant vectors" in r.stderr


def test_query_sees_deletes_and_upserts_at_once(vz, docs) -> None:
    vz("delete-vectors", docs, "--ids", "a")
    assert [m["id"] for m in _q(vz, docs, "--vector", "1", "0", "0")["matches"]] == ["c", "b"]
    write(vz, docs, [rec("b", [1, 0, 0])], upsert=True)
    out = _q(vz, docs, "--vector", "1", "0", "0", "--top-k", "1", "--return-values")
    assert out["matches"] == [{"id": "b", "score": 1.0, "values": [1.0, 0.0, 0.0]}]


# --- scores against numpy --------------------------------------------------------------------------

def _dataset(seed: int, n: int, dims: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dims)).astype(np.float32)
    return [f"id-{i:04d}" for i in range(n)], vecs


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("path", ["exact", "hnsw"])
def test_scores_match_numpy(vz, monkeypatch, store, metric, path) -> None:
    if path == "hnsw":
        monkeypatch.setenv("VZ_MERGE_THRESHOLD", "1")
    ids, vecs = _dataset(7, 300, 8)
    create(vz, "m", 8, metric)
    write(vz, "m", [rec(i, v) for i, v in zip(ids, vecs, strict=True)])
    ann_files = list((store / "indexes" / "m").glob("ann-*.usearch"))
    assert bool(ann_files) == (path == "hnsw")
    rng = np.random.default_rng(1)
    for _ in range(5):
        q = rng.normal(size=8).astype(np.float32)
        expected = ref_topk(metric, q, ids, vecs, 10)
        args = ["--vector", *[repr(float(x)) for x in q], "--top-k", "10"]
        exact = _q(vz, "m", *args, "--exact")
        assert_same_ranking(exact["matches"], expected)
        out = _q(vz, "m", *args)
        assert out["count"] == 10
        if path == "exact":
            assert out == exact
        else:  # HNSW: exact scores, but it may miss the odd neighbour
            assert_ann_close(out["matches"], exact["matches"], metric)
        scores = [m["score"] for m in out["matches"]]
        assert scores == sorted(scores, reverse=(metric == "cosine"))
    # query by id: the vector itself is the best match (score 1, 0, -|v|^2)
    # (for dot-product a longer vector may beat the vector itself)
    out = _q(vz, "m", "--vector-id", ids[3], "--top-k", "3")
    if metric != "dot-product":
        assert out["matches"][0]["id"] == ids[3]
        assert out["matches"][0]["score"] == pytest.approx({"cosine": 1.0, "euclidean": 0.0}[metric], abs=1e-9)
    exact = _q(vz, "m", "--vector-id", ids[3], "--top-k", "3", "--exact")
    assert_same_ranking(exact["matches"], ref_topk(metric, vecs[3], ids, vecs, 3))
    assert_ann_close(out["matches"], exact["matches"], metric, min_recall=2 / 3)


def test_dot_product_is_negative_dot(vz) -> None:
    create(vz, "d", 2, "dot-product")
    write(vz, "d", [rec("small", [1, 0]), rec("big", [10, 0]), rec("neg", [-5, 0])])
    out = _q(vz, "d", "--vector", "2", "0", "--top-k", "3")
    assert out["matches"] == [{"id": "big", "score": -20.0}, {"id": "small", "score": -2.0},
                              {"id": "neg", "score": 10.0}]


def test_euclidean_is_l2_not_squared(vz) -> None:
    create(vz, "e", 2, "euclidean")
    write(vz, "e", [rec("a", [3, 4]), rec("b", [1, 0])])
    out = _q(vz, "e", "--vector", "0", "0", "--top-k", "2")
    assert out["matches"] == [{"id": "b", "score": 1.0}, {"id": "a", "score": 5.0}]


def test_cosine_zero_vector_scores_zero(vz) -> None:
    create(vz, "z", 2, "cosine")
    write(vz, "z", [rec("zero", [0, 0]), rec("x", [1, 0])])
    out = _q(vz, "z", "--vector", "1", "0", "--top-k", "2")
    assert out["matches"] == [{"id": "x", "score": 1.0}, {"id": "zero", "score": 0.0}]


def test_negative_numbers_after_vector(vz, docs) -> None:
    out = _q(vz, docs, "--vector", "-1", "-0", "0", "--top-k", "3")
    assert out["matches"][-1] == {"id": "a", "score": -1.0}
    out = _q(vz, docs, "--top-k", "3", "--vector", "-1e0", "-1.0", "-0.0")
    assert out["matches"][-1] == {"id": "c", "score": pytest.approx(-1.0), "namespace": "ns2"}
