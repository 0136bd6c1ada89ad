import numpy as np
import pytest

from models.candidates.merge import MergeConfig, merge_lists
from models.candidates.sources import SourceList


def lists(*rows: list[int]) -> list[SourceList]:
    return [
        SourceList(np.asarray(r, dtype=np.int64), np.linspace(1, 0, len(r)).astype(np.float32)) for r in rows
    ]


def config(**changes: object) -> MergeConfig:
    values: dict[str, object] = {
        "sources": ("a", "b"),
        "quotas": (10, 10),
        "weights": (1.0, 1.0),
        "total": 10,
    }
    values.update(changes)
    return MergeConfig(**values)  # type: ignore[arg-type]


def test_duplicates_collapse_and_keep_their_rank_in_every_source() -> None:
    merged = merge_lists(lists([5, 6, 7], [7, 8]), config())
    assert sorted(merged.items.tolist()) == [5, 6, 7, 8]
    row = merged.items.tolist().index(7)
    assert merged.source_rank[row].tolist() == [2, 0]
    row = merged.items.tolist().index(8)
    assert merged.source_rank[row].tolist() == [-1, 1]
    # found by both sources, 7 outranks everything found once
    assert merged.items[0] == 7


def test_quotas_cut_each_source_and_total_cuts_the_list() -> None:
    merged = merge_lists(lists([2, 3, 4, 5], [6, 7, 8, 9]), config(quotas=(2, 1), total=2))
    assert len(merged) == 2
    merged = merge_lists(lists([2, 3, 4, 5], [6, 7, 8, 9]), config(quotas=(2, 1)))
    assert set(merged.items.tolist()) == {2, 3, 6}


def test_weights_decide_the_interleaving() -> None:
    heavy_b = merge_lists(lists([2, 3], [4, 5]), config(weights=(0.1, 1.0)))
    assert heavy_b.items.tolist()[:2] == [4, 5]
    heavy_a = merge_lists(lists([2, 3], [4, 5]), config(weights=(1.0, 0.1)))
    assert heavy_a.items.tolist()[:2] == [2, 3]


def test_an_empty_source_leaves_a_full_list_from_the_others() -> None:
    merged = merge_lists(lists([], [4, 5, 6]), config())
    assert merged.items.tolist() == [4, 5, 6]
    assert merged.primary_source() == ["b", "b", "b"]
    empty = merge_lists(lists([], []), config())
    assert len(empty) == 0 and empty.source_rank.shape == (0, 2)


def test_the_name_shown_is_a_source_the_merge_weighs() -> None:
    # 6 is first in a (weight 0) and second in b: b is what put it in the list
    merged = merge_lists(lists([6, 7], [5, 6]), config(weights=(0.0, 1.0)))
    names = dict(zip(merged.items.tolist(), merged.primary_source(), strict=True))
    assert names == {5: "b", 6: "b", 7: "a"}  # 7: only the weight-0 source found it
    assert merged.take(np.arange(len(merged))[::-1]).weights == (0.0, 1.0)
    both = merge_lists(lists([6, 7], [5, 6]), config())
    assert dict(zip(both.items.tolist(), both.primary_source(), strict=True))[6] == "a"  # best rank wins


def test_take_reorders_every_column_together() -> None:
    merged = merge_lists(lists([5, 6], [6, 9]), config())
    reordered = merged.take(np.arange(len(merged))[::-1])
    assert reordered.items.tolist() == merged.items.tolist()[::-1]
    assert reordered.source_rank.tolist() == merged.source_rank.tolist()[::-1]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError):
        config(quotas=(1,))
    with pytest.raises(ValueError):
        config(sources=("a", "a"))
    with pytest.raises(ValueError):
        config(total=0)
    assert MergeConfig.from_dict(config().to_dict()) == config()


def test_score_fusion_credits_a_source_for_items_it_did_not_return() -> None:
    # source a returns [5, 6], source b returns [7]; b scores 6 far above 5 although it did not list it
    b_scores = {5: 0.0, 6: 5.0, 7: 1.0}
    a_scores = {5: 2.0, 6: 1.9, 7: 0.0}

    def union_scores(items: np.ndarray) -> np.ndarray:
        return np.array([[a_scores[int(i)], b_scores[int(i)]] for i in items])

    fused = merge_lists(lists([5, 6], [7]), config(fusion="score"), union_scores)
    assert fused.items.tolist()[0] == 6  # a's second, but b's scores lift it over a's first
    assert merge_lists(lists([5, 6], [7]), config()).items.tolist()[0] in (5, 7)  # ranks alone cannot
    with pytest.raises(ValueError, match="union_scores"):
        merge_lists(lists([5, 6], [7]), config(fusion="score"))
    with pytest.raises(ValueError, match="fusion"):
        config(fusion="borda")
    assert MergeConfig.from_dict(config(fusion="score").to_dict()).fusion == "score"


def test_score_fusion_weighs_each_source() -> None:
    # a and b disagree completely: a scores 5 > 6 > 7, b scores 7 > 6 > 5 (both score all three)
    a_scores = {5: 3.0, 6: 2.0, 7: 1.0}
    b_scores = {5: 1.0, 6: 2.0, 7: 3.0}

    def union_scores(items: np.ndarray) -> np.ndarray:
        return np.array([[a_scores[int(i)], b_scores[int(i)]] for i in items])

    heavy_a = merge_lists(lists([5, 6], [7, 6]), config(fusion="score", weights=(1.0, 0.25)), union_scores)
    heavy_b = merge_lists(lists([5, 6], [7, 6]), config(fusion="score", weights=(0.25, 1.0)), union_scores)
    assert heavy_a.items.tolist() == [5, 6, 7]
    assert heavy_b.items.tolist() == [7, 6, 5]
    # merge_score = sum of w_s * z_s: z_a = (1.22, 0, -1.22), z_b = (-1.22, 0, 1.22) for items 5, 6, 7
    z = np.sqrt(1.5)
    assert np.allclose(heavy_a.merge_score, [0.75 * z, 0.0, -0.75 * z], atol=1e-6)
    muted_b = merge_lists(lists([5, 6], [7, 6]), config(fusion="score", weights=(1.0, 0.0)), union_scores)
    assert np.allclose(muted_b.merge_score, [z, 0.0, -z], atol=1e-6)  # weight 0: b's scores count for nothing
