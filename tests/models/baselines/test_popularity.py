import numpy as np

from models.baselines.popularity import PopularityConfig, PopularityScorer, build_popularity
from models.data.builder import RawEvents, build_dataset
from models.data.schema import COMMERCE_FUNNEL, FIRST_REAL_ID, Action, Dataset
from models.data.splits import time_split
from models.protocols import evaluate, next_session_task
from models.scorer import FitInput
from models.types import RequestContext, UserHistory

DAY = 86400


def dataset(items: list[int], days: list[float], scenes: list[str]) -> Dataset:
    n = len(items)
    raw = RawEvents(
        user=np.arange(n),
        item=np.array(items),
        timestamp=(np.array(days) * DAY).astype(np.int64),
        action=np.full(n, Action.VIEW, np.int8),
        scene=np.array(scenes, dtype=object),
    )
    return build_dataset("pop", raw, COMMERCE_FUNNEL, "commerce")


def index(d: Dataset, raw: int) -> int:
    return d.catalogue.raw_id.index(str(raw))


def test_only_events_before_the_query_count() -> None:
    d = dataset([1, 1, 2], [1, 2, 10], ["a", "a", "a"])
    scorer = PopularityScorer(d.events, d.num_items, d.num_scenes, PopularityConfig(scene_weight=0.0))
    scores = scorer.score_at(np.array([5 * DAY, 11 * DAY, 1 * DAY]), np.array([1, 1, 1]))
    assert scores[0, index(d, 2)] == 0 and scores[0, index(d, 1)] > 0
    assert scores[1, index(d, 2)] > 0
    assert np.all(scores[2] == 0)  # nothing strictly before day 1


def test_recent_events_outweigh_old_ones() -> None:
    d = dataset([1, 1, 1, 2], [0, 0.1, 0.2, 20], ["a"] * 4)
    scorer = PopularityScorer(
        d.events, d.num_items, d.num_scenes, PopularityConfig(half_life_days=2, scene_weight=0)
    )
    score = scorer.score_at(np.array([21 * DAY]), np.array([1]))[0]
    assert score[index(d, 2)] > score[index(d, 1)]  # one fresh view beats three from three weeks ago
    long_memory = PopularityScorer(
        d.events, d.num_items, d.num_scenes, PopularityConfig(half_life_days=1000, scene_weight=0)
    )
    score = long_memory.score_at(np.array([21 * DAY]), np.array([1]))[0]
    assert score[index(d, 1)] > score[index(d, 2)]


def test_scene_popularity_and_top_k() -> None:
    d = dataset([1, 1, 1, 2, 2], [1, 1, 1, 1, 1], ["home", "home", "home", "search", "search"])
    scorer = PopularityScorer(d.events, d.num_items, d.num_scenes, PopularityConfig())
    search = FIRST_REAL_ID + d.manifest["vocabularies"]["scene"].index("search")
    assert scorer.top_k(2 * DAY, search, 1).tolist() == [index(d, 2)]
    assert scorer.top_k(2 * DAY, 1, 1).tolist() == [index(d, 1)]  # unknown scene: global popularity
    assert scorer.top_k(2 * DAY, 1, 5, exclude=np.array([index(d, 1)])).tolist() == [index(d, 2)]


class RandomScorer:
    def __init__(self, num_items: int):
        self.num_items = num_items
        self.rng = np.random.default_rng(0)

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        return self.rng.random((len(histories), self.num_items)).astype(np.float32)


def test_beats_random_on_synthetic(tiny_synthetic: Dataset) -> None:
    split = time_split(tiny_synthetic.events)
    scorer = build_popularity(FitInput(tiny_synthetic, split, "next-session", seed=0))
    task = next_session_task(tiny_synthetic, split)
    n = tiny_synthetic.num_items
    recall = np.nanmean(evaluate(scorer, task, n, progress=False)["Recall@50"])
    random_recall = np.nanmean(evaluate(RandomScorer(n), task, n, progress=False)["Recall@50"])
    assert recall > 1.5 * random_recall
