import numpy as np
import pytest

from models.candidates.feature_state import StaticInfo
from models.candidates.features import candidate_features
from models.candidates.merge import MergeConfig, merge_lists
from models.candidates.training_requests import fit_offset, offset_request_set, offset_requests, source_lists
from models.ranker.gbdt import GbdtConfig, train_gbdt
from models.ranker.gbdt_serving import MergedReranker
from tests.models.candidates.feature_data import side_dataset

CONFIG = MergeConfig(("cooccurrence", "transitions", "popular"), (20, 20, 20), (1.0, 1.0, 0.5), total=20)


def test_the_served_reranker_scores_what_the_features_and_the_ranker_give() -> None:
    dataset = side_dataset(num_users=30, num_items=60, num_events=900, seed=11)
    static = StaticInfo.from_dataset(dataset)
    train = offset_request_set(dataset, static, 2, CONFIG, 30)
    valid = offset_request_set(dataset, static, 1, CONFIG, 30)
    small = GbdtConfig(num_leaves=4, min_data_in_leaf=5, max_rounds=10, early_stopping_rounds=5)
    ranker, _ = train_gbdt(train, valid, train.names, small)
    fit = fit_offset(dataset, static, 0)
    requests = offset_requests(dataset, 0, 30)[:6]
    merged = [merge_lists(lists, CONFIG) for lists in source_lists(fit, requests, CONFIG)]
    reranker = MergedReranker(ranker, fit.state)
    histories = [r.candidate_request.history for r in requests]
    contexts = [r.candidate_request.context for r in requests]
    batch = reranker.score_merged_batch(histories, contexts, merged)
    for history, context, candidates, scores in zip(histories, contexts, merged, batch, strict=True):
        features = candidate_features(context.timestamp, history, candidates, fit.state)
        np.testing.assert_array_equal(scores, ranker.score(features))
        order = reranker.rerank(history, context, candidates)
        assert sorted(order.items.tolist()) == sorted(candidates.items.tolist())
        assert np.all(np.diff(reranker.score_merged(history, context, order)) <= 0)
    other = MergeConfig(("cooccurrence", "popular"), (20, 20), (1.0, 1.0), total=20)
    lists = source_lists(fit, requests[:1], other)[0]
    with pytest.raises(ValueError, match="sources"):
        reranker.score_merged(histories[0], contexts[0], merge_lists(lists, other))
