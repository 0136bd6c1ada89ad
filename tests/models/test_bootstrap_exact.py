"""The paired bootstrap's exact numbers: its default draws, its report, small and single-request rows,
float32 rows summed in float64, and its error messages."""

import numpy as np
import pytest

from models.bootstrap import RatioInterval, paired_ratio_interval


def test_the_default_interval_is_2000_resamples_of_seed_zero_at_95_percent() -> None:
    rng = np.random.default_rng(6)
    top, bottom = rng.random(50) + 0.3, rng.random(50) + 0.3
    interval = paired_ratio_interval(top, bottom)
    picks = np.random.default_rng(0).integers(0, 50, size=(2000, 50))
    low, high = np.quantile(top[picks].sum(axis=1) / bottom[picks].sum(axis=1), [0.025, 0.975])
    assert (interval.low, interval.high) == (low, high)
    assert interval.to_dict() == {
        "ratio": top.sum() / bottom.sum(),
        "low": low,
        "high": high,
        "level": 0.95,
        "resamples": 2000,
    }


def test_the_text_names_the_ratio_the_level_and_both_ends() -> None:
    interval = RatioInterval(ratio=1.2, low=1.1, high=1.3, level=0.9, resamples=10)
    assert interval.text() == "1.200 (90% interval over test requests 1.100-1.300)"


def test_small_scores_and_a_single_request_keep_their_ratio() -> None:
    bottom = np.full(5, 0.05)  # a denominator row summing to 0.25, every resample too
    small = paired_ratio_interval(bottom * 1.2, bottom)
    assert (small.ratio, small.low, small.high) == pytest.approx((1.2, 1.2, 1.2))
    single = paired_ratio_interval(np.array([0.3]), np.array([0.2]))
    assert (single.ratio, single.low, single.high) == pytest.approx((1.5, 1.5, 1.5))


def test_float32_rows_are_summed_in_float64() -> None:
    # float32 cannot hold 2**24 + 1: summed as float32 the three 1s are lost
    big = np.array([2.0**24, 1.0, 1.0, 1.0], dtype=np.float32)
    ones = np.ones(4, dtype=np.float32)
    assert paired_ratio_interval(big, ones).ratio == (2**24 + 3) / 4
    assert paired_ratio_interval(ones, big).ratio == 4 / (2**24 + 3)


def test_the_error_messages_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^groups \(4,\) do not match the requests \(3,\)$"):
        paired_ratio_interval(np.ones(3), np.ones(3), groups=np.zeros(4))
    with pytest.raises(ValueError, match=r"^no request with a target, or the denominator row is zero"):
        paired_ratio_interval(np.full(3, np.nan), np.ones(3))
