from pathlib import Path

import numpy as np

from models.bundle.ranker_io import load_any_ranker, save_any_ranker
from models.candidates.feature_state import StaticInfo
from models.candidates.features import ablation_columns, feature_groups, feature_names
from models.candidates.merge import merge_lists
from models.candidates.training_requests import (
    fit_offset,
    offset_request_set,
    offset_requests,
    source_lists,
)
from models.ranker.gbdt import train_gbdt
from models.ranker.gbdt_serving import MergedReranker
from models.recipe.gbdt_stage import QueryRows
from tests.models.candidates.feature_data import side_dataset
from tests.models.ranker.test_gbdt_serving import CONFIG, SMALL


def _rows(data: object) -> QueryRows:
    group = data.group  # type: ignore[attr-defined]
    rows = np.arange(len(group) - 1)
    return QueryRows(data.features, data.label, group, rows)  # type: ignore[attr-defined]


def test_a_gbdt_on_a_feature_subset_reads_the_same_columns_after_a_round_trip(tmp_path: Path) -> None:
    dataset = side_dataset(num_users=30, num_items=60, num_events=900, seed=11)
    static = StaticInfo.from_dataset(dataset)
    columns = ablation_columns(CONFIG.sources, "no_side")
    names = feature_names(CONFIG.sources)
    assert 0 < len(columns) < len(names)
    train = _rows(offset_request_set(dataset, static, 2, CONFIG, 30)).columns(columns)
    valid = _rows(offset_request_set(dataset, static, 1, CONFIG, 30)).columns(columns)
    model, _ = train_gbdt(train, valid, [names[i] for i in columns], SMALL)
    fit = fit_offset(dataset, static, 0)
    reranker = MergedReranker(model, fit.state, 20, columns)

    loaded = load_any_ranker(tmp_path / save_any_ranker(reranker, tmp_path))
    assert isinstance(loaded, MergedReranker) and loaded.columns is not None
    np.testing.assert_array_equal(loaded.columns, columns)
    groups = feature_groups(CONFIG.sources)
    assert all(groups[name] != "side" for name in loaded.ranker.feature_names)
    requests = offset_requests(dataset, 0, 30)[:6]
    for request, lists in zip(requests, source_lists(fit, requests, CONFIG), strict=True):
        merged = merge_lists(lists, CONFIG)
        served = loaded.rerank(request.candidate_request, merged).items
        np.testing.assert_array_equal(served, reranker.rerank(request.candidate_request, merged).items)
        assert loaded.features(request.candidate_request, merged).shape == (len(merged), len(columns))
