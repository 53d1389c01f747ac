"""insert / upsert / get-vectors / delete-vectors: input formats, insert vs upsert, and atomic failure."""

from __future__ import annotations

import json

import pytest
from corehelp import create, fails, ndjson, rec, snapshot, write

F32_THIRD = 0.3333333432674408  # float32(1/3) as float64


@pytest.fixture
def docs(vz):
    create(vz, "docs", 3)
    return "docs"


def _ids(vz, name) -> list[str]:
    return [json.loads(line)["id"] for line in vz("list-vectors", name, "--all").stdout.splitlines()]


# --- input formats ------------------------------------------------------------------------------

def test_insert_from_file(vz, docs, tmp_path) -> None:
    f = tmp_path / "v.ndjson"
    f.write_text(ndjson([rec("a", [1, 2, 3]), rec("b", [4, 5, 6], metadata={"k": "v"}, namespace="ns")]))
    r = vz("insert", docs, "--file", str(f), "--json")
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert list(out) == ["index", "count", "mutationId"]
    assert out["index"] == "docs" and out["count"] == 2
    assert vz("get-vectors", docs, "--ids", "a", "b", "--json").json() == [
        {"id": "a", "values": [1.0, 2.0, 3.0], "metadata": {}},
        {"id": "b", "values": [4.0, 5.0, 6.0], "metadata": {"k": "v"}, "namespace": "ns"}]


def test_stdin_crlf_blank_lines_no_final_newline(vz, docs) -> None:
    text = '\r\n{"id":"a","values":[1,2,3]}\r\n\r\n   \n{"id":"b","values":[0.5,0.25,0.125]}\r\n\n{"id":"c","values":[1,1,1]}'
    r = vz("insert", docs, "--file", "-", "--json", input=text)
    assert r.exit_code == 0, r.stderr
    assert r.json()["count"] == 3
    assert _ids(vz, docs) == ["a", "b", "c"]


def test_float32_storage(vz, docs) -> None:
    write(vz, docs, [rec("a", [1 / 3, 58.8, -2])])
    got = vz("get-vectors", docs, "--ids", "a", "--json").json()[0]
    assert got["values"] == [F32_THIRD, 58.79999923706055, -2.0]


@pytest.mark.parametrize("text", ["", "\n\n", "\r\n  \r\n"])
def test_empty_input_is_an_error(vz, docs, text) -> None:
    err = fails(vz("insert", docs, "--file", "-", input=text), 1, 40023)
    assert "no vectors found" in err
    assert vz("info", docs, "--json").json() == {"dimensions": 3, "vectorCount": 0}


def test_missing_file_and_directory(vz, docs, tmp_path) -> None:
    r = vz("insert", docs, "--file", str(tmp_path / "nope.ndjson"))
    assert r.exit_code == 1 and "nope.ndjson" in r.stderr
    r = vz("insert", docs, "--file", str(tmp_path))
    assert r.exit_code == 2 and "directory" in r.stderr


@pytest.mark.parametrize("size", ["0", "5001"])
def test_batch_size_validated(vz, docs, size) -> None:
    r = vz("insert", docs, "--file", "-", "--batch-size", size, input=ndjson([rec("a", [1, 2, 3])]))
    assert r.exit_code == 2 and "--batch-size" in r.stderr
    assert _ids(vz, docs) == []


def test_write_to_unknown_index(vz, docs) -> None:
    fails(vz("insert", "nope", "--file", "-", input=ndjson([rec("a", [1, 2, 3])])), 1, 3000)
    fails(vz("upsert", "nope", "--file", "-", input=ndjson([rec("a", [1, 2, 3])])), 1, 3000)


# --- insert vs upsert ---------------------------------------------------------------------------

def test_insert_keeps_existing_ids(vz, docs) -> None:
    write(vz, docs, [rec("a", [1, 2, 3], metadata={"v": 1})])
    r = vz("insert", docs, "--file", "-", input=ndjson([rec("a", [9, 9, 9], metadata={"v": 2}), rec("b", [1, 1, 1])]))
    assert r.exit_code == 0
    assert "1 inserted, 1 skipped" in r.stdout
    assert vz("get-vectors", docs, "--ids", "a", "--json").json() == [
        {"id": "a", "values": [1.0, 2.0, 3.0], "metadata": {"v": 1}}]
    assert vz("info", docs, "--json").json()["vectorCount"] == 2


