from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from models.candidates.merge import MergeConfig
from models.data.errors import BadRows
from models.data.loaders.generic import load_event_file, parse_mapping
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.data.splits import TEST, VALID
from models.evaluate.pipeline_report import evaluate_pipeline
from models.evaluate.replay import run_seed
from models.recipe.lists import MISS_RANK, list_metrics, list_ranks
from models.recipe.merge_stage import choose_recent, merge_tuning_rows
from models.recipe.periods import pipeline_periods
from models.recipe.settings import RecipeSettings
from models.recipe.variants import best_variant
from tests.models.user_log import CLICK_LOG_MAP, write_click_log

TINY = SyntheticConfig(num_users=60, num_items=150, num_events=4_000, num_clusters=5, seed=3)
FAST = RecipeSettings(
    encoder_preset="tiny",
    encoder_epochs=0,
    ranker_preset="tiny",
    ranker_epochs=1,
    ranker_min_steps=0,
    total=40,
    progress=False,
)


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


@pytest.mark.parametrize("protocol", ["leave-last-out", "next-session"])
def test_periods_never_let_a_test_request_see_its_answer(dataset: Dataset, protocol: str) -> None:
    periods = pipeline_periods(dataset, protocol)
    events = dataset.events
    assert len(periods.test) > 0 and len(periods.ranker) > 0
    # nothing the bundle is fitted on comes at or after a ranker target or a test request of that user
    for task in (periods.ranker, periods.test):
        for user, context in zip(task.users.tolist(), task.contexts, strict=True):
            fitted = periods.fit & (events.user == user)
            assert np.all(events.timestamp[fitted] <= context.timestamp)
    if protocol == "leave-last-out":  # one target per request, excluded history
        assert periods.test.targets.shape[1] == 1
        assert not periods.fit[periods.ranker_target_rows].any()


@pytest.mark.parametrize("protocol", ["leave-last-out", "next-session"])
def test_the_refit_before_the_test_adds_the_ranker_period_and_nothing_after(
    dataset: Dataset, protocol: str
) -> None:
    periods = pipeline_periods(dataset, protocol)
    events = dataset.events
    assert periods.refit is not None
    assert not np.any(periods.fit & ~periods.refit)  # the fit period is inside the refit one
    assert periods.refit[periods.ranker_target_rows].all() and (periods.refit & ~periods.fit).any()
    for user, context in zip(periods.test.users.tolist(), periods.test.contexts, strict=True):
        refitted = periods.refit & (events.user == user)
        assert np.all(events.timestamp[refitted] <= context.timestamp)
    if protocol == "leave-last-out":
        last = np.r_[events.user[1:] != events.user[:-1], True]
        assert not np.any(periods.refit & last)  # every user's last event is the test target


def test_a_target_outside_the_list_is_a_miss(dataset: Dataset) -> None:
    task = pipeline_periods(dataset, "leave-last-out").test
    target = int(task.targets[0, 0])
    lists = [np.array([target + 1, target], dtype=np.int64)] + [np.zeros(0, np.int64)] * (len(task) - 1)
    ranks = list_ranks(lists, task.targets, task.target_mask)
    assert ranks[0, 0] == 2 and np.all(ranks[1:, 0] == MISS_RANK)
    metrics = list_metrics(lists, task)
    assert metrics["HR@10"] == pytest.approx(1 / len(task))
    assert metrics["MRR"] == pytest.approx(0.5 / len(task), rel=1e-6)


