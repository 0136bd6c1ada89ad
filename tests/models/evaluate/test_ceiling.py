import numpy as np
import pytest

from models.baselines.popularity import PopularityConfig, popularity_after
from models.candidates.sources import PopularSource
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic, synthetic_truth
from models.data.schema import Dataset
from models.evaluate.ceiling import _best, ceiling_lists, synthetic_ceiling_lists
from models.recipe.lists import candidate_requests, list_metrics
from models.recipe.periods import pipeline_periods

CONFIG = SyntheticConfig(num_users=300, num_items=600, num_events=30_000, num_clusters=10, seed=11)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(CONFIG)


def test_the_ceiling_beats_what_the_data_alone_gives_and_a_wrong_intent_falls_below(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "next-session", exclude_seen=False)
    task = periods.test
    lists = synthetic_ceiling_lists(dataset, task, 50)
    assert lists is not None and len(lists) == len(task)
    assert all(len(items) == 50 and len(np.unique(items)) == 50 for items in lists)
    events = periods.refit_events(dataset)
    counts = popularity_after(events, dataset.num_items, dataset.num_scenes, PopularityConfig())
    popular = PopularSource(counts)
    popular_lists = [popular.candidates(r, 50).items for r in candidate_requests(task, None)]
    ceiling = list_metrics(lists, task)["NDCG@10"]
    assert ceiling > 2 * list_metrics(popular_lists, task)["NDCG@10"]
    # the same bound with every session's intent shifted by half the clusters: the user mapping matters
    _, truth = synthetic_truth(CONFIG)
    shifted = type(truth)(**{**vars(truth), "intent": (truth.intent + 5) % CONFIG.num_clusters})
    assert list_metrics(ceiling_lists(shifted, dataset, task, 50), task)["NDCG@10"] < 0.5 * ceiling


def test_excluded_items_never_enter_the_ceiling(dataset: Dataset) -> None:
    task = pipeline_periods(dataset, "next-session", exclude_seen=True).test
    lists = synthetic_ceiling_lists(dataset, task, 30)
    assert lists is not None
    for row, items in enumerate(lists):
        start, stop = task.exclude.offsets[row], task.exclude.offsets[row + 1]
        assert not np.isin(items, task.exclude.columns["item"][start:stop]).any()


def test_no_ceiling_without_the_generators_config(dataset: Dataset) -> None:
    task = pipeline_periods(dataset, "next-session").test
    other = Dataset(**{**vars(dataset), "manifest": {}})
    assert synthetic_ceiling_lists(other, task, 10) is None


def test_a_log_the_generator_no_longer_draws_gets_no_ceiling(dataset: Dataset) -> None:
    task = pipeline_periods(dataset, "next-session").test
    saved = {**dataset.manifest["synthetic"], "seed": CONFIG.seed + 1}
    other = Dataset(**{**vars(dataset), "manifest": {**dataset.manifest, "synthetic": saved}})
    with pytest.raises(ValueError, match="prepare it again"):
        synthetic_ceiling_lists(other, task, 10)


def test_the_head_is_the_best_items_ties_by_raw_id_without_the_excluded() -> None:
    probs = np.array([0.1, 0.5, 0.5, 0.2, 0.05])
    index = np.array([10, 11, 12, 13, 14])
    assert _best(probs, index, np.array([11]), 2).tolist() == [12, 13]
    assert _best(probs, index, np.zeros(0, np.int64), 3).tolist() == [11, 12, 13]
    assert _best(probs, index, np.array([12, 13]), 10).tolist() == [11, 10, 14]
