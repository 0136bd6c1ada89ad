from pathlib import Path

import numpy as np

from models.evaluate.ranker_report import (
    ablation_markdown,
    ablation_table,
    feature_set_notes,
    plot_ablation,
    ranker_intervals,
    ranker_notes,
    ranker_targets,
)


def _means(pipeline: float, merged: float, gbdt: float, onepiece: float) -> dict[str, dict[str, float]]:
    values = {"pipeline": pipeline, "merged": merged, "ranker_gbdt": gbdt, "ranker_onepiece": onepiece}
    return {name: {"NDCG@10": value} for name, value in values.items()}


def test_the_movielens_target_needs_the_gain_and_a_ranker_served_in_every_seed() -> None:
    served = [{"ranker_served": True, "ranker_kind": "gbdt"}] * 3
    one_refused = [*served[:2], {"ranker_served": False, "ranker_kind": "gbdt"}]
    assert ranker_targets("ml-1m", _means(0.22, 0.20, 0.22, 0.19), served)["served_ranker_over_merged"]["met"]
    assert not ranker_targets("ml-1m", _means(0.22, 0.20, 0.22, 0.19), one_refused)[
        "served_ranker_over_merged"
    ]["met"]
    assert not ranker_targets("ml-1m", _means(0.21, 0.20, 0.21, 0.19), served)["served_ranker_over_merged"][
        "met"
    ]
    # elsewhere the served order must only not lose to the merged one, served or not
    taobao = ranker_targets("taobao", _means(0.10, 0.10, 0.099, 0.098), one_refused)
    assert taobao["served_ranker_over_merged"]["met"]
    assert not taobao["transformer_over_gbdt"]["met"]
    notes = ranker_notes(taobao, {})
    assert any("served in 2 of 3 seeds" in line for line in notes)


def test_the_ablation_table_reads_the_first_seed_that_trained_it(tmp_path: Path) -> None:
    def test_rows(gbdt: float) -> dict[str, dict[str, float]]:
        rows = {"merged": 0.1, "ranker_gbdt": gbdt, "gbdt_no_context": 0.11, "gbdt_sources_only": 0.1}
        return {name: {"NDCG@10": value} for name, value in rows.items()}

    decisions = [
        {"seed": 0, "test": {"merged": {"NDCG@10": 0.1}}, "gbdt": {}},  # no ablation in this seed
        {
            "seed": 1,
            "test": test_rows(0.12),
            "gbdt": {"features": 60, "ablation_no_context": {"features": 31}},
        },
        {"seed": 2, "test": test_rows(0.5), "gbdt": {}},
    ]
    table = ablation_table(decisions)
    assert [(r["features"], r["seed"]) for r in table] == [("all", 1), ("no_context", 1), ("sources_only", 1)]
    np.testing.assert_allclose([r["over_merged"] for r in table], [1.2, 1.1, 1.0])
    assert table[0]["columns"] == 60 and table[1]["columns"] == 31
    lines = ablation_markdown(table, {"trans_prob_last": 0.3})
    assert "| no_context | 31 | 0.1100 | 1.100 |" in lines and "trans_prob_last 0.300" in lines[-1]
    assert plot_ablation(table, "t", tmp_path / "a.png").stat().st_size > 0


def test_ranker_intervals_pair_each_ranker_with_the_merged_order() -> None:
    merged = [np.array([0.1, 0.2, 0.3, 0.4])] * 2
    per_request = {
        "merged": merged,
        "ranker_over_merged": merged,  # the kept one: its own interval, computed elsewhere
        "ranker_gbdt": [m * 1.5 for m in merged],
        "ranker_gbdt_no_side": [m * 1.2 for m in merged],
        "ranker_onepiece": merged[:1],
    }
    intervals = ranker_intervals(per_request)
    # every trained ranker present in every seed (onepiece is missing one), each feature set its own
    assert set(intervals) == {"ranker_gbdt_over_merged", "ranker_gbdt_no_side_over_merged"}
    assert abs(intervals["ranker_gbdt_over_merged"].ratio - 1.5) < 1e-9
    assert abs(intervals["ranker_gbdt_no_side_over_merged"].ratio - 1.2) < 1e-9
    lines = ranker_notes(
        ranker_targets("ml-1m", _means(0.15, 0.1, 0.15, 0.1), [{"ranker_served": True}]), intervals
    )
    assert any(line.startswith("gbdt_no_side over merged / merged") for line in lines)


def test_feature_set_notes_give_each_seeds_validation_ratios() -> None:
    decisions = [
        {
            "seed": 0,
            "valid": {"gbdt_gate_ratio": 1.1, "gbdt_no_side_gate_ratio": 1.2, "onepiece_gate_ratio": 1.0},
        },
        {"seed": 1, "valid": {"gbdt_gate_ratio": 1.05, "gbdt_no_side_gate_ratio": 1.01}},
    ]
    (line,) = feature_set_notes(decisions)
    assert "seed 0: gbdt 1.100, gbdt_no_side 1.200; seed 1: gbdt 1.050, gbdt_no_side 1.010" in line
    assert "onepiece" not in line
    assert feature_set_notes([{"seed": 0, "valid": {"gbdt_gate_ratio": 1.1}}]) == []