def test_insert_duplicate_in_one_input_keeps_first(vz, docs) -> None:
    write(vz, docs, [rec("a", [1, 1, 1]), rec("a", [2, 2, 2])])
    assert vz("get-vectors", docs, "--ids", "a", "--json").json()[0]["values"] == [1.0, 1.0, 1.0]
    assert vz("info", docs, "--json").json()["vectorCount"] == 1


def test_upsert_duplicate_in_one_input_keeps_last(vz, docs) -> None:
    write(vz, docs, [rec("a", [1, 1, 1]), rec("a", [2, 2, 2])], upsert=True)
    assert vz("get-vectors", docs, "--ids", "a", "--json").json()[0]["values"] == [2.0, 2.0, 2.0]
    assert vz("info", docs, "--json").json()["vectorCount"] == 1


def test_upsert_replaces_in_full(vz, docs) -> None:
    write(vz, docs, [rec("a", [1, 2, 3], metadata={"x": 1, "y": 2}, namespace="n1")])
    r = vz("upsert", docs, "--file", "-", input=ndjson([rec("a", [3, 2, 1], metadata={"z": 3}), rec("b", [1, 1, 1])]))
    assert r.exit_code == 0
    assert "1 new, 1 replaced in full" in r.stdout
    # no metadata merge, and the namespace is gone too
    assert vz("get-vectors", docs, "--ids", "a", "--json").json() == [
        {"id": "a", "values": [3.0, 2.0, 1.0], "metadata": {"z": 3}}]
    assert vz("info", docs, "--json").json()["vectorCount"] == 2
    # upserting without metadata drops the metadata
    write(vz, docs, [rec("a", [3, 2, 1])], upsert=True)
    assert vz("get-vectors", docs, "--ids", "a", "--json").json()[0]["metadata"] == {}


def _upsert_counts(vz, name, records) -> dict[str, int]:
    r = vz("upsert", name, "--file", "-", input=ndjson(records))
    assert r.exit_code == 0, r.stderr
    line = r.stdout.splitlines()[-1].strip().rstrip(".")
    counts = dict(reversed(part.split(" ", 1)) for part in line.split(", "))
    return {k: int(v) for k, v in counts.items()}


def test_upsert_summary_counts_each_line_once_in_order(vz, docs, monkeypatch) -> None:
    """Duplicate ids in one input, across chunk boundaries too: each line is new, replaced or
    unchanged relative to the state the lines before it left."""
    from vzcli import writes

    monkeypatch.setattr(writes, "CHUNK", 3)
    write(vz, docs, [rec("a", [1, 1, 1]), rec("b", [2, 2, 2])])
    lines = [rec("a", [1, 1, 1]), rec("c", [3, 3, 3]), rec("c", [3, 3, 3]),  # unchanged, new, unchanged
             rec("c", [4, 4, 4]), rec("b", [2, 2, 2]), rec("b", [9, 9, 9]),  # replaced, unchanged, replaced
             rec("a", [5, 5, 5]), rec("a", [1, 1, 1]), rec("d", [1, 1, 1])]  # replaced, replaced, new
    assert _upsert_counts(vz, docs, lines) == {"new": 2, "replaced in full": 4, "unchanged": 3}
    assert vz("get-vectors", docs, "--ids", "a", "b", "c", "d", "--json").json() == [
        {"id": "a", "values": [1.0, 1.0, 1.0], "metadata": {}}, {"id": "b", "values": [9.0, 9.0, 9.0], "metadata": {}},
        {"id": "c", "values": [4.0, 4.0, 4.0], "metadata": {}}, {"id": "d", "values": [1.0, 1.0, 1.0], "metadata": {}}]
    assert vz("info", docs, "--json").json()["vectorCount"] == 4


def test_upsert_summary_of_2504_lines_with_repeats(tmp_path) -> None:
    """The reported case at the real chunk size: every line counted once (2504 in all)."""
    import dataclasses
    import io

    from vzcli.local import LocalBackend
    from vzcli.store import Store

    be = LocalBackend(Store(tmp_path / "s"), resident=False, maintain=False)
    be.create_index("docs", dimensions=3, metric="cosine")
    first = [rec(f"v{i}", [i, 1, 1]) for i in range(2501)]
    be.upsert("docs", io.BytesIO(ndjson(first).encode()))
    again = first + [rec("v0", [0, 1, 1]), rec("v2001", [7, 7, 7]), rec("v2001", [2001, 1, 1])]
    res = dataclasses.asdict(be.upsert("docs", io.BytesIO(ndjson(again).encode())))
    res.pop("mutation_id")
    assert res == {"count": 2504, "inserted": 0, "skipped": 0, "replaced": 2, "unchanged": 2502,
                   "deleted": 0, "discarded": 0, "errors": [], "net": 0, "notes": []}
    assert be.info("docs")["vectorCount"] == 2501


