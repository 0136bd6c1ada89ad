import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig, merge_lists
from models.candidates.sources import PopularSource, RecentItemsSource
from tests.models.candidates.test_sources import request


def test_the_generator_serves_score_fusion_with_every_sources_scores() -> None:
    popular = PopularSource(np.array([0, 0, 1, 2, 3, 40, 50], dtype=np.float32))
    sources = [RecentItemsSource(), popular]
    rank = MergeConfig(("recent", "popular"), (5, 1), (1.0, 1.0), total=5, allow_seen=True)
    score = MergeConfig(("recent", "popular"), (5, 1), (0.1, 1.0), total=5, allow_seen=True, fusion="score")
    asked = request([5, 2, 3])
    ranked = CandidateGenerator(sources, rank).generate(asked)
    fused = CandidateGenerator(sources, score).generate(asked)
    assert sorted(ranked.items.tolist()) == sorted(fused.items.tolist()) == [2, 3, 5, 6]
    # popularity's scores of the recent items (it listed only item 6) now order them: 5 before 3 before 2
    assert fused.items.tolist().index(5) < fused.items.tolist().index(3) < fused.items.tolist().index(2)
    assert ranked.items.tolist()[0] == 3  # rank fusion: the newest item first (recent #1, absent elsewhere)


class _CountingPopular(PopularSource):
    """PopularSource that counts how often score fusion asks it for scores."""

    asked = 0

    def score_items(self, request, items):  # type: ignore[no-untyped-def]
        type(self).asked += 1
        return super().score_items(request, items)


def test_a_source_the_merge_weighs_zero_is_not_asked_for_scores_and_nothing_changes() -> None:
    popular = _CountingPopular(np.array([0, 0, 1, 2, 3, 40, 50], dtype=np.float32))
    weighed = PopularSource(np.array([0, 0, 9, 1, 5, 2, 7], dtype=np.float32), "popular_plain")
    sources = [RecentItemsSource(), popular, weighed]
    config = MergeConfig(
        ("recent", "popular", "popular_plain"),
        (5, 2, 3),
        (0.5, 0.0, 1.0),
        total=6,
        allow_seen=True,
        fusion="score",
    )
    generator = CandidateGenerator(sources, config)
    asked = request([5, 2, 3])
    merged = generator.generate(asked)
    assert _CountingPopular.asked == 0
    every = generator.union_scores(asked)(merged.items)
    assert _CountingPopular.asked == 1 and every[:, 1].any()  # merge tuning still reads every source
    skipped = generator.union_scores(asked, weighted_only=True)(merged.items)
    np.testing.assert_array_equal(skipped[:, [0, 2]], every[:, [0, 2]])
    assert not skipped[:, 1].any()
    # the fused order equals the merge over every source's scores
    full = merge_lists(generator.source_lists(asked), config, generator.union_scores(asked))
    np.testing.assert_array_equal(full.items, merged.items)
    np.testing.assert_allclose(full.merge_score, merged.merge_score)
    np.testing.assert_array_equal(full.source_score, merged.source_score)
