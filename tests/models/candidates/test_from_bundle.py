import json

import numpy as np

from models.candidates.from_bundle import default_merge, serving_pipeline
from models.candidates.merge import MergeConfig
from models.candidates.sources import PopularSource, RecentItemsSource


def _sources() -> list:
    return [RecentItemsSource(), PopularSource(np.arange(20, dtype=np.float32), "popular")]


def test_a_stored_recent_scoring_replaces_the_default_one() -> None:
    chosen = RecentItemsSource(max_items=7, decay=0.9, action_weights={})
    merge = MergeConfig(("recent", "popular"), (10, 10), (1.0, 0.1), 10, allow_seen=True)
    stored = json.loads(json.dumps({"merge": merge.to_dict(), "recent": chosen.to_dict()}))
    served = serving_pipeline(stored, _sources(), None, 10)
    recent = served.generator.sources[0]
    assert isinstance(recent, RecentItemsSource) and recent.to_dict() == chosen.to_dict()
    assert served.generator.config.sources == ("recent", "popular")


def test_without_a_stored_scoring_the_defaults_serve_and_absent_sources_are_dropped() -> None:
    merge = MergeConfig(("ann", "recent", "popular"), (10, 10, 10), (4.0, 1.0, 0.1), 10, allow_seen=True)
    served = serving_pipeline({"merge": merge.to_dict(), "ranker_served": False}, _sources(), None, 10)
    assert served.generator.config.sources == ("recent", "popular")  # no index: no ANN list
    recent = served.generator.sources[0]
    assert isinstance(recent, RecentItemsSource) and recent.to_dict() == RecentItemsSource().to_dict()
    assert default_merge(["recent", "popular"], 10).sources == ("popular",)  # seen items not allowed