def test_upsert_same_file_twice_changes_nothing_but_mutation(vz, docs) -> None:
    recs = [rec(f"v{i}", [i, 1, 2], metadata={"i": i}) for i in range(5)]
    write(vz, docs, recs, upsert=True)
    before = snapshot(vz, docs)
    m = write(vz, docs, recs, upsert=True)["mutationId"]
    after = snapshot(vz, docs)
    assert after[1:] == before[1:]
    assert after[0]["processedUpToMutation"] == m and after[0]["vectorCount"] == 5


# --- bad lines: the whole command fails and the store is exactly as before -------------------------

BAD_LINES = [
    ("not json at all", 40023, "not valid JSON"),
    ('{"id": "x", "values": [1, 2]}', 40012, 'expected 3 dimensions, and got 2 dimensions'),
    ('{"id": "x", "values": [1, 2, 3, 4]}', 40012, "expected 3 dimensions, and got 4"),
    ('{"id": "x", "values": [NaN, 1, 2]}', 40023, "not valid JSON"),
    ('{"id": "x", "values": [Infinity, 1, 2]}', 40023, "not valid JSON"),
    ('{"id": "x", "values": [1e400, 1, 2]}', 40023, "not valid JSON"),
    ('{"id": "x", "values": [1e39, 1, 2]}', 40012, "float32"),
    ('{"id": "x", "values": ["1", 1, 2]}', 40012, "numbers"),
    ('{"id": "x", "values": [true, 1, 2]}', 40012, "booleans"),
    ('{"id": "x", "values": null}', 40012, "array"),
    ('{"id": "x"}', 40012, 'missing "values"'),
    ('{"values": [1, 2, 3]}', 40008, 'missing "id"'),
    ('{"id": "' + "i" * 65 + '", "values": [1, 2, 3]}', 40008, "id too long; max is 64 bytes, got 65 bytes"),
    ('{"id": "' + "é" * 33 + '", "values": [1, 2, 3]}', 40008, "got 66 bytes"),
    ('{"id": "", "values": [1, 2, 3]}', 40008, "empty"),
    ('{"id": 7, "values": [1, 2, 3]}', 40008, "string"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"t": "' + "m" * 10240 + '"}}', 40011, "metadata too large"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"a.b": 1}}', 40011, "'a.b'"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"$a": 1}}', 40011, "'$a'"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"a\\"b": 1}}', 40011, "invalid"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"": 1}}', 40011, "empty"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"n": {"": 1}}}', 40011, "empty"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"a": null}}', 40011, "null"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": {"a": [1, 2]}}', 40011, "array"),
    ('{"id": "x", "values": [1, 2, 3], "metadata": [1]}', 40011, "object"),
    ('{"id": "x", "values": [1, 2, 3], "namespace": ""}', 40010, "namespace"),
    ('{"id": "x", "values": [1, 2, 3], "namespace": "' + "n" * 65 + '"}', 40010, "namespace"),
    ('[1, 2, 3]', 40023, "object"),
]


@pytest.mark.parametrize("verb", ["insert", "upsert"])
@pytest.mark.parametrize("line,code,reason", BAD_LINES, ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(BAD_LINES)])
def test_bad_line_fails_whole_command_and_changes_nothing(vz, docs, tmp_path, verb, line, code, reason) -> None:
    write(vz, docs, [rec("a", [1, 2, 3], metadata={"k": 1}), rec("b", [3, 2, 1])])
    before = snapshot(vz, docs)
    good = ndjson([rec("a", [7, 7, 7]), rec("c", [1, 1, 1]), rec("d", [2, 2, 2])])
    f = tmp_path / "in.ndjson"
    f.write_text(good + "\n" + line + "\n" + ndjson([rec("e", [0, 0, 1])]))  # the bad line is line 5
    r = vz(verb, docs, "--file", str(f), "--json")
    err = fails(r, 1, code)
    assert r.stdout == ""
    assert f"✘ [ERROR] {f}:5: " in err
    assert reason in err
    assert snapshot(vz, docs) == before