def test_replay_rows_and_the_ranker_gate(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "next-session")
    outcome = run_seed(dataset, periods, 0, FAST)
    kinds = outcome.kinds
    assert kinds["merged"] == "merged" and kinds["pipeline"] == "pipeline"
    assert {n for n, k in kinds.items() if k == "source"} == {
        "cooccurrence",
        "transitions",
        "category",
        "recent",
        "popular",
        "popular_plain",
    }
    for metrics in outcome.metrics.values():
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    # the served row is the ranker's when it won on validation, else exactly the merged order
    chosen = "ranker_over_merged" if outcome.ranker_served else "merged"
    assert outcome.metrics["pipeline"] == outcome.metrics[chosen]
    # ... as its cross-fitted gate decided on every validation request
    valid = outcome.valid
    sure = valid["gate_ratio"] > 1.0 + FAST.ranker_gate_margin and valid["gate_low"] > 1.0
    assert outcome.ranker_served == sure
    assert valid["gate_requests"] > 0
    # both rankers were trained, judged on the same requests and replayed; the one kept had the best
    # cross-fitted ratio among those that passed (or among all when none did)
    assert {"ranker_gbdt", "ranker_onepiece"} <= set(kinds)
    assert kinds["ranker_gbdt"] == kinds["ranker_onepiece"] == "ranker"
    kept = outcome.trained.ranker_kind
    assert kept in ("gbdt", "onepiece")
    passed = [k for k in ("gbdt", "onepiece") if valid[f"{k}_served"]] or ["gbdt", "onepiece"]
    assert valid[f"{kept}_gate_ratio"] == max(valid[f"{k}_gate_ratio"] for k in passed)
    assert outcome.metrics[f"ranker_{kept}"] == outcome.metrics["ranker_over_merged"]
    # the GBDT's feature ablations are replayed beside it (seed 0), never served
    ablations = {n for n, k in kinds.items() if k == "ablation"}
    assert ablations == {"gbdt_no_context", "gbdt_no_side", "gbdt_sources_only"}
    assert isinstance(outcome.merge, MergeConfig) and outcome.merge.allow_seen
    assert "refit" in outcome.seconds  # the test was answered by sources refitted on fit + ranker periods
    assert {f"{name}_NDCG@10" for name in outcome.merge.sources} <= set(outcome.valid)
    # rank and score fusion were both tuned; the better one on validation is served (ties: rank fusion)
    rank, score = outcome.valid["merge_rrf_NDCG@10"], outcome.valid["merge_score_NDCG@10"]
    assert outcome.merge.fusion == ("score" if score > rank + 1e-9 else "rrf")


def test_the_encoder_variant_best_on_validation_is_kept_and_continued(dataset: Dataset) -> None:
    # a second variant that cannot learn (learning rate 0): both train on the same targets, one is kept
    settings = replace(FAST, encoder_epochs=2, encoder_variants=({"learning_rate": 0.0, "epochs": 2},))
    outcome = run_seed(dataset, pipeline_periods(dataset, "next-session"), 0, settings)
    training = outcome.encoder_training
    assert training is not None and outcome.trained.encoder is not None
    tried = training["variants"]
    assert [row["overrides"] for row in tried] == [{}, {"learning_rate": 0.0, "epochs": 2}]
    assert sum(row["kept"] for row in tried) == 1
    kept = next(row for row in tried if row["kept"])
    assert kept["valid_NDCG@10"] == max(row["valid_NDCG@10"] for row in tried)
    # the encoder that answered the test is the kept one, continued with the kept settings
    assert training["overrides"] == kept["overrides"]
    assert training["best_epoch"] == kept["best_epoch"] and training["epochs"] == kept["epochs"]
    assert "ann" in outcome.metrics


@pytest.mark.parametrize("fusion", ["rrf", "score"])
def test_a_fixed_fusion_tunes_only_that_kind(dataset: Dataset, fusion: str) -> None:
    outcome = run_seed(
        dataset, pipeline_periods(dataset, "next-session"), 0, replace(FAST, merge_fusion=fusion)
    )
    assert outcome.merge.fusion == fusion
    tuned = {
        k for k in outcome.valid if k.startswith("merge_") and not k.startswith(("merge_only_", "merge_kept"))
    }
    assert tuned == {f"merge_{fusion}_NDCG@10"}


