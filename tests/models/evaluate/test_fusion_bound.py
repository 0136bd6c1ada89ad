from dataclasses import replace

import numpy as np
import pytest

from models.data.loaders.synthetic import generate_synthetic
from models.data.schema import Dataset
from models.evaluate.fusion_bound import (
    fused_top,
    fusion_ndcg,
    seed_summary,
    standardise_all,
    weight_grid,
    write_fusion_report,
)
from models.evaluate.replay import run_seed
from models.recipe.periods import pipeline_periods
from tests.models.recipe.test_recipe import FAST, TINY


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


def test_the_grid_keeps_one_weight_vector_per_direction() -> None:
    assert weight_grid(2, (0.0, 1.0, 2.0)) == [(0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (1.0, 2.0), (2.0, 1.0)]
    assert len(weight_grid(3, (0.0, 0.25, 1.0, 4.0))) == len(set(weight_grid(3, (0.0, 0.25, 1.0, 4.0))))


def test_fused_top_ranks_by_the_weighted_standardised_scores() -> None:
    items = np.array([5, 7, 9, 11])
    scores = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 1.0], [0.0, 0.0]])
    (standard,) = [s for _, s in standardise_all([(items, scores)])]
    assert fused_top(items, standard, np.array([1.0, 0.0]), k=2).tolist() == [9, 5]
    assert fused_top(items, standard, np.array([0.0, 1.0]), k=2).tolist() == [7, 9]
    # equal fused scores: the lower id first
    assert fused_top(items, np.zeros((4, 2)), np.array([1.0, 1.0]), k=4).tolist() == [5, 7, 9, 11]


@pytest.mark.parametrize("protocol", ["next-session", "leave-last-out"])
def test_the_bound_reproduces_the_served_merge_and_sits_above_it(dataset: Dataset, protocol: str) -> None:
    periods = pipeline_periods(dataset, protocol)
    outcome = run_seed(dataset, periods, 0, replace(FAST, keep_candidates=True, merge_fusion="score"))
    unions = outcome.candidates
    assert unions is not None and unions.sources == outcome.merge.sources
    assert len(unions.valid) == len(unions.valid_rows) and len(unions.test) == len(periods.test)
    for items, scores in [*unions.valid, *unions.test]:
        assert scores.shape == (len(items), len(unions.sources))
        assert np.all(np.diff(items) > 0)  # a sorted union, each item once
    assert outcome.merge.fusion == "score"  # the equalities need score fusion
    weights = np.asarray(outcome.merge.weights)
    test = fusion_ndcg(standardise_all(unions.test), periods.test, np.arange(len(periods.test)), weights)
    assert test == pytest.approx(outcome.metrics["merged"]["NDCG@10"], abs=1e-12)
    valid = fusion_ndcg(standardise_all(unions.valid), periods.ranker, unions.valid_rows, weights)
    assert valid == pytest.approx(outcome.valid["merged_NDCG@10"], abs=1e-12)
    summary = seed_summary(
        0, unions, periods.ranker, periods.test, outcome.metrics, weight_grid(len(weights))
    )
    assert summary["tuned"]["test"] == pytest.approx(test)
    assert summary["grid_test_best"]["test"] >= summary["grid_valid_best"]["test"]
    assert summary["best_source_test"] == max(outcome.metrics[n]["NDCG@10"] for n in unions.sources)


def test_without_the_setting_no_candidates_are_kept(dataset: Dataset) -> None:
    outcome = run_seed(dataset, pipeline_periods(dataset, "next-session"), 0, FAST)
    assert outcome.candidates is None


def test_the_fusion_report_is_written_with_its_three_files(tmp_path) -> None:
    point = {"weights": (1.0, 0.5), "valid": 0.2, "test": 0.11}
    seeds = [
        {
            "seed": 0,
            "sources": ["ann", "cooccurrence"],
            "fusion": "score",
            "best_source": "cooccurrence",
            "best_source_test": 0.1,
            "tuned": point,
            "grid_valid_best": point,
            "grid_test_best": {**point, "test": 0.12},
            "grid_points": 3,
            "valid_spread_top8": 0.0,
        }
    ]
    paths = write_fusion_report(tmp_path / "fusion-x", "x", "tandem eval --stage fusion", "abc", seeds)
    assert all(path.exists() for path in paths.values())
    text = paths["md"].read_text(encoding="utf-8")
    assert "0.2000 / 0.1200 (1.200; w 1, 0.5)" in text and "ann, cooccurrence" in text
