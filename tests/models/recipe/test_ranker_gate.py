"""The recipe's second stage: the gate (cross-fitted, bootstrapped over users, its margin) and the rankers it
chooses between (the GBDT and the transformer, with or without the GBDT's features)."""

from dataclasses import replace

import numpy as np
import pytest

from models.data.loaders.synthetic import generate_synthetic
from models.data.schema import Dataset
from models.evaluate.replay import run_seed
from models.recipe.periods import pipeline_periods
from models.recipe.ranker_stage import pick_epoch, ranker_gate, user_folds
from tests.models.recipe.test_recipe import FAST, TINY

_BASE = np.full(40, 0.5)
_FOLDS = np.arange(40) % 2
_SPLIT = np.where(_FOLDS == 0, 0.9, 0.2)  # great on fold 0, poor on fold 1


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


@pytest.mark.parametrize(
    ("epochs", "level", "served", "ratio"),
    [
        ([_BASE, _BASE * 1.2], 0.0, True, 1.2),  # a win on every fold
        ([_BASE, _BASE * 1.2], 0.8, True, 1.2),
        ([_BASE, _BASE * 0.9], 0.0, False, 1.0),  # every fold picks the untouched first epoch
        ([_BASE * 0.9, _BASE * 0.8], 0.0, False, 0.9),
        # each noisy epoch wins where it is picked and loses where it is judged: the best epoch's own
        # score (0.55) beats the merged order (0.5), the cross-fitted one does not
        ([_SPLIT, _SPLIT[::-1].copy()], 0.0, False, 0.4),
    ],
)
def test_the_gate_judges_each_fold_at_the_epoch_the_other_folds_pick(
    epochs: list[np.ndarray], level: float, served: bool, ratio: float
) -> None:

    values = np.stack(epochs)
    serve, numbers = ranker_gate(values, np.ones(len(values)), _BASE, _FOLDS, level)
    assert serve is served
    assert numbers["gate_ratio"] == pytest.approx(ratio)
    assert numbers["gate_requests"] == 40
    # one fold: the users that pick the epoch also judge it, and the noisy epoch gets through
    serve_same, same = ranker_gate(values, np.ones(len(values)), _BASE, np.zeros(40, np.int64), level)
    assert same["gate_ratio"] == pytest.approx(values.mean(axis=1).max() / 0.5)
    assert serve_same is (same["gate_ratio"] > 1)


@pytest.mark.parametrize("level", [0.0, 0.8])
def test_the_gate_margin_refuses_a_gain_below_it(level: float) -> None:

    values = np.stack([_BASE, _BASE * 1.004])  # +0.4% on every request
    losses = np.ones(2)
    assert ranker_gate(values, losses, _BASE, _FOLDS, level, margin=0.0)[0]
    assert not ranker_gate(values, losses, _BASE, _FOLDS, level, margin=0.005)[0]
    assert ranker_gate(np.stack([_BASE, _BASE * 1.006]), losses, _BASE, _FOLDS, level, margin=0.005)[0]


def test_a_gain_that_the_validation_users_cannot_tell_from_noise_is_refused() -> None:

    # the same +3% mean gain twice: on every request alike, or as a few large wins among as many losses
    steady = _BASE * 1.03
    noisy = _BASE.copy()
    noisy[:6] = 1.0  # six requests gain 0.5 each (+3.0)
    noisy[6:11] = 0.0  # five lose 0.5 each (-2.5)
    noisy[11] = 0.6  # one gains 0.1: +0.6 in all, 3% of the merged order's 20
    losses = np.ones(2)
    for values in (steady, noisy):
        assert np.sum(values) == pytest.approx(np.sum(_BASE) * 1.03)
        assert ranker_gate(np.stack([values, values]), losses, _BASE, _FOLDS, 0.0, margin=0.005)[0]
    serve, numbers = ranker_gate(np.stack([steady, steady]), losses, _BASE, _FOLDS, 0.9, margin=0.005)
    assert serve and numbers["gate_low"] == pytest.approx(1.03)
    serve, numbers = ranker_gate(np.stack([noisy, noisy]), losses, _BASE, _FOLDS, 0.9, margin=0.005)
    assert not serve
    assert numbers["gate_ratio"] == pytest.approx(1.03) and numbers["gate_low"] < 1.0


