"""The float32 conversion of a vector given as a list (`records._packed`: `check_vector`'s first
step, for query vectors and JSON bodies, and the batch path's `records._numbers`) against
`array.array("f")` (what both used before) and numpy, item by item: the same bits, or both
refuse the item."""

from __future__ import annotations

import array
import decimal
import fractions
import struct

import numpy as np
import pytest

from vzcli.errors import InvalidVector
from vzcli.records import _F32_ROUNDS_TO_INF, _finite_without_bools, _packed, _screen, check_vector

F32_MAX = float(np.finfo(np.float32).max)


class _Float:
    def __float__(self) -> float:
        return 2.5


class _Index:
    def __index__(self) -> int:
        return 3


NUMBERS = [0.0, -0.0, 1.0, -1.0, 1 / 3, 1e-46, -1e-46, 1.4e-45, 1e-40, F32_MAX, -F32_MAX,
           np.nextafter(_F32_ROUNDS_TO_INF, 0), -np.nextafter(_F32_ROUNDS_TO_INF, 0), _F32_ROUNDS_TO_INF, 1e39,
           -1e39, 1e308, float("inf"), float("-inf"), float("nan"), 0, 1, -7, 2**24 + 1, 2**64, -2**63, 10**30,
           True, False, np.float64(1.5), np.float32(0.1), decimal.Decimal("1.1"), fractions.Fraction(1, 3), _Float(),
           _Index()]
NOT_NUMBERS = ["1", None, [1.0], {"a": 1}, 10**400, -10**400, b"1", 1j]


def _array(values: list) -> bytes | None:
    try:
        return array.array("f", values).tobytes()
    except (TypeError, ValueError, OverflowError):
        return None


@pytest.mark.parametrize("item", NUMBERS + NOT_NUMBERS, ids=repr)
def test_packed_matches_array_item_by_item(item) -> None:
    values = [0.5, item, -2.0]
    got = _packed(values, 3)
    assert got == _array(values)
    assert (got is None) == any(item is x for x in NOT_NUMBERS)


def test_packed_matches_numpy_bit_for_bit_over_random_doubles() -> None:
    rng = np.random.default_rng(7)
    # doubles spread over float32's whole range and past it, and values on float32 rounding edges
    doubles = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-46, 40, 20000),
                              (rng.random(20000) * 2 - 1) * 3.5e38])
    with np.errstate(over="ignore"):
        want = doubles.astype(np.float32)
    assert _packed(doubles.tolist(), len(doubles)) == want.tobytes()


def test_check_vector_results_and_errors() -> None:
    assert check_vector([F32_MAX, -0.0, 1, 0.1], 4, "").tobytes() == struct.pack("@4f", F32_MAX, -0.0, 1, 0.1)
    cases = {
        "values must fit in float32 (|x| <= 3.4028235e38)": [_F32_ROUNDS_TO_INF, 0, 0, 0],
        "values must be finite numbers (no NaN or Infinity)": [float("nan"), 0, 0, 0],
        "values must be numbers, not booleans": [True, 0.5, 0, 0],
        "values must all be numbers": [[1.0], 0, 0, 0],
        "values must all be numbers that fit in float32": ["1", 0, 0, 0],
    }
    for message, values in cases.items():
        with pytest.raises(InvalidVector) as e:
            check_vector(values, 4, "v")
        assert e.value.message == f'invalid vector for id="v", {message}', values
    assert check_vector([1, 0, 1.0, 0.0], 4, "").tolist() == [1.0, 0.0, 1.0, 0.0]  # numbers, not booleans


def test_one_vector_screen_equals_the_batch_screen() -> None:
    """`_finite_without_bools` (one vector) decides as `_screen` (the batch check) plus the look
    for booleans does, over vectors with zeros, ones, booleans, infinities, NaN, values at
    float32's edge, and values whose bytes hold a 0 or a 1 across two floats."""
    rng = np.random.default_rng(11)
    specials = [0.0, -0.0, 1.0, True, False, float("inf"), float("-inf"), float("nan"), F32_MAX, -F32_MAX,
                2.0, 0.5, 2.0**-149, 1 / 3]
    cases = [[float(x) for x in rng.standard_normal(16)] for _ in range(200)]
    for _ in range(2000):
        v = [float(x) for x in rng.standard_normal(16)]
        for i in rng.choice(16, rng.integers(1, 5), replace=False):
            v[i] = specials[rng.integers(len(specials))]
        cases.append(v)
    # 2^-126 is 00 00 80 00: two of them side by side put 00 00 80 3f nowhere, but 0.5 (00 00 00 3f)
    # after 2^-126 puts "00 00 80 00 00 00 00 3f": four zero bytes across two values
    cases += [[F32_MAX] * 16, [2.0**-126, 0.5] * 8]
    seen_bool = 0
    for v in cases:
        raw = _packed(v, 16)
        assert raw is not None
        f32 = np.frombuffer(raw, dtype=np.float32)
        ok, zero_one = _screen(f32)
        want = bool(ok) and not (bool(zero_one) and bool in map(type, v))
        assert _finite_without_bools(raw, f32, v) == want, v
        seen_bool += bool in map(type, v)
        try:
            out = check_vector(v, 16, "")
        except InvalidVector:
            assert not want
        else:
            assert want and out.tobytes() == raw
    assert seen_bool > 100
