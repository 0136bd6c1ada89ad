import numpy as np
import pytest

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.recipe.lists import candidate_requests
from models.recipe.merge_stage import merge_ndcg, stored_union_scores
from models.recipe.merge_table import MergeTable
from models.recipe.periods import pipeline_periods
from models.recipe.train import fit_all_sources

SOURCES = ("cooccurrence", "transitions", "category", "recent", "popular")


@pytest.mark.parametrize("protocol", ["leave-last-out", "next-session"])
@pytest.mark.parametrize("fusion", ["rrf", "score"])
def test_the_table_scores_every_weight_vector_exactly_as_merging_each_request(
    protocol: str, fusion: str
) -> None:
    dataset = generate_synthetic(SyntheticConfig(num_users=60, num_items=150, num_events=4_000, seed=9))
    periods = pipeline_periods(dataset, protocol)
    sources = fit_all_sources(dataset, periods.fit_events(dataset))
    task = periods.ranker
    names = SOURCES if protocol == "next-session" else tuple(n for n in SOURCES if n != "recent")
    # small quotas and total: targets fall outside the list, ties in the fused score happen (rank fusion)
    config = MergeConfig(names, (8, 8, 6, 5, 4)[: len(names)], (1.0,) * len(names), total=12, fusion=fusion)
    generator = CandidateGenerator(list(sources.values()), config)
    requests = candidate_requests(task, None)
    lists = [generator.source_lists(r) for r in requests]
    rows = np.arange(0, len(task), 2)
    unions = [stored_union_scores(generator, requests[i], lists[i]) for i in range(len(task))]
    table = MergeTable.build(lists, task, rows, config, unions if fusion == "score" else None)
    rng = np.random.default_rng(0)
    trials = [(1.0,) * len(names), (0.0,) * (len(names) - 1) + (1.0,)]
    trials += [tuple(rng.choice([0.0, 0.1, 0.25, 1.0, 4.0], len(names)).tolist()) for _ in range(6)]
    scores = []
    for weights in trials:
        trial = MergeConfig(names, config.quotas, weights, total=12, fusion=fusion)
        expected = merge_ndcg(lists, task, rows, trial, unions if fusion == "score" else None)
        assert table.ndcg(weights) == expected, weights
        scores.append(expected)
    assert len(set(scores)) > 1  # the weights matter on this data