def test_metadata_at_the_size_limit_is_fine(vz, docs) -> None:
    meta = {"t": "m" * (10240 - len('{"t":""}'))}
    assert len(json.dumps(meta, separators=(",", ":"))) == 10240
    write(vz, docs, [rec("a", [1, 2, 3], metadata=meta)])
    assert vz("get-vectors", docs, "--ids", "a", "--json").json()[0]["metadata"] == meta


def test_id_of_64_bytes_is_fine(vz, docs) -> None:
    vid = "é" * 32
    write(vz, docs, [rec(vid, [1, 2, 3])])
    assert _ids(vz, docs) == [vid]


def test_stdin_source_name_in_errors(vz, docs) -> None:
    err = fails(vz("insert", docs, "--file", "-", input='{"id":"a","values":[1,2,3]}\nnope\n'), 1, 40023)
    assert err.startswith("✘ [ERROR] <stdin>:2: ")


def test_discard_skips_bad_lines_and_reports(vz, docs) -> None:
    text = ndjson([rec("a", [1, 2, 3])]) + "garbage\n" + '{"id":"b","values":[1]}\n' + ndjson([rec("c", [3, 2, 1])])
    r = vz("insert", docs, "--file", "-", "--unparsable-behavior", "discard", "--json", input=text)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert list(out) == ["index", "count", "mutationId", "discarded"]
    assert out["count"] == 2 and out["discarded"] == 2
    assert "discarded 2 unparsable line(s)" in r.stderr
    assert "<stdin>:2:" in r.stderr and "<stdin>:3:" in r.stderr
    assert _ids(vz, docs) == ["a", "c"]


def test_discard_with_only_bad_lines(vz, docs) -> None:
    r = vz("upsert", docs, "--file", "-", "--unparsable-behavior", "discard", "--json", input="x\ny\n")
    assert r.exit_code == 0, r.stderr
    assert r.json()["count"] == 0 and r.json()["discarded"] == 2
    assert _ids(vz, docs) == []


# --- get-vectors ----------------------------------------------------------------------------------

def test_get_vectors_shapes_order_and_unknown_ids(vz, docs, tmp_path) -> None:
    write(vz, docs, [rec("a", [1, 2, 3], metadata={"m": {"n": True}}), rec("b", [4, 5, 6], namespace="x")])
    r = vz("get-vectors", docs, "--ids", "b", "zz", "a", "b", "--json")
    assert r.exit_code == 0
    assert r.json() == [{"id": "b", "values": [4.0, 5.0, 6.0], "metadata": {}, "namespace": "x"},
                        {"id": "a", "values": [1.0, 2.0, 3.0], "metadata": {"m": {"n": True}}}]
    f = tmp_path / "ids.txt"
    f.write_text("a\r\nzz\n")  # blank lines are empty ids, an error (tests/test_trust_input.py)
    assert [v["id"] for v in vz("get-vectors", docs, "--ids-file", str(f), "--json").json()] == ["a"]
    assert [v["id"] for v in vz("get-vectors", docs, "--ids-file", "-", "--json", input="b\n").json()] == ["b"]


def test_get_vectors_none_found(vz, docs) -> None:
    r = vz("get-vectors", docs, "--ids", "nope", "--json")
    assert r.exit_code == 0 and r.stdout == "[]\n" and r.stderr == ""
    r = vz("get-vectors", docs, "--ids", "nope")
    assert r.exit_code == 0 and json.loads(r.stdout) == [] and "does not contain" in r.stderr


def test_get_vectors_needs_exactly_one_id_source(vz, docs, tmp_path) -> None:
    assert vz("get-vectors", docs).exit_code == 2
    f = tmp_path / "ids"
    f.write_text("a\n")
    assert vz("get-vectors", docs, "--ids", "a", "--ids-file", str(f)).exit_code == 2
    f.write_text("\n\n")
    assert vz("get-vectors", docs, "--ids-file", str(f)).exit_code == 2


def test_get_vectors_bad_id(vz, docs) -> None:
    fails(vz("get-vectors", docs, "--ids", "i" * 65), 2, 40008)


# --- delete-vectors -------------------------------------------------------------------------------

