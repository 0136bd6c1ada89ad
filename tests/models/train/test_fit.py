from dataclasses import replace

import numpy as np
import pytest
import torch

from models.checkpoints import load_checkpoint
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import FIRST_REAL_ID, Dataset
from models.data.splits import leave_last_out
from models.encoder.serving import save_user_encoder
from models.train.fit import continue_fit, fit_encoder, next_item_cases
from models.train.presets import preset
from models.train.validation import NextItemCases, rank_metrics, target_ranks
from tests.models.train.test_data import as_rating_log


@pytest.fixture(scope="module")
def planted() -> Dataset:
    # users stay inside one item cluster most of the time: a model that reads history must find it
    config = SyntheticConfig(
        num_users=300, num_items=300, num_events=15_000, num_clusters=10, intent_jump_prob=0.02, seed=3
    )
    return generate_synthetic(config)


def split_cases(dataset: Dataset):
    split = leave_last_out(dataset.events)
    train = dataset.events.take(split.train)
    history = dataset.events.take(split.train | split.valid)
    return train, next_item_cases(dataset, history, dataset.events.take(split.test))


def popularity_hr10(dataset: Dataset, train_events, cases: NextItemCases) -> float:
    counts = np.bincount(train_events.item, minlength=dataset.num_items).astype(float)
    counts[:FIRST_REAL_ID] = -1
    hits = []
    for target in cases.targets:
        scores = counts.copy()
        hits.append(int((scores > scores[target]).sum()) < 10)
    return float(np.mean(hits))


def test_causal_hstu_learns_planted_pattern(planted):
    train_events, cases = split_cases(planted)
    model_config, train = preset("tiny", "hstu")
    train = replace(train, epochs=4, batch_size=32, threads=1, learning_rate=3e-3)
    result = fit_encoder(planted, train_events, model_config, train, valid_cases=None)
    losses = [r["train_loss"] for r in result.state.history]
    assert losses[-1] < losses[0]
    learned = rank_metrics(target_ranks(result.model, result.item_category, cases, 0), (10,))["HR@10"]
    popular = popularity_hr10(planted, train_events, cases)
    assert learned > 1.4 * popular, (learned, popular)


def test_session_encoder_learns_planted_pattern(planted):
    train_events, cases = split_cases(planted)
    model_config, train = preset("tiny", "session_encoder")
    train = replace(train, epochs=15, batch_size=32, threads=1, learning_rate=1e-2)
    result = fit_encoder(planted, train_events, model_config, train, valid_cases=None)
    learned = rank_metrics(target_ranks(result.model, result.item_category, cases, 0), (10,))["HR@10"]
    popular = popularity_hr10(planted, train_events, cases)
    assert learned > 1.3 * popular, (learned, popular)


def test_continue_fit_trains_on_the_larger_period_and_zero_epochs_is_a_no_op(planted):
    split = leave_last_out(planted.events)
    train_events = planted.events.take(split.train)
    model_config, train = preset("tiny", "session_encoder")
    train = replace(train, epochs=1, batch_size=64, threads=1, progress=False)
    result = fit_encoder(planted, train_events, model_config, train)
    before = {k: v.clone() for k, v in result.model.state_dict().items()}
    continue_fit(result, planted, planted.events.take(split.trainable), train, 0)
    assert result.continued == []
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())
    continue_fit(result, planted, planted.events.take(split.trainable), train, 2)
    assert [row["epoch"] for row in result.continued] == [1.0, 2.0]
    assert result.state.epoch == 1  # the validated run's record is kept apart from the extra epochs
    assert not torch.equal(before["embed.item.weight"], result.model.state_dict()["embed.item.weight"])


@pytest.mark.parametrize("kind", ["session_encoder", "sasrec"])
def test_causal_kinds_loss_falls(planted, kind):
    train_events, _ = split_cases(planted)
    model_config, train = preset("tiny", kind)
    train = replace(train, epochs=3, batch_size=64, threads=1, learning_rate=3e-3)
    result = fit_encoder(planted, train_events, model_config, train)
    losses = [r["train_loss"] for r in result.state.history]
    assert losses[-1] < losses[0]


def test_incremental_run_starts_from_given_weights(planted, tmp_path):
    train_events, _ = split_cases(planted)
    model_config, train = preset("tiny", "session_encoder")
    train = replace(train, epochs=1, threads=1)
    first = fit_encoder(planted, train_events, model_config, train)
    path = save_user_encoder(first.model, tmp_path / "encoder.pt", first.item_category)
    # zero epochs: the result must be exactly the given weights
    same = fit_encoder(planted, train_events, model_config, replace(train, epochs=0), init_from=path)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, same.model.state_dict()[name]), name
    # one incremental epoch on the newest events only moves the weights away from them
    since = int(np.quantile(train_events.timestamp, 0.8))
    newer = fit_encoder(
        planted, train_events, model_config, replace(train, min_target_ts=since), init_from=path
    )
    moved = newer.model.state_dict()["embed.item.weight"]
    assert not torch.equal(moved, first.model.state_dict()["embed.item.weight"])


def test_resume_continues_from_checkpoint(planted, tmp_path):
    train_events, _ = split_cases(planted)
    model_config, train = preset("tiny", "hstu")
    train = replace(train, epochs=1, threads=1)
    checkpoint = tmp_path / "run.resume.pt"
    fit_encoder(planted, train_events, model_config, train, checkpoint_path=checkpoint)
    saved = load_checkpoint(checkpoint)
    assert {"config", "state_dict", "optimizer", "epoch", "metrics"} <= set(saved)
    resumed = fit_encoder(
        planted,
        train_events,
        model_config,
        replace(train, epochs=2),
        checkpoint_path=checkpoint,
        resume=saved,
    )
    assert [r["epoch"] for r in resumed.state.history] == [1.0, 2.0]
    assert resumed.state.history[0] == saved["state"]["history"][0]


def test_incremental_run_keeps_the_layout_of_an_old_two_token_checkpoint(planted, tmp_path):
    ratings = as_rating_log(planted)
    train_events, _ = split_cases(ratings)
    model_config, train = preset("tiny", "session_encoder")
    train = replace(train, epochs=1, threads=1)
    old = fit_encoder(ratings, train_events, replace(model_config, fold_context=False), train)
    assert not old.model.config.folded and old.model.config.max_items_per_session == 1
    path = save_user_encoder(old.model, tmp_path / "encoder.pt", old.item_category)
    # today's preset folds on rating logs; continuing the old encoder keeps its two-token layout
    newer = fit_encoder(ratings, train_events, model_config, replace(train, epochs=0), init_from=path)
    assert not newer.model.config.folded
    assert newer.model.config.max_tokens == old.model.config.max_tokens
    for name, tensor in old.model.state_dict().items():
        assert torch.equal(tensor, newer.model.state_dict()[name]), name
