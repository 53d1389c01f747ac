"""The float32 conversion of a vector given as a list (`records._packed`, the first step of
`check_vector`: query vectors and JSON bodies) against `array.array("f")` (the batch path's,
`records._numbers`) and numpy, item by item: the same bits, or both refuse the item."""

from __future__ import annotations

import array
import decimal
import fractions
import struct

import numpy as np
import pytest

from vzcli.errors import InvalidVector
from vzcli.records import _F32_ROUNDS_TO_INF, _packed, check_vector

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
    want = _array(values)
    assert (got.tobytes() if got is not None else None) == want
    assert (got is None) == any(item is x for x in NOT_NUMBERS)


def test_packed_matches_numpy_bit_for_bit_over_random_doubles() -> None:
    rng = np.random.default_rng(7)
    # doubles spread over float32's whole range and past it, and values on float32 rounding edges
    doubles = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-46, 40, 20000),
                              (rng.random(20000) * 2 - 1) * 3.5e38])
    with np.errstate(over="ignore"):
        want = doubles.astype(np.float32)
    got = _packed(doubles.tolist(), len(doubles))
    assert got is not None and got.tobytes() == want.tobytes()


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
