"""The gate's edges: ties, exact margins, small or zero merged scores, its fixed bootstrap, epochs without a
score, and the folds' degenerate cases."""

import numpy as np
import pytest

from models.bootstrap import paired_ratio_interval
from models.recipe.ranker_stage import _mean_or_zero, pick_epoch, ranker_gate, user_folds

_FOLDS = np.arange(40) % 2
_LOSSES = np.ones(2)


@pytest.mark.parametrize("level", [0.0, 0.9])
def test_a_ranker_that_ties_the_merged_order_is_not_served_and_its_ratio_is_exactly_one(level: float) -> None:
    # values whose running sum (one by one) is above their numpy sum: the gate must add the ranker's values
    # the way it adds the merged order's, or a tie looks like a gain
    base = np.random.default_rng(5).random(40)
    serve, numbers = ranker_gate(np.stack([base, base]), _LOSSES, base, _FOLDS, level)
    assert not serve and numbers["gate_ratio"] == 1.0


@pytest.mark.parametrize("level", [0.0, 0.9])
def test_a_gain_of_exactly_the_margin_is_refused(level: float) -> None:
    base = np.full(40, 0.5)
    values = np.stack([base * 1.25, base * 1.25])  # exactly +25% (0.625 / 0.5), the margin
    serve, numbers = ranker_gate(values, _LOSSES, base, _FOLDS, level, margin=0.25)
    assert numbers["gate_ratio"] == 1.25 and not serve
    assert ranker_gate(values, _LOSSES, base, _FOLDS, level, margin=0.2499)[0]


def test_level_zero_skips_the_bootstrap_and_any_level_above_uses_it() -> None:
    base = np.full(40, 0.5)
    values = np.stack([base, base * 1.2])
    assert "gate_low" not in ranker_gate(values, _LOSSES, base, _FOLDS, 0.0)[1]
    assert ranker_gate(values, _LOSSES, base, _FOLDS, 0.01)[1]["gate_low"] == pytest.approx(1.2)


@pytest.mark.parametrize("level", [0.0, 0.9])
def test_small_merged_scores_give_the_true_ratio(level: float) -> None:
    base = np.full(40, 0.02)  # NDCG@10 summing to 0.8 over the validation requests
    serve, numbers = ranker_gate(np.stack([base * 1.5, base * 1.5]), _LOSSES, base, _FOLDS, level)
    assert serve and numbers["gate_ratio"] == pytest.approx(1.5)
    assert ("gate_low" in numbers) is (level > 0)
    if level > 0:
        assert numbers["gate_low"] == pytest.approx(1.5)


def test_a_merged_order_that_scores_zero_everywhere_is_beaten_without_a_bootstrap() -> None:
    base = np.zeros(40)
    serve, numbers = ranker_gate(np.stack([base + 0.1, base + 0.1]), _LOSSES, base, _FOLDS, 0.9)
    assert serve and "gate_low" not in numbers and numbers["gate_ratio"] > 1.0
    serve, numbers = ranker_gate(np.stack([base, base]), _LOSSES, base, _FOLDS, 0.9)
    assert not serve and numbers["gate_ratio"] == 0.0


def test_the_gates_interval_is_the_bootstrap_at_its_level_with_seed_zero() -> None:
    rng = np.random.default_rng(8)
    base = rng.random(40) + 0.2
    values = base + rng.normal(0.05, 0.2, 40)  # one epoch: every fold is judged on it
    users = np.arange(40) // 4
    for level in (0.5, 0.9):
        numbers = ranker_gate(values[None, :], np.ones(1), base, _FOLDS, level, users=users)[1]
        expected = paired_ratio_interval(values, base, level=level, seed=0, groups=users)
        assert numbers["gate_low"] == expected.low and numbers["gate_ratio"] == expected.ratio
        # the same numbers on every rebuild
        assert ranker_gate(values[None, :], np.ones(1), base, _FOLDS, level, users=users)[1] == numbers


def test_requests_without_a_score_count_as_zero_when_picking_an_epoch() -> None:
    assert _mean_or_zero(np.full(3, np.nan)) == 0.0
    assert _mean_or_zero(np.array([np.nan, 0.2, 0.4])) == pytest.approx(0.3)
    # fold 0's requests have no target: both epochs score 0 there, so fold 1 gets the lower-loss epoch 1
    base = np.where(_FOLDS == 0, np.nan, 0.5)
    values = np.stack([np.where(_FOLDS == 0, np.nan, 0.4), np.where(_FOLDS == 0, np.nan, 0.6)])
    numbers = ranker_gate(values, np.array([2.0, 1.0]), base, _FOLDS, 0.0)[1]
    assert numbers["gate_ratio"] == pytest.approx(1.2) and numbers["gate_requests"] == 20


def test_pick_epoch_keeps_the_first_when_no_epoch_has_a_score_and_needs_one_loss_per_epoch() -> None:
    assert pick_epoch(np.array([np.nan, np.nan]), np.array([2.0, 1.0])) == 0
    assert pick_epoch(np.array([-np.inf, -np.inf]), np.array([2.0, 1.0])) == 0
    with pytest.raises(ValueError):
        pick_epoch(np.array([0.1, 0.2, 0.3]), np.array([1.0, 1.0]))


def test_folds_with_two_folds_or_two_users_split_and_the_single_fold_is_an_index() -> None:
    users = np.repeat(np.arange(10), 2)
    assert sorted(np.unique(user_folds(users, 2, np.random.default_rng(0))).tolist()) == [0, 1]
    two = user_folds(np.array([7, 7, 9]), 2, np.random.default_rng(0))
    assert two[0] == two[1] != two[2]
    for fewer in (0, -3):  # fewer than two folds asked: one fold, whatever the number
        assert not user_folds(users, fewer, np.random.default_rng(0)).any()
    for folds in (
        user_folds(users, 1, np.random.default_rng(0)),
        user_folds(np.zeros(5, np.int64), 5, np.random.default_rng(0)),
    ):
        assert folds.dtype == np.int64 and np.bincount(folds).tolist() == [len(folds)]
