from dataclasses import replace

import numpy as np

from models.candidates.feature_state import StaticInfo
from models.candidates.features import feature_groups
from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
from models.candidates.served import ServedPipeline
from models.candidates.training_requests import sources_feature_state
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.ranker.gbdt_serving import request_features
from models.recipe.gbdt_stage import query_rows, train_gbdt_stage
from models.recipe.lists import candidate_requests, list_values, served_on_rows
from models.recipe.periods import pipeline_periods
from models.recipe.ranker_stage import ranker_period_rows
from models.recipe.settings import RecipeSettings
from models.recipe.train import fit_all_sources

SETTINGS = replace(
    RecipeSettings.quick(progress=False),
    gbdt_depth=15,
    gbdt_max_rounds=40,
    gbdt_patience=40,
    gbdt_checkpoint_rounds=10,
    gbdt_feature_sets=("all", "no_side"),
    gbdt_ablations=("no_side", "sources_only"),
)


def test_the_gbdt_stage_validates_on_the_served_lists_and_keeps_the_best_cut() -> None:
    dataset = generate_synthetic(
        SyntheticConfig(num_users=80, num_items=120, num_events=5_000, num_clusters=5, seed=7)
    )
    periods = pipeline_periods(dataset, "leave-last-out", ranker_events=4)
    events = periods.fit_events(dataset)
    sources = fit_all_sources(dataset, events)
    state = sources_feature_state(events, StaticInfo.from_dataset(dataset), sources)
    task = periods.ranker
    requests = candidate_requests(task, None)
    config = MergeConfig(("cooccurrence", "transitions", "popular"), (30, 30, 30), (1.0, 1.0, 0.5), total=30)
    generator = CandidateGenerator(list(sources.values()), config)
    merged = [generator.generate(r) for r in requests]
    valid_rows, train_rows = ranker_period_rows(task.users, 0.3, np.random.default_rng(0))
    states = [state] * len(task)
    stage = train_gbdt_stage(task, requests, merged, states, train_rows, valid_rows, SETTINGS, 0, state)

    # the training rows are the served features of each request's merged head (no sampling)
    rows = query_rows(task, requests, merged, states, train_rows[:3], SETTINGS.gbdt_depth)
    for q, row in enumerate(train_rows[:3].tolist()):
        head = merged[row].take(np.arange(min(len(merged[row]), SETTINGS.gbdt_depth)))
        block = rows.features[rows.group[q] : rows.group[q + 1]]
        np.testing.assert_array_equal(block, request_features(requests[row], head, state))
    # one model per feature set, under the gate's names; the one without side information reads none
    assert list(stage.models) == ["gbdt", "gbdt_no_side"]
    groups = feature_groups(merged[0].sources)
    no_side = stage.models["gbdt_no_side"].reranker.ranker.feature_names
    assert no_side and all(groups[name] != "side" for name in no_side)
    assert any(g == "side" for g in groups.values())
    for model in stage.models.values():
        # every checkpoint is judged on every validation request, the kept cut is the best mean ...
        assert model.epoch_values.shape == (len(model.checkpoints), len(valid_rows))
        kept = model.checkpoints.index(model.info["rounds_kept"])
        means = np.nanmean(model.epoch_values, axis=1)
        assert means[kept] == means.max()
        assert model.reranker.ranker.num_trees == model.info["rounds_kept"]
        # ... and its values are the NDCG@10 of what the served pipeline answers, computed as the test is
        served = served_on_rows(
            ServedPipeline(generator, model.reranker), requests, merged, len(task), valid_rows
        )
        np.testing.assert_array_equal(
            model.epoch_values[kept], list_values(served, task, valid_rows)["NDCG@10"]
        )
    # an ablation the gate is offered is that model, not a second training
    assert stage.ablations["no_side"] is stage.models["gbdt_no_side"].reranker
    assert stage.ablations["sources_only"].columns is not None