def test_the_merge_kept_is_never_below_its_best_single_source(
    dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.recipe.merge_stage as stage

    periods = pipeline_periods(dataset, "leave-last-out")
    outcome = run_seed(dataset, periods, 0, replace(FAST, rankers=()))
    singles = {k: v for k, v in outcome.valid.items() if k.startswith("merge_only_")}
    assert len(singles) == len(outcome.merge.sources)
    assert outcome.valid["merge_kept_NDCG@10"] >= max(singles.values())

    # a tuning that lands on poor weights (all on the weakest source, as weights tuned on other fits can
    # be poor): the guard serves the best source alone instead
    def weakest(lists, task, rows, base, union_scores=None):  # type: ignore[no-untyped-def]
        alone = [stage.single_source(base, column, base.fusion) for column in range(len(base.sources))]
        scored = [(stage.merge_ndcg(lists, task, rows, c, union_scores), c) for c in alone]
        value, config = min(scored, key=lambda pair: pair[0])
        return config, value

    monkeypatch.setattr(stage, "tune_weights", weakest)
    outcome = run_seed(dataset, periods, 0, replace(FAST, rankers=()))
    singles = {k: v for k, v in outcome.valid.items() if k.startswith("merge_only_")}
    best = max(singles, key=lambda k: singles[k])
    assert max(outcome.valid["merge_rrf_NDCG@10"], outcome.valid["merge_score_NDCG@10"]) < singles[best]
    assert outcome.valid["merge_kept_NDCG@10"] == singles[best]
    name = best.removeprefix("merge_only_").removesuffix("_NDCG@10")
    weights = dict(zip(outcome.merge.sources, outcome.merge.weights, strict=True))
    assert weights[name] == 1.0 and sum(weights.values()) == 1.0


def test_the_merge_uses_only_the_sources_asked_for(dataset: Dataset) -> None:
    periods = pipeline_periods(dataset, "next-session")
    chosen = ("cooccurrence", "popular")
    outcome = run_seed(dataset, periods, 0, replace(FAST, sources=chosen))
    assert outcome.merge.sources == chosen
    assert {n for n, k in outcome.kinds.items() if k == "source"} == {*chosen, "popular_plain"}


def test_source_choices_are_checked() -> None:
    from models.recipe.merge_stage import merge_sources

    have = ("ann", "cooccurrence", "recent", "popular")
    assert merge_sources(have, False, ()) == ("ann", "cooccurrence", "popular")  # recent needs allow_seen
    assert merge_sources(have, True, ("recent", "ann")) == ("ann", "recent")  # the merge's own order
    with pytest.raises(ValueError, match="unknown candidate source"):
        merge_sources(have, True, ("knn",))
    with pytest.raises(ValueError, match="no candidate source left"):
        merge_sources(have, False, ("transitions",))


def test_gbdt_feature_sets_are_checked() -> None:
    assert RecipeSettings(gbdt_feature_sets=("all", "sources_only")).gbdt_feature_sets[1] == "sources_only"
    with pytest.raises(ValueError, match="unknown GBDT feature set"):
        RecipeSettings(gbdt_feature_sets=("all", "no_genres"))
    with pytest.raises(ValueError, match="unknown GBDT feature set"):
        RecipeSettings(gbdt_ablations=("everything",))


def test_the_merge_is_tuned_on_every_ranker_period_request_or_only_the_validation_ones() -> None:
    train, valid = np.arange(0, 80), np.arange(80, 100)
    rng = np.random.default_rng(0)
    every = merge_tuning_rows(train, valid, RecipeSettings(merge_tuning="all"), rng)
    assert np.array_equal(every, np.arange(100))
    only_valid = merge_tuning_rows(train, valid, RecipeSettings(merge_tuning="valid"), rng)
    assert np.array_equal(only_valid, valid)
    capped = merge_tuning_rows(train, valid, RecipeSettings(merge_tuning_requests=30), rng)
    assert len(capped) == 30 and len(np.unique(capped)) == 30 and np.all(np.diff(capped) > 0)
    assert np.any(capped < 80) and set(capped.tolist()) <= set(range(100))
    with pytest.raises(ValueError, match="merge tuning 'test'"):
        merge_tuning_rows(train, valid, RecipeSettings(merge_tuning="test"), rng)


def test_the_recent_items_scoring_best_on_the_ranker_period_is_kept(dataset: Dataset) -> None:
    task = pipeline_periods(dataset, "next-session").ranker
    choices = ({"decay": 0.5, "action_weights": {}}, {"decay": 0.98}, {"decay": 0.5, "action_weights": {}})
    source, tried = choose_recent(task, choices)
    scores = [row["NDCG@10"] for row in tried]
    assert len(tried) == 3 and scores[0] == scores[2]
    best = int(np.argmax(scores))  # the first of equal scores
    assert [row["kept"] for row in tried] == [i == best for i in range(3)]
    assert source.to_dict() == {
        key: value for key, value in tried[best].items() if key not in ("NDCG@10", "kept")
    }
    outcome = run_seed(dataset, pipeline_periods(dataset, "next-session"), 0, FAST)
    assert outcome.trained.recent is not None and outcome.recent_tried  # next-session keeps seen items
    assert outcome.trained.recent["decay"] in {row["decay"] for row in outcome.recent_tried}


def test_an_unknown_fusion_is_refused(dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="merge fusion 'sum'"):
        run_seed(dataset, pipeline_periods(dataset, "next-session"), 0, replace(FAST, merge_fusion="sum"))


def test_variant_ties_keep_the_earlier_one() -> None:
    assert best_variant([0.1, 0.1, 0.05]) == 0
    assert best_variant([0.1, 0.2, 0.2]) == 1
    assert best_variant([0.3]) == 0


def test_report_json_has_rows_with_kinds_and_seed_statistics(dataset: Dataset, tmp_path) -> None:
    report = evaluate_pipeline(dataset, "leave-last-out", [0, 1], replace(FAST, total=30), "tandem eval test")
    paths = report.write(tmp_path / "pipeline-tiny")
    data = report.as_json()
    assert data["seeds"] == [0, 1] and data["protocol"] == "leave-last-out" and data["command"]
    assert data["rows"]["pipeline"]["kind"] == "pipeline"
    assert set(data["rows"]["merged"]["metrics"]) == {"NDCG@10", "HR@10", "Recall@50", "MRR"}
    assert "recent" not in data["rows"]  # leave-last-out excludes the history: no repeat source
    assert "ceiling" not in data["rows"]  # the generator's bound is for the next session only
    assert all(p.exists() for p in paths)
    served = data["intervals"]["pipeline_over_best_source"]
    assert served["low"] <= served["ratio"] <= served["high"] and served["resamples"] > 0
    # every seed's own test rows are kept, and the report's rows are their mean
    per_seed = [d["test"]["pipeline"]["NDCG@10"] for d in data["decisions"]]
    assert len(per_seed) == 2 and _ndcg(data, "pipeline") == pytest.approx(np.mean(per_seed), rel=1e-9)
    best = max((n for n, r in data["rows"].items() if r["kind"] == "source"), key=lambda n: _ndcg(data, n))
    assert served["ratio"] == pytest.approx(_ndcg(data, "pipeline") / _ndcg(data, best), rel=1e-9)
    targets = data["targets"]
    assert targets["served_over_best_source"]["value"] == served["ratio"]
    assert targets["served_over_best_source"]["met"] is (served["ratio"] >= 1.10)
    assert targets["served_over_merged"]["met"] is (_ndcg(data, "pipeline") >= _ndcg(data, "merged"))
    assert sum(note.startswith("Target: ") for note in data["notes"]) == 3  # + the ranker's
    # the second stage: both rankers against the merged order, the ranker target, the ablation (seed 0)
    assert {"ranker_gbdt_over_merged", "ranker_onepiece_over_merged"} <= set(data["intervals"])
    ranker = data["ranker_targets"]["served_ranker_over_merged"]
    assert ranker["seeds"] == 2 and ranker["value"] == pytest.approx(
        _ndcg(data, "pipeline") / _ndcg(data, "merged"), rel=1e-9
    )
    assert [row["features"] for row in data["ablation"]] == ["all", "no_context", "no_side", "sources_only"]
    assert all(row["seed"] == 0 for row in data["ablation"])


def test_a_synthetic_next_session_report_shows_the_generators_ceiling(dataset: Dataset) -> None:
    report = evaluate_pipeline(dataset, "next-session", [0], replace(FAST, total=30), "tandem eval test")
    data = report.as_json()
    assert data["rows"]["ceiling"]["kind"] == "ceiling"
    best = max((n for n, r in data["rows"].items() if r["kind"] == "source"), key=lambda n: _ndcg(data, n))
    assert _ndcg(data, "ceiling") > _ndcg(data, best)
    assert any(note.startswith("Ceiling (") for note in data["notes"])
    reach = data["test_target_reach"]
    shares = [reach[kind] for kind in ("in_history", "new_linked", "new_known", "unknown")]
    assert sum(shares) == pytest.approx(1.0) and reach["targets"] >= data["users"]
    assert reach["in_history"] == data["test_targets_in_history"]


def _ndcg(data: dict, row: str) -> float:
    return data["rows"][row]["metrics"]["NDCG@10"]["mean"]


def user_log(tmp_path: Path, sessions: int, valid_share: float = 0.0) -> Dataset:
    path = write_click_log(tmp_path / "clicks.csv", sessions=sessions, valid_share=valid_share)
    return load_event_file(path, parse_mapping(CLICK_LOG_MAP), BadRows(), name="shop")


def test_periods_of_a_supplied_split(tmp_path: Path) -> None:
    shop = user_log(tmp_path, 200)
    assert shop.event_split is not None
    periods = pipeline_periods(shop, "leave-last-out", exclude_seen=False)
    test_rows = [
        int(np.flatnonzero((shop.events.user == user) & (shop.events.timestamp == context.timestamp))[-1])
        for user, context in zip(periods.test.users.tolist(), periods.test.contexts, strict=True)
    ]
    assert np.all(shop.event_split[test_rows] == TEST) and len(test_rows) > 20
    assert not periods.fit[shop.event_split == TEST].any()  # nothing labelled test is fitted on
    assert periods.test.exclude.lengths.sum() == 0  # re-visits stay recommendable
    # anonymous sessions: ranker requests come from a fifth of the sessions, the others are fitted whole
    ranker_users = np.unique(periods.ranker.users)
    assert 0 < len(ranker_users) <= 0.2 * len(np.unique(shop.events.user)) + 1
    labelled = user_log(tmp_path, 200, valid_share=0.1)
    valid_periods = pipeline_periods(labelled, "leave-last-out")
    assert labelled.event_split is not None
    assert np.all(labelled.event_split[valid_periods.ranker_target_rows] == VALID)


def test_a_tiny_validation_period_is_skipped_with_a_note_not_a_crash(tmp_path: Path) -> None:
    shop = user_log(tmp_path, 120, valid_share=0.01)  # one or two validation sessions
    periods = pipeline_periods(shop, "leave-last-out")
    assert len(np.unique(periods.ranker.users)) < 2
    outcome = run_seed(shop, periods, 0, FAST)
    assert outcome.trained.ranker is None and not outcome.ranker_served
    assert (
        outcome.metrics["pipeline"] == outcome.metrics["merged"]
        and "ranker_over_merged" not in outcome.metrics
    )
    assert any("ranker not trained" in note for note in outcome.notes)
    report = evaluate_pipeline(
        shop, "leave-last-out", [0], FAST, "test", notes=lambda test, valid: [f"{test}/{valid}"]
    )
    assert report.notes[0] == f"{len(periods.test)}/{len(periods.ranker)}"  # the caller's notes come first
    assert any(note.startswith("Skipped: ranker not trained") for note in report.notes)


class _TargetRanker:
    """Scores an item by whether it is some request's target (sign +1: the oracle, -1: the anti-oracle)."""

    candidate_sources: tuple[str, ...] = ()

    def __init__(self, targets: set[int], sign: float) -> None:
        self.targets, self.sign = targets, sign

    def score_batch(self, histories, contexts, candidates, source_ranks=None):  # type: ignore[no-untyped-def]
        return [self.sign * np.isin(items, list(self.targets)).astype(np.float32) for items in candidates]


@pytest.mark.parametrize("sign", [1.0, -1.0, 0.0])
def test_a_ranker_reorders_the_merged_list_it_is_served_on(dataset: Dataset, sign: float) -> None:
    from models.candidates.generator import CandidateGenerator
    from models.candidates.merge import MergedCandidates
    from models.candidates.served import ServedPipeline
    from models.recipe.lists import candidate_requests, list_values, served_on_rows

    task = pipeline_periods(dataset, "leave-last-out", ranker_events=10).ranker  # leaves items untargeted
    targets = {int(t) for t in task.targets[task.target_mask].tolist()}
    fillers = np.asarray([i for i in range(2, dataset.num_items) if i not in targets][:9], dtype=np.int64)
    merged = []
    for row in range(len(task)):  # the target sixth in every merged list
        items = np.insert(fillers, 5, task.targets[row, 0])
        merged.append(
            MergedCandidates(
                items,
                -np.arange(10, dtype=np.float32),
                np.zeros((10, 0), np.int64),
                np.zeros((10, 0), np.float32),
                (),
            )
        )
    generator = CandidateGenerator([], MergeConfig((), (), ()))
    pipeline = ServedPipeline(generator, _TargetRanker(targets, sign))  # type: ignore[arg-type]
    rows = np.arange(0, len(task), 2)
    lists = served_on_rows(pipeline, candidate_requests(task, None), merged, len(task), rows)
    assert all(len(lists[r]) == 0 for r in range(1, len(task), 2))  # only the chosen rows are served
    ndcg = list_values(lists, task, rows)["NDCG@10"]
    # NDCG@10 of a target at position p is 1 / log2(p + 1): merged p = 6, oracle 1, anti-oracle 10
    expected = {1.0: 1.0, -1.0: 1 / np.log2(11), 0.0: 1 / np.log2(7)}[sign]
    assert np.allclose(ndcg, expected)
