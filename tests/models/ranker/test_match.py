import math

import pytest
import torch

from models.ranker.match import MATCH_FEATURES, NUM_MATCH_FEATURES, history_match

# item -> category: items 2, 3 in category 2; 4 in category 3; 5 in category 1 (unknown); 6 in category 3
CATEGORY = torch.tensor([0, 1, 2, 2, 3, 1, 3])


def _features(history: list[int], levels: list[int], candidates: list[int]) -> dict[str, list[float]]:
    out = history_match(torch.tensor([history]), torch.tensor([levels]), torch.tensor([candidates]), CATEGORY)
    assert out.shape == (1, len(candidates), NUM_MATCH_FEATURES)
    return {name: out[0, :, column].tolist() for column, name in enumerate(MATCH_FEATURES)}


def test_item_features_count_recency_and_strongest_level() -> None:
    # oldest first, left-padded: 2 (level 1), 4 (level 3), 2 (level 2); candidate 2 last seen 0 steps ago
    f = _features([0, 0, 2, 4, 2], [0, 0, 1, 3, 2], [2, 4, 3, 6])
    assert f["item_seen"] == [1.0, 1.0, 0.0, 0.0]
    assert f["item_count"] == pytest.approx([math.log(3), math.log(2), 0.0, 0.0])
    assert f["item_recency"] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert f["item_level"] == pytest.approx([2 / 3, 1.0, 0.0, 0.0])


def test_category_features_share_recency_and_last() -> None:
    f = _features([0, 0, 2, 4, 2], [0, 0, 1, 3, 2], [3, 6, 5])
    # item 3 shares category 2 with two of three history items, the latest among them
    assert f["category_share"] == pytest.approx([2 / 3, 1 / 3, 0.0])
    assert f["category_recency"] == pytest.approx([1.0, 0.5, 0.0])
    assert f["category_last"] == [1.0, 0.0, 0.0]


def test_padding_unknown_items_and_unknown_categories_never_match() -> None:
    f = _features([0, 1, 5, 5], [0, 1, 1, 1], [0, 1, 5])
    assert f["item_seen"] == [0.0, 0.0, 1.0]  # item 5 itself is known; only its category is not
    assert f["category_share"] == [0.0, 0.0, 0.0]
    assert f["category_last"] == [0.0, 0.0, 0.0]


def test_an_empty_history_gives_zero_features() -> None:
    out = history_match(
        torch.zeros(2, 4, dtype=torch.int64),
        torch.zeros(2, 4, dtype=torch.int64),
        torch.tensor([[2, 3], [4, 6]]),
        CATEGORY,
    )
    assert torch.equal(out, torch.zeros(2, 2, NUM_MATCH_FEATURES))
