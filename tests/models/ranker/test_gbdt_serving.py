import numpy as np
import pytest

from models.candidates.feature_state import StaticInfo
from models.candidates.features import candidate_features
from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig, MergedCandidates, merge_lists
from models.candidates.served import MergedRanker, ServedPipeline
from models.candidates.sources import CandidateRequest
from models.candidates.training_requests import (
    OffsetFit,
    Request,
    fit_offset,
    offset_request_set,
    offset_requests,
    source_lists,
)
from models.ranker.gbdt import GbdtConfig, GbdtRanker, train_gbdt
from models.ranker.gbdt_serving import MergedReranker
from tests.models.candidates.feature_data import side_dataset

CONFIG = MergeConfig(("cooccurrence", "transitions", "popular"), (20, 20, 20), (1.0, 1.0, 0.5), total=20)
SMALL = GbdtConfig(num_leaves=4, min_data_in_leaf=5, max_rounds=10, early_stopping_rounds=5)


def _trained() -> tuple[GbdtRanker, OffsetFit, list[CandidateRequest], list[MergedCandidates]]:
    """A small GBDT (offsets 2 / 1) and the test requests (offset 0) with their merged candidates."""
    ranker, fit, test = _fitted(CONFIG)
    merged = [merge_lists(lists, CONFIG) for lists in source_lists(fit, test, CONFIG)]
    return ranker, fit, [r.candidate_request for r in test], merged


def _fitted(config: MergeConfig) -> tuple[GbdtRanker, OffsetFit, list[Request]]:
    dataset = side_dataset(num_users=30, num_items=60, num_events=900, seed=11)
    static = StaticInfo.from_dataset(dataset)
    train = offset_request_set(dataset, static, 2, config, 30)
    valid = offset_request_set(dataset, static, 1, config, 30)
    ranker, _ = train_gbdt(train, valid, train.names, SMALL)
    return ranker, fit_offset(dataset, static, 0), offset_requests(dataset, 0, 30)[:6]


def test_the_served_reranker_scores_what_the_features_and_the_ranker_give() -> None:
    ranker, fit, requests, merged = _trained()
    reranker = MergedReranker(ranker, fit.state)
    assert isinstance(reranker, MergedRanker)
    batch = reranker.score_features(requests, merged, reranker.features_batch(requests, merged))
    for request, candidates, scores in zip(requests, merged, batch, strict=True):
        features = candidate_features(request.context.timestamp, request.history, candidates, fit.state)
        np.testing.assert_array_equal(scores, ranker.score(features))
        order = reranker.rerank(request, candidates)
        assert sorted(order.items.tolist()) == sorted(candidates.items.tolist())
        assert np.all(np.diff(ranker.score(reranker.features(request, order))) <= 0)
    other = MergeConfig(("cooccurrence", "popular"), (20, 20), (1.0, 1.0), total=20)
    _, _, test = _fitted(other)
    lists = merge_lists(source_lists(fit, test[:1], other)[0], other)
    with pytest.raises(ValueError, match="sources"):
        reranker.features(requests[0], lists)


class _Timer:
    def __init__(self) -> None:
        self.stages: list[str] = []

    def record(self, stage: str, started: float) -> None:
        self.stages.append(stage)


def test_the_served_pipeline_reorders_the_merged_head_and_keeps_the_tail_after_it() -> None:
    ranker, fit, requests, merged = _trained()
    depth = 8
    reranker = MergedReranker(ranker, fit.state, depth=depth)
    pipeline = ServedPipeline(CandidateGenerator(list(fit.sources.values()), CONFIG), reranker)
    timer = _Timer()
    served = pipeline.recommend_many(requests, merged=merged, timer=timer)
    assert timer.stages == ["retrieve", "features", "rank", "rules"]
    for request, candidates, answer in zip(requests, merged, served, strict=True):
        assert answer.ranked
        head = candidates.take(np.arange(min(depth, len(candidates))))
        expected = reranker.rerank(request, head).items
        np.testing.assert_array_equal(answer.items[: len(head)], expected)
        np.testing.assert_array_equal(answer.items[len(head) :], candidates.items[len(head) :])
        assert np.all(np.diff(answer.scores) <= 0)  # the tail scores below the head


def test_skipping_the_repeat_columns_the_model_never_reads_keeps_its_scores() -> None:
    ranker, fit, requests, merged = _trained()
    skipping = MergedReranker(ranker, fit.state)
    computing = MergedReranker(ranker, fit.state)
    computing.repeats = True
    assert not skipping.repeats
    for request, candidates in zip(requests, merged, strict=True):
        np.testing.assert_array_equal(
            ranker.score(skipping.features(request, candidates)),
            ranker.score(computing.features(request, candidates)),
        )
