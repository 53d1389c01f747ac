"""NDJSON values are range-checked a batch at a time (`ndjson.BATCH`): the errors, their order and
the records that pass must be exactly those of checking each line on its own."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from vzcli import ndjson
from vzcli.errors import InvalidVector, Unparsable, VzError
from vzcli.local import LocalBackend
from vzcli.records import check_vector
from vzcli.store import Store

DIMS = 4


def _line(i: int, values: Any = None) -> str:
    return json.dumps({"id": f"r{i}", "values": values if values is not None else [i / 7, 0.5, -0.25, 2.0]})


def _stream(lines: list[str]) -> io.BytesIO:
    return io.BytesIO(("\n".join(lines) + "\n").encode())


BAD = {  # line number (1-based) -> the line, chosen across batch boundaries
    3: '{"id": "r3", "values": [1e39, 0, 0, 0]}',  # beyond float32
    ndjson.BATCH - 1: '{"id": "x", "values": [0.5, true, 0.25, 1.0]}',  # a boolean
    ndjson.BATCH: "{not json",
    ndjson.BATCH + 1: '{"id": "nan", "values": [NaN, 0, 0, 0]}',  # orjson refuses NaN: not JSON
    2 * ndjson.BATCH + 5: '{"id": "short", "values": [1, 2, 3]}',
    2 * ndjson.BATCH + 6: '{"id": "s", "values": ["1", 2, 3, 4]}',
}
TOTAL = 3 * ndjson.BATCH + 10


def _lines() -> list[str]:
    return [BAD.get(i, _line(i)) for i in range(1, TOTAL + 1)]


def _one_by_one(lines: list[str]) -> list[tuple[int, str]]:
    """(line, message) of each bad line, checking every line by itself."""
    out = []
    for i, text in enumerate(lines, 1):
        try:
            obj = json.loads(text)
            check_vector(obj["values"], DIMS, obj["id"])
        except (ValueError, InvalidVector) as e:
            out.append((i, getattr(e, "message", "json")))
    return out


def test_discard_reports_every_bad_line_in_order_and_keeps_every_good_one() -> None:
    errors: list[ndjson.LineError] = []
    recs = list(ndjson.read_records(_stream(_lines()), DIMS, "in.ndjson", discard=True, errors=errors))
    assert [e.line for e in errors] == sorted(BAD) == [i for i, _ in _one_by_one(_lines())]
    assert [r.id for r in recs] == [f"r{i}" for i in range(1, TOTAL + 1) if i not in BAD]
    assert all(r.values.dtype == np.float32 and r.values.shape == (DIMS,) for r in recs)
    assert recs[0].values.tolist() == [np.float32(1 / 7), 0.5, -0.25, 2.0]
    by_line = {e.line: e.error for e in errors}
    assert by_line[3].message == "in.ndjson:3: invalid vector for id=\"r3\", values must fit in float32 " \
                                 "(|x| <= 3.4028235e38)"
    assert "values must be numbers, not booleans" in by_line[ndjson.BATCH - 1].message
    assert isinstance(by_line[ndjson.BATCH], Unparsable)
    assert all(isinstance(e, VzError) and e.code for e in by_line.values())


@pytest.mark.parametrize("first", sorted(BAD))
def test_the_first_bad_line_is_the_one_reported(first: int) -> None:
    lines = [_line(i) if i in BAD and i < first else text for i, text in enumerate(_lines(), 1)]
    with pytest.raises(VzError) as e:
        list(ndjson.read_records(_stream(lines), DIMS, "in.ndjson"))
    assert e.value.message.startswith(f"in.ndjson:{first}: ")


def test_exact_zeros_and_ones_are_numbers_not_booleans(tmp_path) -> None:
    be = LocalBackend(Store(tmp_path / "s"), resident=False)
    be.create_index("z", dimensions=DIMS, metric="euclidean")
    lines = [_line(i, [0.0, 1.0, 0, 1]) for i in range(ndjson.BATCH + 3)] + [_line(9999, [1, 0, 0.5, 2])]
    res = be.insert("z", _stream(lines))
    assert res.count == ndjson.BATCH + 4
    got = be.get_by_ids("z", ["r0", "r9999"])
    assert [g["values"] for g in got] == [[0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.5, 2.0]]


def test_a_bad_line_in_a_batch_writes_nothing(tmp_path) -> None:
    be = LocalBackend(Store(tmp_path / "s"), resident=False)
    be.create_index("z", dimensions=DIMS, metric="cosine")
    lines = [_line(i) for i in range(1, ndjson.BATCH + 20)]
    lines[ndjson.BATCH + 3] = '{"id": "big", "values": [1, 2, 3, -4e38]}'
    with pytest.raises(InvalidVector) as e:
        be.insert("z", _stream(lines))
    assert e.value.message.startswith(f"<input>:{ndjson.BATCH + 4}: ")
    assert be.list_vectors("z")["count"] == 0


def test_no_numpy_warning_escapes_for_huge_or_odd_values(tmp_path) -> None:
    """Values beyond float32 (1e200 squares past float64), NaN and infinities get vz's own error,
    never a numpy RuntimeWarning on stderr."""
    import warnings

    lines = [_line(i) for i in range(1, 5)] + ['{"id": "h", "values": [1e200, 0, 0, 0]}',
                                               '{"id": "g", "values": [-1e308, 1e308, 0.5, 1]}']
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        errors: list[ndjson.LineError] = []
        recs = list(ndjson.read_records(_stream(lines), DIMS, "in", discard=True, errors=errors))
        assert [r.id for r in recs] == ["r1", "r2", "r3", "r4"] and [e.line for e in errors] == [5, 6]
        for bad in ([1e200, 0.5, 0, 0], [float("nan"), 0, 0, 0], [float("inf"), 1, 0, 0], [-1e39, 0, 0, 0]):
            with pytest.raises(InvalidVector):
                check_vector(bad, DIMS, "")
        assert check_vector([3.4e38, 1.0, 0.0, -2.0], DIMS, "").tolist() == [np.float32(3.4e38), 1.0, 0.0, -2.0]
