"""NDJSON lines read by simdjson (`ndjson._plain`) give exactly what the orjson path gives.

Plain lines skip a Python float per value (docs/write-path.md, session 6); everything else goes
the orjson path. Every line here is read both ways, alone and in a file of many, with and
without discarding bad lines: the records (bit for bit) and the errors (type, code, message,
line) must be the same.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest

from vzcli import ndjson
from vzcli.errors import VzError

DIMS = 3
LINES = [
    # plain
    '{"id":"a","values":[0.5,-1.25,3]}',
    '{"values":[1,2,3],"id":"b","namespace":"ns","metadata":{"k":"v","n":1.5,"t":true,"o":{"x":"y"}}}',
    '{"id":"c","values":[-0,0e0,-0.0],"extra":{"ignored":1}}',
    '{"id":"d","values":[1E5,2.5e-3,18446744073709551615]}',
    '{"id":"e","values":[9007199254740993,-9223372036854775808,5e-324]}',
    '{"id":"f","values":[1e-46,3.4028234663852886e38,-3.4028235677973362e38]}',
    '{"id":"g\\u00e9\\ud83d\\ude00","values":[1,0,1]}',  # escapes; values that are 0 and 1
    '{"id":"h","values":[0,0,0]}',
    '{"id":"\u00e9t\u00e9","values":[1.0000000000000002,0.1,0.30000000000000004]}',
    # not plain: the orjson path decides
    '{"id":"m","values":[1,2,3],"metadata":{"tags":["a","b"]}}',  # a second array
    '{"id":"n","values":[1,true,3]}',
    '{"id":"o","values":[1,null,3]}',
    '{"id":"p","values":[1,"2",3]}',
    '{"id":"q","values":[1.5,[2],3]}',
    '{"id":"r","values":[[1,2,3]]}',
    '\ufeff{"id":"s","values":[1,2,3]}',
    '{"id":"t","id":"t2","values":[1,2,3]}',
    '{"id":"u","values":[1,2,3],"values":[4,5,6]}',
    '{"id":"v","values":[1e400,2,3]}',
    '{"id":"w","values":[3.5e38,2,3]}',
    '{"id":"x","values":[1,2]}',
    '{"id":"y","values":{"0":1}}',
    '{"id":7,"values":[1,2,3]}',
    '{"id":"","values":[1,2,3]}',
    '{"id":"' + "z" * 65 + '","values":[1,2,3]}',
    '{"id":"a\\u0000b","values":[1,2,3]}',
    '{"id":"lone\\ud800","values":[1,2,3]}',
    '{"id":"ns1","values":[1,2,3],"namespace":5}',
    '{"id":"ns2","values":[1,2,3],"namespace":""}',
    '{"id":"md1","values":[1,2,3],"metadata":"text"}',
    '{"id":"md2","values":[1,2,3],"metadata":{"$bad":1}}',
    '{"id":"md3","values":[1,2,3],"metadata":{"big":123456789012345678901}}',
    '{"id":"md0","values":[1,2,3],"metadata":{"o":{"x":null}}}',
    '{"id":"md4","values":[1,2,3],"metadata":{"s":"' + "x" * 11000 + '"}}',
    '{"id":"trail","values":[1,2,3]} x',
    '{"id":"nan","values":[NaN,2,3]}',
    '["id","values"]',
    '{"id":"neg","values":[-9223372036854775809,1,2]}',
    '{"id":"big","values":[18446744073709551616,1,2]}',
    '{"values":[1,2,3]}',
    '{"id":"nv"}',
    '{"id":"ctl\u0001","values":[1,2,3]}',
]


def _read(data: bytes, *, fast: bool, discard: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], Any]:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(ndjson, "simdjson", None)
        errors: list[ndjson.LineError] = []
        out: list[Any] = []
        try:
            for r in ndjson.read_records(io.BytesIO(data), DIMS, "in.ndjson", discard=discard, errors=errors):
                out.append((r.id, np.asarray(r.values).dtype.str, np.asarray(r.values).tobytes(), r.namespace,
                            r.metadata, r.metadata_json))
        except VzError as e:
            return out, (type(e).__name__, e.code, e.message)
        return out, [(e.line, type(e.error).__name__, e.error.code, e.error.message) for e in errors]


@pytest.mark.parametrize("line", LINES)
def test_a_line_reads_the_same_with_simdjson_and_with_orjson(line, monkeypatch) -> None:
    data = line.encode("utf-8", "surrogatepass") + b"\n"
    for discard in (False, True):
        assert _read(data, fast=True, discard=discard, monkeypatch=monkeypatch) == \
            _read(data, fast=False, discard=discard, monkeypatch=monkeypatch)


def test_invalid_utf8_reads_the_same(monkeypatch) -> None:
    for data in (b'{"id":"\xff","values":[1,2,3]}\n', b'{"id":"a","values":[1,2,3],"metadata":{"k":"\xc3"}}\n'):
        for discard in (False, True):
            assert _read(data, fast=True, discard=discard, monkeypatch=monkeypatch) == \
                _read(data, fast=False, discard=discard, monkeypatch=monkeypatch)


def test_a_file_of_every_line_reads_the_same_in_batches(monkeypatch) -> None:
    """Plain and other lines mixed in one batch (ndjson.BATCH), errors in line order."""
    data = ("\n".join(LINES * 9) + "\n").encode("utf-8", "surrogatepass")
    fast = _read(data, fast=True, discard=True, monkeypatch=monkeypatch)
    assert fast == _read(data, fast=False, discard=True, monkeypatch=monkeypatch)
    # 15 lines are good: 9 plain ones, and the 6 the orjson path accepts (a second array, repeated
    # keys, integers past 64 bits)
    assert len(fast[0]) == 9 * 15 and len(fast[1]) == 9 * (len(LINES) - 15)
    assert _read(data, fast=True, discard=False, monkeypatch=monkeypatch) == \
        _read(data, fast=False, discard=False, monkeypatch=monkeypatch)


def test_random_vectors_are_bit_for_bit_the_same(monkeypatch) -> None:
    rng = np.random.default_rng(7)
    vals = rng.standard_normal((600, DIMS)) * 10.0 ** rng.integers(-44, 38, (600, DIMS))
    data = "".join(json.dumps({"id": f"r{i}", "values": v.tolist()}) + "\n" for i, v in enumerate(vals)).encode()
    fast = _read(data, fast=True, discard=False, monkeypatch=monkeypatch)
    assert fast == _read(data, fast=False, discard=False, monkeypatch=monkeypatch)
    assert len(fast[0]) == 600 and fast[1] == []


def test_plain_lines_take_the_simdjson_path(monkeypatch) -> None:
    """Guards the speed-up itself: a plain line is read without orjson."""
    import orjson

    def refuse(*a: object) -> None:
        raise AssertionError("orjson was used for a plain line")

    monkeypatch.setattr(ndjson.orjson, "loads", refuse)
    recs = list(ndjson.read_records(io.BytesIO(b'{"id":"a","values":[1,2,3],"metadata":{"k":1}}\n'), DIMS, "x"))
    assert [(r.id, r.values.tolist(), r.metadata) for r in recs] == [("a", [1.0, 2.0, 3.0], {"k": 1})]
    monkeypatch.setattr(ndjson.orjson, "loads", orjson.loads)
