import numpy as np
import pytest

from models.bootstrap import paired_ratio_interval


def test_the_ratio_is_of_the_means_and_the_interval_holds_it() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((3, 400))
    interval = paired_ratio_interval(base * 1.2, base)
    assert interval.ratio == pytest.approx(1.2)
    # every request gains the same 20%: resampling requests cannot move the ratio
    assert interval.low == pytest.approx(1.2) and interval.high == pytest.approx(1.2)


def test_noisier_differences_give_wider_intervals_and_nan_requests_are_dropped() -> None:
    rng = np.random.default_rng(2)
    base = rng.random(500)
    close = paired_ratio_interval(base + rng.normal(0, 0.01, 500), base)
    far = paired_ratio_interval(base + rng.normal(0, 0.3, 500), base)
    assert far.high - far.low > 5 * (close.high - close.low)
    with_gaps = base.copy()
    with_gaps[:10] = np.nan
    assert paired_ratio_interval(with_gaps, base).ratio == pytest.approx(1.0)
    assert "interval over test requests" in close.text()


def test_mismatched_or_empty_rows_are_errors() -> None:
    with pytest.raises(ValueError, match="different requests"):
        paired_ratio_interval(np.ones(3), np.ones(4))
    with pytest.raises(ValueError, match="zero everywhere"):
        paired_ratio_interval(np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="groups"):
        paired_ratio_interval(np.ones(3), np.ones(3), groups=np.zeros(4))


def test_a_users_requests_are_resampled_together() -> None:
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(60), 10)  # ten requests per user, as in the ranker period
    base = rng.random(600) + 0.5
    # the gain is the user's: every request of a user moves by the same user-level amount
    gain = np.repeat(rng.normal(0.02, 0.2, 60), 10)
    alone = paired_ratio_interval(base + gain, base)
    by_user = paired_ratio_interval(base + gain, base, groups=users)
    assert by_user.ratio == pytest.approx(alone.ratio)
    # 10 requests that move together are one draw, not ten: the interval widens by about sqrt(10)
    assert by_user.high - by_user.low > 2.5 * (alone.high - alone.low)
    # one request per user: the same as resampling requests
    single = paired_ratio_interval(base + gain, base, groups=np.arange(600), seed=4)
    plain = paired_ratio_interval(base + gain, base, seed=4)
    assert (single.low, single.high) == pytest.approx((plain.low, plain.high))


def test_the_interval_cuts_half_the_missing_level_from_each_tail() -> None:
    rng = np.random.default_rng(3)
    top, bottom = rng.random(400) + 0.5, rng.random(400) + 0.5
    for level in (0.5, 0.9, 0.95):
        interval = paired_ratio_interval(top, bottom, resamples=4000, level=level, seed=11)
        # the same resamples drawn here: the share of resampled ratios outside each end is (1 - level) / 2
        picks = np.random.default_rng(11).integers(0, 400, size=(4000, 400))
        ratios = top[picks].sum(axis=1) / bottom[picks].sum(axis=1)
        tail = (1 - level) / 2
        assert np.mean(ratios < interval.low) == pytest.approx(tail, abs=0.002)
        assert np.mean(ratios > interval.high) == pytest.approx(tail, abs=0.002)