def test_delete_vectors(vz, docs, tmp_path) -> None:
    write(vz, docs, [rec(v, [1, 2, 3]) for v in "abcd"])
    r = vz("delete-vectors", docs, "--ids", "a", "zz", "--json")
    assert r.exit_code == 0
    out = r.json()
    assert list(out) == ["index", "count", "mutationId"] and out["index"] == "docs"
    info = vz("info", docs, "--json").json()
    assert info["vectorCount"] == 3 and info["processedUpToMutation"] == out["mutationId"]
    assert _ids(vz, docs) == ["b", "c", "d"]
    f = tmp_path / "ids"
    f.write_text("b\nc\n")
    r = vz("delete-vectors", docs, "--ids-file", str(f))
    assert r.exit_code == 0 and "Successfully enqueued 2 vectors into index 'docs' for deletion" in r.stdout
    assert _ids(vz, docs) == ["d"]
    # deleting only unknown ids is fine and still a mutation
    r = vz("delete-vectors", docs, "--ids", "zz", "--json")
    assert r.exit_code == 0
    assert vz("info", docs, "--json").json() == {**info, "vectorCount": 1,
                                                 "processedUpToMutation": r.json()["mutationId"],
                                                 "processedUpToDatetime": vz("info", docs, "--json").json()[
                                                     "processedUpToDatetime"]}
    assert vz("get-vectors", docs, "--ids", "a", "b", "--json").json() == []


def test_deleted_id_can_be_inserted_again(vz, docs) -> None:
    write(vz, docs, [rec("a", [1, 2, 3])])
    vz("delete-vectors", docs, "--ids", "a")
    write(vz, docs, [rec("a", [3, 2, 1])])
    assert vz("get-vectors", docs, "--ids", "a", "--json").json()[0]["values"] == [3.0, 2.0, 1.0]
    assert vz("info", docs, "--json").json()["vectorCount"] == 1


# --- export round trip ------------------------------------------------------------------------------

def test_export_round_trips_through_insert(vz, docs, tmp_path) -> None:
    recs = [rec("a", [1, 2, 3], metadata={"k": ["x", "y"]}), rec("b", [1 / 3, 0, 0], namespace="n")]
    write(vz, docs, recs)
    out = tmp_path / "dump.ndjson"
    r = vz("export", docs, "--output", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    create(vz, "copy", 3)
    assert vz("insert", "copy", "--file", str(out), "--json").json()["count"] == 2
    assert snapshot(vz, "copy")[1:] == snapshot(vz, docs)[1:]
    lines = vz("export", docs, "--namespace", "n").stdout.splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["b"]


def test_bad_line_after_several_chunks_rolls_everything_back(vz, docs) -> None:
    """Records are applied in chunks of 2000 inside one transaction: a bad line 2600 undoes them all."""
    write(vz, docs, [rec("keep", [1, 1, 1], metadata={"k": 1})])
    before = snapshot(vz, docs)
    text = ndjson([rec(f"n{i:05d}", [i, 1, 2]) for i in range(2599)]) + '{"id": "bad", "values": [1]}\n'
    err = fails(vz("upsert", docs, "--file", "-", input=text), 1, 40012)
    assert "<stdin>:2600:" in err
    assert snapshot(vz, docs) == before
    r = vz("upsert", docs, "--file", "-", "--unparsable-behavior", "discard", "--json", input=text)
    assert r.exit_code == 0 and r.json()["count"] == 2599 and r.json()["discarded"] == 1
    assert vz("info", docs, "--json").json()["vectorCount"] == 2600


@pytest.mark.parametrize("values", [[True, 0.5, 0.25], [0.5, 0.25, False], [1, True, 0.0], [True, False, True]])
def test_a_boolean_among_the_values_is_refused_and_changes_nothing(vz, docs, values) -> None:
    """JSON true/false are not numbers, though numpy would read them as 1.0 and 0.0: the check
    looks at each value's type whenever a 0.0 or 1.0 is among them (metadata booleans are fine)."""
    before = snapshot(vz, docs)
    line = ndjson([rec("a", [0.1, 0.2, 0.3]), {"id": "b", "values": values, "metadata": {"ok": True}}])
    err = fails(vz("insert", docs, "--file", "-", input=line), 1, 40012)
    assert '<stdin>:2: invalid vector for id="b", values must be numbers, not booleans' in err
    assert snapshot(vz, docs) == before
    r = vz("query", docs, "--vector", "1", "0", "true", "--json")
    assert r.exit_code != 0 and r.stdout == ""


def test_zeros_and_ones_that_are_numbers_are_accepted(vz, docs) -> None:
    write(vz, docs, [rec("a", [1.0, 0.0, 1]), rec("b", [0, 1, 0.0], metadata={"flag": False})])
    got = vz("get-vectors", docs, "--ids", "a", "b", "--json").json()
    assert [v["values"] for v in got] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