def test_the_gate_resamples_users_not_requests() -> None:

    users = np.arange(40) // 10  # four users, ten validation requests each
    gained = _BASE.copy()
    gained[users == 0] += 0.3  # the whole +15% comes from one user's requests
    values, losses = np.stack([_BASE, gained]), np.ones(2)
    serve_requests, by_request = ranker_gate(values, losses, _BASE, _FOLDS, 0.9, margin=0.005)
    serve_users, by_user = ranker_gate(values, losses, _BASE, _FOLDS, 0.9, margin=0.005, users=users)
    assert by_request["gate_ratio"] == by_user["gate_ratio"] == pytest.approx(1.15)
    assert serve_requests and by_request["gate_low"] > 1.0  # ten lucky requests look like a sure gain
    assert not serve_users and by_user["gate_low"] == pytest.approx(1.0)  # one lucky user does not


def test_the_gate_picks_epochs_by_the_training_loops_rule() -> None:

    assert pick_epoch(np.array([0.1, 0.3, 0.2]), np.array([3.0, 2.0, 1.0])) == 1  # the higher score
    assert pick_epoch(np.array([0.0, 0.0, 0.0]), np.array([3.0, 2.0, 2.5])) == 1  # equal: the lower loss
    assert pick_epoch(np.array([0.2, 0.2]), np.array([1.0, 1.0])) == 0  # all equal: the first


def test_gate_folds_split_the_validation_users() -> None:

    users = np.repeat(np.arange(40), 3)  # three requests per user
    folds = user_folds(users, 5, np.random.default_rng(0))
    assert sorted(np.unique(folds).tolist()) == [0, 1, 2, 3, 4]
    for user in range(40):  # every user's requests in one fold
        assert len(np.unique(folds[users == user])) == 1
    assert np.bincount(folds).tolist() == [24] * 5  # 8 users per fold
    assert not user_folds(users, 1, np.random.default_rng(0)).any()
    assert not user_folds(np.zeros(5, np.int64), 5, np.random.default_rng(0)).any()  # one user: one fold


def test_the_transformer_can_read_the_gbdt_features_and_ships_with_them(dataset: Dataset, tmp_path) -> None:
    from models.bundle.load import Bundle
    from models.bundle.write import write_bundle
    from models.ranker.featured import FeaturedOnePiece
    from models.recipe.lists import candidate_requests

    settings = replace(
        FAST,
        rankers=("onepiece",),
        ranker_candidate_features=True,
        gbdt_depth=20,
        ranker_contrastive_scope="request",  # the listwise loss over the whole head it reorders
        ranker_train_candidates=20,
    )
    periods = pipeline_periods(dataset, "leave-last-out")
    outcome = run_seed(dataset, periods, 0, settings)
    trained = outcome.trained
    assert isinstance(trained.ranker, FeaturedOnePiece) and trained.ranker_kind == "onepiece"
    assert trained.ranker.model.config.candidate_features > 0 and trained.ranker.depth == 20
    assert float(trained.ranker.model.feature_scale.min()) > 0  # standardised by the training rows
    assert "ranker_onepiece" in outcome.metrics and "ranker_gbdt" not in outcome.metrics
    forced = replace(trained, ranker_served=True)
    path = write_bundle(forced, dataset, tmp_path / "bundle")
    bundle = Bundle.load(path)
    assert isinstance(bundle.ranker, FeaturedOnePiece) and bundle.manifest.serving.ranker_kind == "onepiece"
    assert trained.ranker.model.config.contrastive_scope == "request"
    assert bundle.ranker.model.config.contrastive_scope == "request"  # the config travels with the weights
    requests = candidate_requests(periods.test, None)
    on_disk, in_memory = bundle.served_pipeline(30), forced.served_pipeline(30)
    for request in requests[:20]:
        from_disk, fitted = on_disk.recommend(request), in_memory.recommend(request)
        assert from_disk.ranked and fitted.ranked
        np.testing.assert_array_equal(from_disk.items, fitted.items)


def test_the_gate_resamples_the_validation_users_not_their_requests(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.recipe.ranker_stage as stage

    seen: list[np.ndarray | None] = []
    real = stage.paired_ratio_interval

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs.get("groups"))
        return real(*args, **kwargs)

    monkeypatch.setattr(stage, "paired_ratio_interval", spy)
    periods = pipeline_periods(dataset, "leave-last-out", ranker_events=3)
    settings = replace(FAST, rankers=("gbdt",), gbdt_feature_sets=("all",), gbdt_ablations=())
    outcome = run_seed(dataset, periods, 0, settings)
    assert len(seen) == 1 and seen[0] is not None
    groups = np.asarray(seen[0])
    assert len(groups) == outcome.valid["gate_requests"]
    # every validation user's requests (several per user here) carry that user's label
    assert len(np.unique(groups)) < len(groups)
    assert set(np.unique(groups).tolist()) <= set(periods.ranker.users.tolist())
