import numpy as np
import pytest

from models.data.loaders.timestamps import whole_seconds


def test_fractions_are_floored_and_keep_their_exact_order() -> None:
    # rows 0 and 1 fall in the same second, in the file in reverse time order
    values = np.array([1_600_000_000.75, 1_600_000_000.25, 1_600_000_001.0, 1_599_999_999.999])
    result = whole_seconds(values, "s", np.arange(4))
    assert result.seconds.tolist() == [1_600_000_000, 1_600_000_000, 1_600_000_001, 1_599_999_999]
    assert result.order.tolist() == [2, 1, 3, 0]  # rank by exact time, so row 1 sorts before row 0
    assert result.note is not None and "3 of 4 values" in result.note and "floored" in result.note


def test_whole_numbers_are_exact_and_need_no_note() -> None:
    as_text_decimals = np.array([1_600_000_002.0, 1_600_000_001.0])
    result = whole_seconds(as_text_decimals, "s", np.array([5, 9]))
    assert result.seconds.dtype == np.int64 and result.seconds.tolist() == [1_600_000_002, 1_600_000_001]
    assert result.order.tolist() == [5, 9] and result.note is None
    integers = whole_seconds(np.array([1_600_000_000_123_456], dtype=np.int64), "us", np.array([0]))
    assert integers.seconds.tolist() == [1_600_000_000] and "in us" in str(integers.note)


def test_milliseconds_with_a_fraction() -> None:
    result = whole_seconds(np.array([1_600_000_000_999.5, 1_600_000_001_000.0]), "ms", np.arange(2))
    assert result.seconds.tolist() == [1_600_000_000, 1_600_000_001]
    assert "1 of 2" in str(result.note)


def test_unknown_unit() -> None:
    with pytest.raises(ValueError, match="timestamp unit"):
        whole_seconds(np.zeros(1), "ns", np.arange(1))
