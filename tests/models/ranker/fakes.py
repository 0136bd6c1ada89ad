"""Random inputs for ranker unit tests (tiny sizes, fixed seeds)."""

from __future__ import annotations

import torch

from models.ranker.config import FeatureSizes, RankerConfig, preset
from models.ranker.grouping import serving_groups
from models.ranker.model import OnePieceRanker
from models.ranker.tokens import RankerBatch

SIZES = FeatureSizes(
    num_items=40,
    num_categories=5,
    num_scenes=3,
    num_devices=3,
    user_feature_sizes=(("age", 4), ("gender", 3)),
)


def tiny_config(**overrides: object) -> RankerConfig:
    config, _ = preset("tiny", **overrides)
    return config


def tiny_model(config: RankerConfig, seed: int = 0) -> OnePieceRanker:
    torch.manual_seed(seed)
    category = torch.randint(2, SIZES.num_categories, (SIZES.num_items,))
    category[:2] = torch.tensor([0, 1])
    return OnePieceRanker(config, SIZES, category).eval()


def random_batch(config: RankerConfig, batch_size: int, num_candidates: int, seed: int = 0) -> RankerBatch:
    gen = torch.Generator().manual_seed(seed)
    history = torch.randint(2, SIZES.num_items, (batch_size, config.history_len), generator=gen)
    history[:, : config.history_len // 3] = 0  # left padding
    anchors = torch.randint(
        2, SIZES.num_items, (batch_size, config.num_anchor_groups, config.anchor_len), generator=gen
    )
    anchors[:, 1, :] = 0  # one empty anchor group
    candidates = torch.randint(2, SIZES.num_items, (batch_size, num_candidates), generator=gen)
    valid = torch.ones_like(candidates, dtype=torch.bool)
    return RankerBatch(
        history_item=history,
        history_action=torch.where(history > 0, torch.randint(1, 6, history.shape, generator=gen), 0),
        history_level=torch.where(history > 0, torch.randint(1, 4, history.shape, generator=gen), 0),
        anchor_item=anchors,
        user_features=torch.stack(
            [
                torch.randint(1, 4, (batch_size,), generator=gen),
                torch.randint(1, 3, (batch_size,), generator=gen),
            ],
            1,
        ),
        situation=torch.stack(
            [
                torch.randint(1, 3, (batch_size,), generator=gen),
                torch.randint(1, 3, (batch_size,), generator=gen),
                torch.randint(0, 24, (batch_size,), generator=gen),
                torch.randint(0, 7, (batch_size,), generator=gen),
            ],
            1,
        ),
        candidate_item=candidates,
        group=serving_groups(candidates, valid, config.group_size, "retrieval_order"),
    )
