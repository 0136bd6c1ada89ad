import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
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
