import json
from pathlib import Path

import numpy as np

from models.candidates.features import (
    ABLATIONS,
    DEFAULT_SOURCES,
    ablation_columns,
    feature_groups,
    feature_names,
)
from models.candidates.training_requests import RequestSet
from models.ranker.experiment import (
    ExperimentConfig,
    format_report,
    merged_ndcg,
    ndcg_at,
    run_experiment,
)
from models.ranker.gbdt import GbdtConfig, GbdtRanker
from tests.models.candidates.feature_data import side_dataset


def _requests(labels: list[list[int]]) -> RequestSet:
    sizes = [len(row) for row in labels]
    flat = np.concatenate([np.array(row, np.float32) for row in labels])
    return RequestSet(
        ("x",),
        np.zeros((len(flat), 1), np.float32),
        flat,
        np.concatenate([np.arange(n) for n in sizes]),
        np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        np.arange(len(sizes)),
        np.zeros(len(sizes), np.int64),
        np.zeros(len(sizes), np.int64),
    )


def test_ndcg_counts_the_targets_rank_with_ties_in_merged_order() -> None:
    requests = _requests([[0, 0, 1, 0], [0, 0, 0], [1, 0], [0] * 11 + [1]])
    assert np.allclose(merged_ndcg(requests), [1 / np.log2(4), 0.0, 1.0, 0.0])  # rank 12 > 10
    scores = np.concatenate([[0.0, 0.0, 5.0, 0.0], [1.0, 2.0, 3.0], [2.0, 2.0], np.arange(12.0)])
    assert np.allclose(ndcg_at(scores, requests), [1.0, 0.0, 1.0, 1.0])  # a tie keeps merged order


def test_ablation_columns_follow_the_feature_groups() -> None:
    names = feature_names(DEFAULT_SOURCES)
    groups = feature_groups()
    assert ablation_columns(DEFAULT_SOURCES, "all").tolist() == list(range(len(names)))
    for ablation, kept in ABLATIONS.items():
        columns = ablation_columns(DEFAULT_SOURCES, ablation)
        assert {groups[names[i]] for i in columns} == set(kept)
        assert len(columns) == sum(groups[name] in kept for name in names)


def test_the_experiment_runs_end_to_end_on_a_tiny_log(tmp_path: Path) -> None:
    config = ExperimentConfig(
        "tiny",
        candidates=20,
        train_offsets=3,
        valid_offsets=1,
        ablations=("all", "sources_only"),
        gbdt=GbdtConfig(num_leaves=4, min_data_in_leaf=5, max_rounds=15, early_stopping_rounds=5),
    )
    report = run_experiment(config, tmp_path, side_dataset(num_users=40, num_items=60, num_events=1200))
    json.dumps(report)  # JSON-able
    assert report["test_requests"] > 30 and set(report["ablations"]) == {"all", "sources_only"}
    assert 0.0 <= report["merged_ndcg10"] <= 1.0
    run = report["ablations"]["all"]["runs"][0]
    assert GbdtRanker.load(next(tmp_path.glob("*.txt")), run["sha256"]).sha256 == run["sha256"]
    assert "GBDT all" in format_report(report)
