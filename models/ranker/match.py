"""Target-aware match features: how each candidate relates to the request's interaction history.

A transformer can learn "this candidate was viewed three clicks ago" or "same category as most of the
session" through attention, but only from many examples; a ranker trained on a few thousand requests does
better when it is handed these counts directly (the cross features of industrial rankers). They are computed
inside the forward from tensors the batch already holds, so training, evaluation, serving and the exported
graphs see the same values with no new inputs.

Features per candidate (``MATCH_FEATURES`` order), over the ``history_len`` most recent interactions:

- ``item_seen``: 1 if the candidate itself is in the history;
- ``item_count``: log(1 + times it occurs);
- ``item_recency``: 1 / (1 + interactions since its last occurrence), 0 if absent;
- ``item_level``: the strongest funnel level reached on it, / 3;
- ``category_share``: share of the history in the candidate's category;
- ``category_recency``: 1 / (1 + interactions since the last one in its category), 0 if none;
- ``category_last``: 1 if the most recent interaction is in its category.

Padding (item 0), unknown items (1) and unknown categories (0, 1) never match.
"""

from __future__ import annotations

import torch

MATCH_FEATURES = (
    "item_seen",
    "item_count",
    "item_recency",
    "item_level",
    "category_share",
    "category_recency",
    "category_last",
)
NUM_MATCH_FEATURES = len(MATCH_FEATURES)


def _last_distance(match: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """match [B, N, L] bool (history oldest first) -> (found [B, N] bool, 1 / (1 + steps since the last
    match) [B, N], 0 where none)."""
    length = match.shape[-1]
    position = torch.arange(1, length + 1, device=match.device)  # 1-based, L = most recent
    last = (match.to(torch.int64) * position).amax(dim=-1)  # [B, N], 0 = none
    found = last > 0
    recency = torch.where(
        found, 1.0 / (1.0 + (length - last).to(torch.float32)), torch.zeros_like(last, dtype=torch.float32)
    )
    return found, recency


def history_match(
    history_item: torch.Tensor,
    history_level: torch.Tensor,
    candidate_item: torch.Tensor,
    item_category: torch.Tensor,
) -> torch.Tensor:
    """history_item, history_level [B, L] (left-padded, oldest first); candidate_item [B, N];
    item_category [num_items] -> features [B, N, NUM_MATCH_FEATURES] float32."""
    history_valid = history_item > 1  # [B, L]
    item_match = (candidate_item[:, :, None] == history_item[:, None, :]) & history_valid[:, None, :]
    item_found, item_recency = _last_distance(item_match)
    item_count = torch.log1p(item_match.sum(dim=-1).to(torch.float32))
    level = torch.where(item_match, history_level[:, None, :], torch.zeros_like(history_level[:, None, :]))
    item_level = level.amax(dim=-1).to(torch.float32) / 3.0

    history_category = item_category[history_item]  # [B, L]
    candidate_category = item_category[candidate_item]  # [B, N]
    category_valid = history_valid & (history_category > 1)
    category_match = (
        (candidate_category[:, :, None] == history_category[:, None, :])
        & category_valid[:, None, :]
        & (candidate_category[:, :, None] > 1)
    )
    _, category_recency = _last_distance(category_match)
    known = category_valid.sum(dim=-1, keepdim=True).clamp(min=1).to(torch.float32)  # [B, 1]
    category_share = category_match.sum(dim=-1).to(torch.float32) / known
    category_last = category_match[:, :, -1].to(torch.float32)
    return torch.stack(
        [
            item_found.to(torch.float32),
            item_count,
            item_recency,
            item_level,
            category_share,
            category_recency,
            category_last,
        ],
        dim=-1,
    )
