"""The recipe: from a dataset cut into periods to the ``TrainedPipeline`` a bundle stores.

1. fit every candidate source for each group of ranker-period requests, on the events before them
   (``models.recipe.period_fits``: per position on leave-last-out, the oldest being the fit period); train
   the session encoder on the fit period (the preset and its variants, each with the same epoch budget;
   the one with the best NDCG@10 on the ranker period's targets is kept);
2. choose the recent-items scoring and tune the merge weights on the ranker period's requests, each with
   the lists of its own fit (every source alone is a candidate merge too);
3. train the rankers (``settings.rankers``: the GBDT over per-candidate features, the OnePiece
   transformer) on the ranker period's training users; the gate (``choose_ranker``) decides on its
   validation users which, if any, beats the merged order;
4. everything chosen stays; what is fitted sees the ranker period too: the sources and the rankers' state
   are refitted on fit + ranker periods and the encoder continues ``continue_epochs`` epochs on them; its
   index is built.

The test period is never read here: ``models.evaluate.replay`` scores the result on it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.candidates.feature_state import StaticInfo
from models.candidates.generator import CandidateGenerator, fit_sources
from models.candidates.merge import MergeConfig
from models.candidates.sources import CandidateSource, RecentItemsSource, SourceList
from models.candidates.training_requests import sources_feature_state as feature_state
from models.data.schema import Dataset, EventTable
from models.recipe.encoder_stage import (
    ann_source,
    encoder_configs,
    item_vectors,
    train_encoder_variants,
    user_vectors,
)
from models.recipe.gbdt_stage import train_gbdt_stage
from models.recipe.lists import candidate_requests, found_any, list_metrics, list_values
from models.recipe.merge_stage import (
    candidate_union,
    choose_merge,
    choose_recent,
    merge_sources,
    merge_tuning_rows,
    merged_lists,
)
from models.recipe.period_fits import PeriodFit, fit_masks
from models.recipe.periods import PipelinePeriods
from models.recipe.ranker_stage import (
    RankerCandidate,
    choose_ranker,
    ranker_period_rows,
    train_ranker,
    user_folds,
)
from models.recipe.settings import RecipeSettings
from models.recipe.trained import PeriodsSpec, TrainedPipeline


def fit_all_sources(dataset: Dataset, events: EventTable) -> dict[str, CandidateSource]:
    """The one fit path from events to the encoder-free sources, for the recipe and a baseline bundle."""
    return dict(
        fit_sources(events, dataset.num_items, dataset.num_scenes, item_category=dataset.catalogue.category)
    )


def train_pipeline(
    dataset: Dataset, periods: PipelinePeriods, seed: int, settings: RecipeSettings
) -> TrainedPipeline:
    """Runs the recipe on ``periods`` (cut by ``models.recipe.periods.pipeline_periods`` with
    ``settings.ranker_events``)."""
    torch.set_num_threads(settings.threads)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    static = StaticInfo.from_dataset(dataset)
    fits = [
        PeriodFit(rows, mask, fit_all_sources(dataset, dataset.events.take(mask)))
        for rows, mask in fit_masks(dataset, periods)
    ]
    seconds["fit_sources"] = time.perf_counter() - started
    ranker_vectors = None
    vectors = None
    training: dict[str, Any] = {"ranker_period_fits": [int(f.mask.sum()) for f in fits]}
    result: Any = None
    if settings.encoder_epochs > 0:
        started = time.perf_counter()
        choice = train_encoder_variants(dataset, periods, settings, seed)
        seconds["encoder"] = time.perf_counter() - started
        result = choice.result
        settings = replace(settings, encoder_overrides=choice.overrides)  # the refit continues the kept one
        state = result.state
        training["encoder"] = {
            "seed": seed,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "stopped_by": state.stopped_by,
            "history": state.history,
            "variants": choice.tried,
            "overrides": choice.overrides,
        }
        ann = ann_source(result)
        for fit in fits:
            fit.sources["ann"] = ann
        ranker_vectors = user_vectors(result, periods.ranker)
        vectors = item_vectors(result)
    allow_seen = not periods.exclude_seen
    names = merge_sources(tuple(fits[0].sources), allow_seen, settings.sources)
    task = periods.ranker
    requests = candidate_requests(task, ranker_vectors)
    recent: RecentItemsSource | None = None
    if "recent" in names and len(task):
        recent, training["recent_tried"] = choose_recent(task, requests=requests)
        for fit in fits:
            fit.sources["recent"] = recent
    base = MergeConfig(
        sources=names,
        quotas=tuple(settings.quotas.get(n, settings.total) for n in names),
        weights=tuple(1.0 for _ in names),
        total=settings.total,
        allow_seen=allow_seen,
    )
    row_fit = _row_fits(fits, len(task))
    generators = [CandidateGenerator(list(fit.sources.values()), base) for fit in fits]
    lists: list[list[SourceList]] = [
        generators[row_fit[i]].source_lists(r)
        for i, r in enumerate(
            tqdm(requests, desc="candidates (ranker period)", disable=not settings.progress, leave=False)
        )
    ]
    rng = np.random.default_rng(seed)
    valid_rows, train_rows = ranker_period_rows(task.users, settings.valid_share, rng)
    notes: list[str] = []

    started = time.perf_counter()
    merge = base
    valid: dict[str, float] = {}
    if len(valid_rows):
        tuning_rows = merge_tuning_rows(train_rows, valid_rows, settings, rng)
        merge, valid = choose_merge(
            [generators[g] for g in row_fit], requests, lists, task, tuning_rows, base, settings.merge_fusion
        )
    else:
        notes.append("no validation requests: the merge keeps equal weights")
    seconds["tune_merge"] = time.perf_counter() - started
    generators = [CandidateGenerator(list(fit.sources.values()), merge) for fit in fits]
    row_generators = [generators[g] for g in row_fit]
    valid_unions = {  # with keep_candidates (the fusion bound), computed once for the merge and the report
        i: candidate_union(row_generators[i], requests[i], lists[i])
        for i in (valid_rows.tolist() if settings.keep_candidates else [])
    }
    merged = merged_lists(row_generators, requests, lists, merge, valid_unions)
    merged_values = np.zeros(0)
    if len(valid_rows):
        merged_values = list_values([m.items for m in merged], task, valid_rows)["NDCG@10"]
        valid["merged_NDCG@10"] = float(np.nanmean(merged_values))
        for column, name in enumerate(names):  # each source alone on the same users: what the tuning saw
            source_items = [request_lists[column].items for request_lists in lists]
            valid[f"{name}_NDCG@10"] = list_metrics(source_items, task, valid_rows)["NDCG@10"]

    trainable = np.asarray([r for r in train_rows.tolist() if found_any(task, merged, r)], dtype=np.int64)
    candidates: dict[str, RankerCandidate] = {}
    ablations: dict[str, Any] = {}
    trains = bool(len(valid_rows) and len(trainable))
    if not trains:
        notes.append(
            f"ranker not trained: {len(trainable)} ranker-period requests with a target among the candidates "
            f"and {len(valid_rows)} validation requests; the merged order is served"
        )
    states: list[Any] = []
    fitted: list[Any] = []
    if trains and ("gbdt" in settings.rankers or settings.ranker_candidate_features):
        fitted = [feature_state(dataset.events.take(f.mask), static, f.sources, vectors) for f in fits]
        states = [fitted[g] for g in row_fit]
    if trains and "gbdt" in settings.rankers:
        started = time.perf_counter()
        stage = train_gbdt_stage(
            task, requests, merged, states, trainable, valid_rows, settings, seed, fitted[0]
        )
        for name, model in stage.models.items():
            training[name] = model.info
            candidates[name] = RankerCandidate(model.reranker, model.epoch_values, None)
        ablations = {f"gbdt_{name}": ranker for name, ranker in stage.ablations.items()}
        seconds["ranker_gbdt"] = time.perf_counter() - started
    if trains and "onepiece" in settings.rankers:
        started = time.perf_counter()
        onepiece, ranker_log, epoch_values = train_ranker(
            dataset,
            periods,
            requests,
            merged,
            trainable,
            names,
            settings,
            seed,
            valid_rows,
            generators[0],
            states or None,
            fitted[0] if fitted else None,
        )
        training["ranker_epochs"] = ranker_log
        losses = np.asarray([row["train_loss"] for row in ranker_log])
        candidates["onepiece"] = RankerCandidate(onepiece, epoch_values, losses)
        # the best of many noisy epochs, scored during training on all validation rows: the gate judges
        # the cross-fitted epochs rather than this score
        valid["ranker_NDCG@10"] = max(row["val_NDCG@10"] for row in ranker_log)
        seconds["ranker"] = time.perf_counter() - started
    kind = None
    use_ranker = False
    if candidates:
        valid_users = task.users[valid_rows]
        folds = user_folds(valid_users, settings.ranker_gate_folds, rng)
        kind, use_ranker, gate = choose_ranker(candidates, merged_values, folds, valid_users, settings)
        valid.update(gate)
    ranker = candidates[kind].ranker if kind is not None else None

    index = None
    sources = fits[0].sources  # the fit period's, unless refitted
    if settings.refit_before_test:
        started = time.perf_counter()
        sources, continued = refit_sources(dataset, periods, settings, seed, result, recent)
        seconds["refit"] = time.perf_counter() - started
        if result is not None:
            seconds["encoder"] += continued
            training["encoder"]["continued"] = result.continued
        rankers = [c.ranker for c in candidates.values()] + list(ablations.values())
        refit_rankers(dataset, periods, static, sources, result, rankers)
    encoder = None
    if result is not None:
        encoder, index = served_encoder(result, sources)
    if settings.keep_candidates:
        training["valid_unions"] = (valid_rows, [valid_unions[i] for i in valid_rows.tolist()])
    training["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return TrainedPipeline(
        dataset=dataset.name,
        seed=seed,
        periods=PeriodsSpec(
            periods.protocol, settings.ranker_events, periods.exclude_seen, settings.ranker_windows
        ),
        sources=sources,
        merge=merge,
        encoder=encoder,
        index=index,
        ranker=ranker,
        ranker_served=use_ranker,
        ranker_kind=kind,
        other_rankers={k: c.ranker for k, c in candidates.items() if k != kind},
        ablations=ablations,
        recent=None if recent is None else recent.to_dict(),
        valid=valid,
        training=training,
        notes=notes,
    )


def _row_fits(fits: list[PeriodFit], count: int) -> list[int]:
    """Each ranker-period request's fit (index into ``fits``)."""
    out = [-1] * count
    for index, fit in enumerate(fits):
        for row in fit.rows.tolist():
            out[row] = index
    return out


