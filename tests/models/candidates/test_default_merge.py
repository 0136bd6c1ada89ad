import numpy as np

from models.candidates.merge import MergeConfig, default_merge
from models.candidates.sources import PopularSource, RecentItemsSource
from models.recipe.trained import served_pipeline


def _sources() -> dict:
    return {
        "recent": RecentItemsSource(max_items=7, decay=0.9, action_weights={}),
        "popular": PopularSource(np.arange(20, dtype=np.float32), "popular"),
    }


def test_absent_sources_are_dropped_and_the_total_caps_the_list() -> None:
    merge = MergeConfig(("ann", "recent", "popular"), (10, 10, 10), (4.0, 1.0, 0.1), 10, allow_seen=True)
    served = served_pipeline(_sources(), merge, None, False, total=5)
    config = served.generator.config
    assert config.sources == ("recent", "popular")  # no index: no ANN list
    assert config.weights == (1.0, 0.1) and config.quotas == (10, 10) and config.total == 5
    recent = served.generator.sources[0]
    assert isinstance(recent, RecentItemsSource) and recent.to_dict() == _sources()["recent"].to_dict()
    assert not served.use_ranker


def test_the_default_merge_allows_the_recent_source_only_where_seen_items_may_return() -> None:
    assert default_merge(["recent", "popular"], 10).sources == ("popular",)
    merge = default_merge(["ann", "recent", "popular"], 40, allow_seen=True)
    assert merge.sources == ("ann", "recent", "popular") and merge.quotas == (40, 10, 20)
