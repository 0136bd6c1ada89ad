import numpy as np

from models.ranker.anchors import SECONDS_PER_DAY, AnchorSources, PopularityTimeline, anchor_groups
from models.ranker.config import ANCHOR_POPULAR, ANCHOR_REQUEST, ANCHOR_STRONG
from models.ranker.retrieval import CooccurrenceTable
from tests.models.ranker.fakes import tiny_config


def test_popular_before_ignores_the_request_day_and_later() -> None:
    day = 100 * SECONDS_PER_DAY
    timestamp = np.array([day - 5 * SECONDS_PER_DAY] * 300 + [day + 10] * 500)
    item = np.array([4] * 300 + [7] * 500)
    timeline = PopularityTimeline(timestamp, item, num_items=10, days=7, top_k=3)
    assert timeline.popular_before(day + 3600).tolist() == [4]


def test_anchor_groups_follow_the_configured_types() -> None:
    config = tiny_config(anchor_types=(ANCHOR_STRONG, ANCHOR_REQUEST, ANCHOR_POPULAR), anchor_len=3)
    table = CooccurrenceTable(
        np.zeros((10, 2), np.int64), np.zeros((10, 2), np.float32), np.ones(10, np.float32)
    )
    sources = AnchorSources(table, popular_latest=np.array([9, 8]))
    groups = anchor_groups(
        config,
        sources,
        history_item=np.array([2, 3, 4, 3, 5]),
        history_level=np.array([2, 3, 1, 2, 1]),
        request_anchors=np.array([6]),
        request_timestamp=0,
    )
    assert groups.tolist() == [[3, 2, 0], [6, 0, 0], [9, 8, 0]]  # strong: most recent first, unique