def served_encoder(result: Any, sources: dict[str, CandidateSource]) -> tuple[Any, Any]:
    """The kept encoder as serving holds it, and its index (``sources["ann"]`` searches it)."""
    from models.encoder.serving import TorchUserEncoder, weights_version

    encoder = TorchUserEncoder(result.model, result.item_category, weights_version(result.model))
    index = sources["ann"].index  # type: ignore[attr-defined]
    return encoder, index


def refit_sources(
    dataset: Dataset,
    periods: PipelinePeriods,
    settings: RecipeSettings,
    seed: int,
    result: Any,
    recent: CandidateSource | None = None,
) -> tuple[dict[str, CandidateSource], float]:
    """Everything chosen on the ranker period stays (epochs, merge weights, rankers and gate); what is
    fitted sees the ranker period too, as a bundle built today would: the sources are refitted on fit +
    ranker periods, and the encoder continues ``settings.continue_epochs`` epochs on them (the rankers'
    state follows in ``refit_rankers``). Returns the sources and the encoder's extra seconds."""
    from models.train.fit import continue_fit

    events = periods.refit_events(dataset)
    sources = fit_all_sources(dataset, events)
    if recent is not None:  # its scoring was chosen on the ranker period; it fits nothing
        sources["recent"] = recent
    seconds = 0.0
    if result is not None:
        started = time.perf_counter()
        _, train = encoder_configs(settings, seed)
        continue_fit(result, dataset, events, train, settings.continue_epochs)
        seconds = time.perf_counter() - started
        sources["ann"] = ann_source(result)
    return sources, seconds


def refit_rankers(
    dataset: Dataset,
    periods: PipelinePeriods,
    static: StaticInfo,
    sources: dict[str, CandidateSource],
    result: Any,
    rankers: list[Any],
) -> None:
    """What each ranker reads besides its weights, refitted on the refit events: the GBDT's feature state
    (with the continued encoder's item vectors), the transformer's anchors."""
    from models.ranker.anchors import AnchorSources
    from models.ranker.featured import FeaturedOnePiece
    from models.ranker.gbdt_serving import MergedReranker
    from models.ranker.train import fit_anchor_sources

    events = periods.refit_events(dataset)
    state = None
    for ranker in rankers:
        if isinstance(ranker, (MergedReranker, FeaturedOnePiece)):
            if state is None:  # one state, shared by every ranker that reads features
                vectors = None if result is None else item_vectors(result)
                state = feature_state(events, static, sources, vectors)
            ranker.state = state
        if not isinstance(ranker, MergedReranker):  # the transformer's anchors
            anchors = fit_anchor_sources(events, events, dataset.num_items, ranker.model.config)
            ranker.sources = AnchorSources(anchors.cooccurrence, anchors.popular_latest, None)
