"""One request (history + context) -> numpy features; several requests + candidates -> a ``RankerBatch``.

Shared by training, offline evaluation and serving, so all three see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.schema import Funnel
from models.ranker.anchors import AnchorSources, anchor_groups
from models.ranker.config import FeatureSizes, RankerConfig
from models.ranker.grouping import random_groups, serving_groups
from models.ranker.tokens import RankerBatch
from models.types import RequestContext, UserHistory


@dataclass
class RequestFeatures:
    """history_* [L] (left-padded, oldest first), anchor_item [G, P], user_features [F], situation [4]."""

    history_item: np.ndarray
    history_action: np.ndarray
    history_level: np.ndarray
    anchor_item: np.ndarray
    user_features: np.ndarray
    situation: np.ndarray


def _left_pad(values: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, dtype=np.int64)
    tail = values[-length:] if length else values[:0]
    if len(tail):
        out[length - len(tail) :] = tail
    return out


def request_features(
    config: RankerConfig,
    sizes: FeatureSizes,
    funnel: Funnel,
    sources: AnchorSources,
    history: UserHistory,
    context: RequestContext,
) -> RequestFeatures:
    item = history.item.astype(np.int64)
    level = funnel.levels(history.action.astype(np.int64), history.value.astype(np.float32)).astype(np.int64)
    item = np.where(item < sizes.num_items, item, 1)  # an index the model has never seen -> unknown
    anchors = np.asarray(context.anchors, dtype=np.int64)
    anchors = np.where(anchors < sizes.num_items, anchors, 1)
    groups = anchor_groups(config, sources, item, level, anchors, context.timestamp)
    user = [
        int(history.user_features.get(name, 1)) if 0 <= int(history.user_features.get(name, 1)) < size else 1
        for name, size in sizes.user_feature_sizes
    ]
    hour = (int(context.timestamp) // 3600) % 24
    dow = (int(context.timestamp) // 86400 + 3) % 7  # Monday = 0, as models.data.builder
    scene = context.scene if 0 <= context.scene < sizes.num_scenes else 1
    device = context.device if 0 <= context.device < sizes.num_devices else 1
    return RequestFeatures(
        history_item=_left_pad(item, config.history_len),
        history_action=_left_pad(history.action.astype(np.int64), config.history_len),
        history_level=_left_pad(level, config.history_len),
        anchor_item=groups,
        user_features=np.asarray(user, dtype=np.int64),
        situation=np.asarray([scene, device, hour, dow], dtype=np.int64),
    )


def collate(
    config: RankerConfig,
    features: list[RequestFeatures],
    candidates: list[np.ndarray],
    generator: torch.Generator | None = None,
    ranks: list[np.ndarray] | None = None,
    source_ranks: list[np.ndarray] | None = None,
    candidate_features: list[np.ndarray] | None = None,
) -> RankerBatch:
    """Pads candidate lists to the longest. With ``generator`` the groups are random (training), else the
    deterministic serving grouping of ``config.serving_grouping``. ``ranks``: retrieval rank per candidate
    (-1 = not retrieved); None = the lists are in retrieval order. ``source_ranks``: per request [n, S]
    ranks in each of ``config.candidate_sources`` (-1 = not found); None = found by none of them.
    ``candidate_features``: per request [n, config.candidate_features] (zeros where not given)."""
    longest = max((len(c) for c in candidates), default=0)
    candidate_item = np.zeros((len(candidates), longest), dtype=np.int64)
    for row, items in enumerate(candidates):
        candidate_item[row, : len(items)] = items
    rank = np.full((len(candidates), longest), -1, dtype=np.int64)
    for row, items in enumerate(candidates):
        rank[row, : len(items)] = ranks[row] if ranks is not None else np.arange(len(items))
    candidate_tensor = torch.from_numpy(candidate_item)
    valid = candidate_tensor > 0
    if generator is not None:
        group = random_groups(valid, config.group_size, generator)
    else:
        group = serving_groups(candidate_tensor, valid, config.group_size, config.serving_grouping)

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(f, name) for f in features]))

    source_rank = None
    if config.candidate_sources:
        # no ranks given (a caller that does not know the sources, e.g. a warm-up): found by none of them
        padded = np.full((len(candidates), longest, len(config.candidate_sources)), -1, dtype=np.int64)
        for row, values in enumerate(source_ranks or []):
            padded[row, : len(values)] = values
        source_rank = torch.from_numpy(padded)

    feature_tensor = None
    if config.candidate_features:
        padded_features = np.zeros((len(candidates), longest, config.candidate_features), dtype=np.float32)
        for row, values in enumerate(candidate_features or []):
            padded_features[row, : len(values)] = values
        feature_tensor = torch.from_numpy(padded_features)

    return RankerBatch(
        history_item=stack("history_item"),
        history_action=stack("history_action"),
        history_level=stack("history_level"),
        anchor_item=stack("anchor_item"),
        user_features=stack("user_features"),
        situation=stack("situation"),
        candidate_item=candidate_tensor,
        group=group,
        candidate_rank=torch.from_numpy(rank),
        candidate_source_rank=source_rank,
        candidate_features=feature_tensor,
    )
