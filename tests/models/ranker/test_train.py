"""A planted preference must be learned: users of one gender like even items (category 2), the others odd
items (category 3)."""

import dataclasses

import numpy as np
import torch

from models.metrics import auc
from models.ranker.config import RankerConfig, preset
from models.ranker.features import RequestFeatures, collate
from models.ranker.model import OnePieceRanker
from models.ranker.train import EncodedRequests, sample_candidates, task_labels, train_ranker
from tests.models.ranker.fakes import SIZES


def _features(config: RankerConfig, gender: int, rng: np.random.Generator) -> RequestFeatures:
    history = rng.integers(2, SIZES.num_items, size=config.history_len)
    return RequestFeatures(
        history_item=history,
        history_action=np.full(config.history_len, 6),
        history_level=np.ones(config.history_len, dtype=np.int64),
        anchor_item=np.zeros((config.num_anchor_groups, config.anchor_len), dtype=np.int64),
        user_features=np.array([2, gender]),
        situation=np.array([1, 1, 12, 3]),
    )


def _planted(config: RankerConfig, count: int, seed: int) -> tuple[EncodedRequests, list[int]]:
    rng = np.random.default_rng(seed)
    genders = rng.integers(1, 3, size=count).tolist()
    items = np.arange(2, SIZES.num_items)
    features, positives, levels, retrieved = [], [], [], []
    for gender in genders:
        liked = items[items % 2 == gender % 2]
        positives.append(rng.choice(liked, size=3, replace=False))
        levels.append(rng.integers(1, 4, size=3))
        retrieved.append(rng.choice(items, size=20, replace=False))
        features.append(_features(config, gender, rng))
    return EncodedRequests(features, positives, levels, retrieved), genders


def test_ranker_learns_a_planted_preference() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only add overhead on a shared machine
    try:
        _learn_planted_preference()
    finally:
        torch.set_num_threads(threads)


def _learn_planted_preference() -> None:
    torch.manual_seed(0)
    config, train_config = preset("tiny", tasks=(1,), serving_weights=(1.0,), reasoning_steps=1)
    train_config = dataclasses.replace(train_config, epochs=8, batch_size=32, learning_rate=1e-2)
    category = 2 + torch.arange(SIZES.num_items) % 2
    model = OnePieceRanker(config, SIZES, category)
    data, _ = _planted(config, 320, seed=0)
    history = train_ranker(model, data, train_config, progress=False).history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    test, genders = _planted(config, 64, seed=1)
    rng = np.random.default_rng(2)
    candidates = [rng.choice(np.arange(2, SIZES.num_items), size=16, replace=False) for _ in genders]
    with torch.inference_mode():
        scores = model(collate(config, test.features, candidates)).task_logits[:, 0].numpy()
    labels = np.stack([(c % 2 == g % 2) for c, g in zip(candidates, genders, strict=True)]).astype(np.int64)
    assert auc(scores.ravel(), labels.ravel()) > 0.8


def test_sampled_candidates_hold_positives_hard_and_uniform_negatives() -> None:
    config, _ = preset("tiny")
    rng = np.random.default_rng(0)
    positives = np.array([5, 6, 7, 8])
    items, levels = sample_candidates(rng, config, 40, positives, np.array([1, 2, 3, 1]), np.arange(2, 22))
    assert len(items) == config.train_candidates
    assert (levels > 0).sum() == config.train_max_positives
    assert set(items[levels > 0]) <= set(positives.tolist())
    assert not set(items[levels == 0]) & set(positives.tolist())
    labels = task_labels([levels], (1, 2, 3), len(items))
    assert labels.shape == (1, 3, len(items))
    assert torch.equal(labels[0, 1], torch.from_numpy((levels >= 2).astype(np.float32)))


def test_retrieval_ranks_and_the_rank_feature() -> None:
    from models.data.positions import positions_in
    from tests.models.ranker.fakes import random_batch, tiny_model

    assert positions_in(np.array([7, 3, 9]), np.array([3, 5, 7])).tolist() == [2, 0, -1]
    config, _ = preset("tiny", use_retrieval_rank=True, group_size=1)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=1, num_candidates=4)
    batch.candidate_rank = torch.tensor([[0, 1, 2, 3]])
    with torch.inference_mode():
        first = model(batch).task_logits
        batch.candidate_rank = torch.tensor([[3, 1, 2, 0]])
        second = model(batch).task_logits
    assert torch.equal(first[..., 1:3], second[..., 1:3])  # same ranks, C = 1: same scores
    assert not torch.equal(first[..., 0], second[..., 0])


def test_validation_keeps_the_best_epoch_and_stops_after_patience() -> None:
    torch.manual_seed(0)
    config, train_config = preset("tiny")
    train_config = dataclasses.replace(train_config, epochs=10, batch_size=32, patience=3)
    model = OnePieceRanker(config, SIZES, 2 + torch.arange(SIZES.num_items) % 2)
    data, _ = _planted(config, 64, seed=0)
    scores = iter([0.1, 0.5, 0.2, 0.3, 0.4, 0.9])
    snapshots: list[dict[str, torch.Tensor]] = []

    def validate(m: OnePieceRanker) -> dict[str, float]:
        snapshots.append({k: v.clone() for k, v in m.state_dict().items()})
        return {"NDCG@10": next(scores)}

    state = train_ranker(model, data, train_config, progress=False, validate=validate)
    assert [row["val_NDCG@10"] for row in state.history] == [0.1, 0.5, 0.2, 0.3, 0.4]  # 3 without beating 0.5
    assert state.best_epoch == 2
    kept = model.state_dict()
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)  # the weights of epoch 2
