"""Offline replay of the served pipeline (``tandem eval --stage pipeline``).

Per seed: fit every candidate source (and train the session encoder) on the fit period, tune the merge
weights and train the ranker on the ranker period (80% of its users train, 20% validate), decide on the
validation users whether the ranker beats the merged order, then answer every test request with the very
objects serving uses (``models.candidates``). A target no source found is a miss. Rows: each source alone,
the merged order, and the served pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.candidates.generator import CandidateGenerator, fit_sources
from models.candidates.merge import MergeConfig, MergedCandidates, UnionScores, merge_lists
from models.candidates.served import ServedPipeline
from models.candidates.sources import (
    AnnSource,
    CandidateRequest,
    CandidateSource,
    RecentItemsSource,
    SourceList,
)
from models.data.schema import Dataset
from models.evaluate.bootstrap import paired_ratio_interval
from models.evaluate.metrics import ranking_metrics
from models.evaluate.pipeline_data import PipelinePeriods
from models.evaluate.protocols import EvalTask
from models.train.loop import TIE, TrainState, improved

PIPELINE_METRICS = ("NDCG@10", "HR@10", "Recall@50", "MRR")
MISS_RANK = 1 << 40  # rank given to a target that is not in the served list: no credit at any cutoff
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
SCORE_WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)  # weights of standardised scores (score fusion)
# the merge's and the ranker's order of the candidate sources
SOURCE_ORDER = ("ann", "cooccurrence", "transitions", "category", "recent", "popular")


@dataclass(frozen=True)
class PipelineSettings:
    """What one replay trains and how long: encoder/ranker presets and budgets, list sizes."""

    encoder_preset: str = "quick"
    encoder_minutes: float = 3.0  # wall-clock cap per seed; 0 = no encoder (no ANN source)
    encoder_overrides: dict[str, Any] = field(default_factory=dict)
    # settings tried besides the preset (each over ``encoder_overrides``, each with the full budget): the
    # one whose best epoch scores highest on the ranker-period targets is kept. τ 0.1 won ML-1M's test by
    # 9% at this budget and lost on the other three datasets (docs/pipeline.md): let validation decide
    encoder_variants: tuple[dict[str, Any], ...] = ({"temperature": 0.1},)
    # the encoder's epoch is picked on this many ranker-period targets, with this patience: at 1,000 and the
    # preset's 4 the score moved by about +-0.01 between epochs and stopped ML-1M's encoder on noise after
    # ~100 s of its 180 (seed 0: ANN 0.1385 -> 0.1415, served 0.1469 -> 0.1590 with 5,000 and 8)
    encoder_valid_users: int = 5000
    encoder_patience: int = 8
    ranker_preset: str = "quick"
    ranker_epochs: int = 4
    ranker_min_steps: int = 300  # small ranker periods (Taobao) get more epochs: at least this many updates
    ranker_max_requests: int = (
        0  # 0 = every ranker-period request with a found positive; else a random subset
    )
    ranker_train_candidates: int = 32
    ranker_negative_depth: int = 200  # training negatives come from the merged list's top-N
    ranker_lr: float = 3e-4  # 1e-3 peaked after 1-2 epochs and fell (ML-100K, Taobao, synthetic)
    ranker_weight_decay: float = 0.0  # AdamW's decoupled weight decay on the ranker
    # the residual ranker starts as the merged order and its first epochs often leave the validation
    # score flat: early stopping waits longer than the encoder's before it may fire
    ranker_patience: int = 5
    ranker_min_epochs: int = 6
    # the gate (``ranker_gate``): the validation users fall into this many folds (by user); each fold
    # judges, against the merged order, the epoch that the other folds would have picked, so every
    # validation request judges and none judges an epoch it picked (1 = the same users pick and judge).
    # Served when the cross-fitted mean NDCG@10 is higher by the margin below and, with a level > 0, the
    # paired bootstrap interval of ranker / merged at that two-sided level lies above 1 as well. Level 0.9:
    # Taobao's ranker passed a point-only gate at +0.8% on 339 validation requests and lost 1.2% on the
    # test (the served pipeline 0.4% under its merged order); on a few hundred requests such a gain is
    # noise, and the cheaper merged order is served (docs/pipeline.md, "The gate asks for a sure gain")
    ranker_gate_folds: int = 5
    ranker_gate_level: float = 0.9
    # ... and by at least this share: the ranker costs a forward pass per request, and every ranker the
    # replays served on a cross-fitted gain under 0.5% (ML-1M 1.003, 1.004, 1.003, 1.0025; ML-100K
    # 1.003, 1.0006) was at or below the merged order on the test (docs/pipeline.md)
    ranker_gate_margin: float = 0.005
    ranker_rank_prior: float = 1.0  # RankerConfig.rank_prior: residual on the merged order (0 = off)
    ranker_match_features: bool = True  # RankerConfig.match_features: candidate-vs-history match features
    ranker_item_id_dropout: float = 0.0  # RankerConfig.item_id_dropout
    # "auto": tune rank and score fusion on validation, keep the better; "rrf" / "score": only that one
    merge_fusion: str = "auto"
    # the requests the merge weights are tuned on: "all" ranker-period requests (the ranker's training
    # users and its validation users) or only the "valid" ones; at most ``merge_tuning_requests`` of them,
    # drawn at random. Six weights tuned on <= 1,500 validation requests took different values per seed
    # and lost on ML-100K's test what they gained on validation (docs/pipeline.md)
    merge_tuning: str = "all"
    merge_tuning_requests: int = 4000
    # the candidate sources the merge may use (names of SOURCE_ORDER); empty = every one the data feeds
    sources: tuple[str, ...] = ()
    total: int = 200
    quotas: dict[str, int] = field(
        default_factory=lambda: {
            "ann": 200,
            "cooccurrence": 200,
            "transitions": 200,
            "category": 200,
            "recent": 50,
            "popular": 100,
        }
    )
    valid_share: float = 0.2
    # before the test, refit the sources on fit + ranker periods and continue the encoder this many
    # epochs on them (what was chosen on the ranker period stays); False: test on the fit period's fit
    refit_before_test: bool = True
    continue_epochs: int = 1
    threads: int = 1
    progress: bool = True
    # keep every source's score of every candidate (validation and test requests) in the outcome, for
    # the fusion bound (models.evaluate.fusion_bound); off: it holds [candidates, sources] per request
    keep_candidates: bool = False


@dataclass
class SeedOutcome:
    """Per-row metrics (name -> metric -> mean over test requests), row kinds, and what was decided."""

    metrics: dict[str, dict[str, float]]
    kinds: dict[str, str]
    merge: MergeConfig
    ranker_served: bool
    valid: dict[str, float]
    seconds: dict[str, float]
    encoder_training: dict[str, Any] | None
    encoder: Any | None = None  # models.train.fit.FitResult of the session encoder (None without one)
    ranker: Any | None = None  # models.ranker.serving.TorchCandidateRanker trained on the merged lists
    # per epoch: train_loss, epoch_seconds, val_<metric> on the gate's validation users (models.train.loop)
    ranker_log: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why (tiny periods)
    # row name -> NDCG@10 of every test request [U] (NaN without a target): paired intervals across rows
    per_request: dict[str, np.ndarray] = field(default_factory=dict)
    candidates: CandidateUnions | None = None  # with PipelineSettings.keep_candidates
    # the recent-items scoring kept on the ranker period (RecentItemsSource.to_dict) and every choice's
    # NDCG@10 there; None where seen items are excluded (no recent source)
    recent: dict[str, Any] | None = None
    recent_tried: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CandidateUnions:
    """What a fusion of the sources can reorder: per request, the union of the source lists (items [C])
    and every source's score of each (scores [C, S], columns in ``sources`` order). ``valid``: the ranker
    period's validation requests, rows ``valid_rows`` of its task, scored by the sources fitted before the
    test; ``test``: every test request, scored by the sources the test used. ``merge``: the tuned merge."""

    sources: tuple[str, ...]
    merge: MergeConfig
    valid_rows: np.ndarray
    valid: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]


def list_ranks(lists: Sequence[np.ndarray], targets: np.ndarray, target_mask: np.ndarray) -> np.ndarray:
    """1-based rank of every target in its request's served list (``MISS_RANK`` when absent).
    lists: U served lists; targets, target_mask: [U, T] -> [U, T] int64 (0 where masked out)."""
    ranks = np.zeros(targets.shape, dtype=np.int64)
    for row, items in enumerate(lists):
        position = {int(item): rank for rank, item in enumerate(items.tolist(), start=1)}
        for slot in np.flatnonzero(target_mask[row]).tolist():
            ranks[row, slot] = position.get(int(targets[row, slot]), MISS_RANK)
    return ranks


def list_values(
    lists: Sequence[np.ndarray], task: EvalTask, rows: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per request of ``rows`` (default all): metric name -> [R] float64 (NaN for a request without
    targets), every metric of ``models.evaluate.metrics.ranking_metrics`` at cut-offs 10 and 50."""
    rows = np.arange(len(task)) if rows is None else rows
    mask = task.target_mask[rows]
    ranks = list_ranks([lists[i] for i in rows.tolist()], task.targets[rows], mask)
    return ranking_metrics(ranks, mask, (10, 50))


def list_metrics(
    lists: Sequence[np.ndarray], task: EvalTask, rows: np.ndarray | None = None
) -> dict[str, float]:
    """Mean NDCG@10, HR@10, Recall@50, MRR of served lists over the requests ``rows`` (default all)."""
    return metric_means(list_values(lists, task, rows))


def metric_means(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Per-request values (``list_values``) -> the mean of each of PIPELINE_METRICS over the requests."""
    return {name: float(np.nanmean(values[name])) for name in PIPELINE_METRICS}


def candidate_requests(task: EvalTask, vectors: np.ndarray | None) -> list[CandidateRequest]:
    """The task's requests as the candidate sources see them (exclusions from the protocol)."""
    out = []
    for row in range(len(task)):
        start, stop = task.exclude.offsets[row], task.exclude.offsets[row + 1]
        out.append(
            CandidateRequest(
                history=task.histories[row],
                context=task.contexts[row],
                user_vector=None if vectors is None else vectors[row],
                exclude=task.exclude.columns["item"][start:stop].astype(np.int64),
            )
        )
    return out


def _encoder_configs(settings: PipelineSettings, seed: int) -> tuple[Any, Any]:
    """(EncoderConfig, TrainConfig) of the replay's session encoder: the preset, the budget, the overrides."""
    from models.encoder.config import EncoderConfig
    from models.train.presets import preset

    model_config, train = preset(settings.encoder_preset, "session_encoder")
    train = replace(
        train,
        seed=seed,
        progress=settings.progress,
        max_minutes=settings.encoder_minutes,
        threads=settings.threads,
        patience=settings.encoder_patience,
    )
    train_fields = set(vars(train))
    values = settings.encoder_overrides
    train = replace(train, **{k: v for k, v in values.items() if k in train_fields})
    model_config = EncoderConfig.from_dict(
        {**model_config.to_dict(), **{k: v for k, v in values.items() if k not in train_fields}}
    )
    return model_config, train


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder kept among the variants (``PipelineSettings.encoder_variants``) and what each scored:
    ``tried`` holds per variant its overrides, best validation NDCG@10, best epoch, seconds and whether it
    was kept."""

    result: Any  # models.train.fit.FitResult of the kept variant
    overrides: dict[str, Any]  # encoder_overrides with the kept variant applied
    tried: list[dict[str, Any]]


def best_variant(scores: Sequence[float]) -> int:
    """Index of the highest validation score; a tie keeps the earlier variant (the preset comes first)."""
    best = 0
    for index, score in enumerate(scores):
        if score > scores[best] + TIE:
            best = index
    return best


def train_encoder_variants(
    dataset: Dataset, periods: PipelinePeriods, settings: PipelineSettings, seed: int
) -> EncoderChoice:
    """Trains the preset and every variant with the same budget and validation targets and keeps the one
    with the best validation NDCG@10 (the score its own early stopping kept)."""
    variants = [dict(settings.encoder_overrides)]
    variants += [{**settings.encoder_overrides, **variant} for variant in settings.encoder_variants]
    kept: Any = None
    index = 0  # of the kept variant
    tried: list[dict[str, Any]] = []
    for position, overrides in enumerate(variants):
        started = time.perf_counter()
        result = _train_encoder(dataset, periods, replace(settings, encoder_overrides=overrides), seed)
        state = result.state
        tried.append(
            {
                "overrides": overrides,
                "valid_NDCG@10": float(state.best_score),
                "best_epoch": state.best_epoch,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        if best_variant([row["valid_NDCG@10"] for row in tried]) == position:
            kept, index = result, position  # the earlier best is dropped: at most two models at a time
    for position, row in enumerate(tried):
        row["kept"] = position == index
    return EncoderChoice(kept, variants[index], tried)


def _train_encoder(dataset: Dataset, periods: PipelinePeriods, settings: PipelineSettings, seed: int) -> Any:
    from models.train.fit import fit_encoder, next_item_cases, subsample

    model_config, train = _encoder_configs(settings, seed)
    fit_events = periods.fit_events(dataset)
    valid = next_item_cases(dataset, fit_events, dataset.events.take(np.sort(periods.ranker_target_rows)))
    cases = subsample(valid, settings.encoder_valid_users, seed)
    return fit_encoder(
        dataset, fit_events, model_config, train, cases, valid_exclude_history=periods.exclude_seen
    )


# the recent-items scorings the ranker period chooses from (RecentItemsSource arguments): action weights
# (a cart or favourite counts more) helped Taobao and hurt synthetic; decay 0.98 per event is a slow
# fade, 0.9 nearly newest-first (docs/pipeline.md, "Re-visits by decayed frequency")
RECENT_CHOICES: tuple[dict[str, Any], ...] = (
    {"decay": 0.98},
    {"decay": 0.98, "action_weights": {}},
    {"decay": 0.9, "action_weights": {}},
)


def choose_recent(
    task: EvalTask,
    choices: Sequence[dict[str, Any]] = RECENT_CHOICES,
    requests: list[CandidateRequest] | None = None,
) -> tuple[RecentItemsSource, list[dict[str, Any]]]:
    """The recent-items scoring with the best NDCG@10 of its own list on ``task``'s requests (the ranker
    period; ties keep the earlier choice, as ``best_variant``); ``requests``: the task's requests when the
    caller has built them (``candidate_requests``). -> (the source, every choice with its ``NDCG@10`` and
    whether it was ``kept``)."""
    requests = candidate_requests(task, None) if requests is None else requests
    sources = [RecentItemsSource(**choice) for choice in choices]
    scores = [
        list_metrics([source.candidates(r, source.max_items).items for r in requests], task)["NDCG@10"]
        if requests
        else 0.0
        for source in sources
    ]
    kept = best_variant(scores)
    tried = [
        {**source.to_dict(), "NDCG@10": round(float(score), 4), "kept": i == kept}
        for i, (source, score) in enumerate(zip(sources, scores, strict=True))
    ]
    return sources[kept], tried


def _refit_before_test(
    dataset: Dataset,
    periods: PipelinePeriods,
    settings: PipelineSettings,
    seed: int,
    result: Any,
    ranker: Any,
    recent: CandidateSource | None = None,
) -> tuple[dict[str, CandidateSource], float]:
    """Everything chosen on the ranker period stays (epochs, merge weights, ranker and gate); what is
    fitted sees the ranker period too before the test, as a bundle built today would: the sources and
    the ranker's anchors are refitted on fit + ranker periods, and the encoder continues
    ``settings.continue_epochs`` epochs on them. Returns the test sources and the encoder's extra seconds."""
    from models.ranker.anchors import AnchorSources
    from models.ranker.train import fit_anchor_sources
    from models.train.fit import continue_fit

    events = periods.refit_events(dataset)
    sources: dict[str, CandidateSource] = dict(
        fit_sources(events, dataset.num_items, dataset.num_scenes, item_category=dataset.catalogue.category)
    )
    if recent is not None:  # its scoring was chosen on the ranker period; it fits nothing
        sources["recent"] = recent
    seconds = 0.0
    if result is not None:
        started = time.perf_counter()
        _, train = _encoder_configs(settings, seed)
        continue_fit(result, dataset, events, train, settings.continue_epochs)
        seconds = time.perf_counter() - started
        sources["ann"] = _ann_source(result)
    if ranker is not None:
        anchors = fit_anchor_sources(events, events, dataset.num_items, ranker.model.config)
        ranker.sources = AnchorSources(anchors.cooccurrence, anchors.popular_latest, None)
    return sources, seconds


def _user_vectors(result: Any, task: EvalTask) -> np.ndarray:
    from models.encoder.serving import encode_histories

    if len(task) == 0:  # an empty ranker period
        return np.zeros((0, result.model.config.dim), dtype=np.float32)
    return encode_histories(result.model, result.item_category, task.histories, task.contexts)


def _ann_source(result: Any) -> AnnSource:
    from models.index.builder import build_index

    with torch.inference_mode():
        item_vectors = result.model.item_vectors().float().numpy()
    return AnnSource(build_index(item_vectors, "flat"))


def tune_weights(
    lists: list[list[SourceList]],
    task: EvalTask,
    rows: np.ndarray,
    base: MergeConfig,
    union_scores: Sequence[UnionScores | None] | None = None,
) -> tuple[MergeConfig, float]:
    """Coordinate ascent over the weight grid of ``base.fusion`` (``WEIGHT_GRID`` for rank fusion,
    ``SCORE_WEIGHT_GRID`` for score fusion), per source, two passes, on validation NDCG@10 of the merged
    order; the best first, ties keep the earlier (smaller-change) setting. ``union_scores``: per request
    of ``lists`` (score fusion). -> (tuned config, its validation NDCG@10)."""
    weights = list(base.weights)
    grid = SCORE_WEIGHT_GRID if base.fusion == "score" else WEIGHT_GRID

    def score(candidate: list[float]) -> float:
        config = replace(base, weights=tuple(candidate))
        merged = {
            i: merge_lists(lists[i], config, None if union_scores is None else union_scores[i]).items
            for i in rows.tolist()
        }
        return list_metrics([merged.get(i, np.zeros(0, np.int64)) for i in range(len(task))], task, rows)[
            "NDCG@10"
        ]

    best = score(weights)
    for _ in range(2):
        for column in range(len(weights)):
            for value in grid:
                trial = [*weights[:column], value, *weights[column + 1 :]]
                if trial == weights or not any(trial):
                    continue
                result = score(trial)
                if result > best + 1e-9:
                    best, weights = result, trial
    return replace(base, weights=tuple(weights)), best


def stored_union_scores(
    generator: CandidateGenerator, request: CandidateRequest, lists: list[SourceList]
) -> UnionScores:
    """Every source's scores of the request's candidate union, computed once and looked up after (the
    merge tuning merges one request many times)."""
    return union_lookup(*candidate_union(generator, request, lists))


def union_lookup(union: np.ndarray, matrix: np.ndarray) -> UnionScores:
    """A ``candidate_union`` result (union [C] sorted, scores [C, S]) as the merge's score lookup."""

    def lookup(items: np.ndarray) -> np.ndarray:
        return matrix[np.searchsorted(union, items)]

    return lookup


def candidate_union(
    generator: CandidateGenerator, request: CandidateRequest, lists: list[SourceList]
) -> tuple[np.ndarray, np.ndarray]:
    """-> (the union of the request's source lists [C] sorted, every source's score of each [C, S])."""
    union = np.unique(np.concatenate([source.items for source in lists] + [np.zeros(0, np.int64)]))
    return union, generator.union_scores(request)(union)


def choose_merge(
    generator: CandidateGenerator,
    requests: list[CandidateRequest],
    lists: list[list[SourceList]],
    task: EvalTask,
    rows: np.ndarray,
    base: MergeConfig,
    fusion: str = "auto",
) -> tuple[MergeConfig, dict[str, float]]:
    """Tunes rank fusion and score fusion on the validation ``rows`` and keeps the better (ties: rank
    fusion); ``fusion`` "rrf" or "score" tunes only that one. -> (merge config, validation NDCG@10 of each
    fusion tuned, keys ``merge_<fusion>_NDCG@10``)."""
    if fusion not in ("auto", "rrf", "score"):
        raise ValueError(f"merge fusion {fusion!r}: expected auto, rrf or score")
    scores: dict[str, float] = {}
    chosen = base
    if fusion in ("auto", "rrf"):
        chosen, scores["merge_rrf_NDCG@10"] = tune_weights(lists, task, rows, base)
    if fusion in ("auto", "score"):
        stored: list[UnionScores | None] = [None] * len(lists)
        for i in rows.tolist():
            stored[i] = stored_union_scores(generator, requests[i], lists[i])
        score_config, score_score = tune_weights(lists, task, rows, replace(base, fusion="score"), stored)
        if score_score > scores.get("merge_rrf_NDCG@10", -np.inf) + 1e-9:
            chosen = score_config
        scores["merge_score_NDCG@10"] = score_score
    return chosen, scores


def merged_lists(
    generator: CandidateGenerator,
    requests: list[CandidateRequest],
    lists: list[list[SourceList]],
    config: MergeConfig,
    unions: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[MergedCandidates]:
    """Every request's merged candidates under ``config`` (the sources' scores fetched for score fusion).
    ``unions``: request index -> its ``candidate_union`` where already computed (the rest: computed here)."""
    if config.fusion != "score":
        return [merge_lists(request_lists, config) for request_lists in lists]
    known = unions or {}
    return [
        merge_lists(
            request_lists,
            config,
            union_lookup(*(known.get(row) or candidate_union(generator, request, request_lists))),
        )
        for row, (request, request_lists) in enumerate(zip(requests, lists, strict=True))
    ]


def _ranker_training(
    dataset: Dataset,
    periods: PipelinePeriods,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    rows: np.ndarray,
    names: tuple[str, ...],
    settings: PipelineSettings,
    seed: int,
    valid_rows: np.ndarray,
    generator: CandidateGenerator,
) -> tuple[Any, list[dict[str, float]], np.ndarray]:
    """Trains the ranker on the merged candidates of ``rows`` (positives only where a source found them);
    the epoch kept is the one with the best validation NDCG@10 over ``valid_rows``. -> (ranker, history,
    per-epoch NDCG@10 of every validation request [E, len(valid_rows)], what the gate cross-fits)."""
    from models.ranker.config import preset
    from models.ranker.model import OnePieceRanker
    from models.ranker.samples import RankingRequest
    from models.ranker.serving import TorchCandidateRanker
    from models.ranker.train import encode_requests, feature_sizes, fit_anchor_sources, train_ranker

    config, train_config = preset(
        settings.ranker_preset,
        candidate_sources=names,
        train_positives_in_retrieved=True,
        train_uniform_negatives=0,
        train_candidates=settings.ranker_train_candidates,
        retrieval_depth=settings.ranker_negative_depth,
        use_retrieval_rank=True,  # the merged position: the ranker starts from the order it must beat
        rank_prior=settings.ranker_rank_prior,  # ... and, as a residual on it, returns it before training
        match_features=settings.ranker_match_features,
        item_id_dropout=settings.ranker_item_id_dropout,
        serving_weights=(1.0, 0.0, 0.0),  # test targets are any interaction: the level-1 head decides
    )
    train_config = replace(
        train_config,
        epochs=settings.ranker_epochs,
        seed=seed,
        threads=settings.threads,
        lr=settings.ranker_lr,
        weight_decay=settings.ranker_weight_decay,
        patience=settings.ranker_patience,
        min_epochs=settings.ranker_min_epochs,
    )
    task = periods.ranker
    chosen, retrieved, source_ranks = [], [], []
    for row in rows.tolist():
        mask = task.target_mask[row]
        found = np.isin(task.targets[row][mask], merged[row].items)
        if not found.any():
            continue  # at serving such a request has nothing right to rank
        chosen.append(
            RankingRequest(
                int(task.users[row]),
                requests[row].history,
                requests[row].context,
                task.targets[row][mask],
                np.maximum(periods.ranker_levels[row][mask], 1),
            )
        )
        retrieved.append(merged[row].items)
        source_ranks.append(merged[row].source_rank)
    if not chosen:
        raise ValueError(f"{dataset.name}: no ranker request has a positive among its candidates")
    if settings.ranker_max_requests and len(chosen) > settings.ranker_max_requests:
        keep = np.sort(
            np.random.default_rng(seed).choice(len(chosen), settings.ranker_max_requests, replace=False)
        )
        chosen = [chosen[i] for i in keep.tolist()]
        retrieved = [retrieved[i] for i in keep.tolist()]
        source_ranks = [source_ranks[i] for i in keep.tolist()]
    steps_per_epoch = -(-len(chosen) // train_config.batch_size)
    epochs = max(train_config.epochs, -(-settings.ranker_min_steps // steps_per_epoch))
    train_config = replace(train_config, epochs=epochs)
    fit_events = periods.fit_events(dataset)
    sizes = feature_sizes(dataset)
    anchors = fit_anchor_sources(fit_events, fit_events, dataset.num_items, config)
    data = encode_requests(config, sizes, dataset.funnel, anchors, chosen, retrieved)
    data.source_ranks = source_ranks
    torch.manual_seed(seed)
    model = OnePieceRanker(config, sizes, torch.from_numpy(dataset.catalogue.category))
    ranker = TorchCandidateRanker(model, anchors, dataset.funnel, f"ranker-{dataset.name}-{seed}")

    epoch_values: list[np.ndarray] = []

    def validate(_: OnePieceRanker) -> dict[str, float]:
        lists = _served_on_rows(ServedPipeline(generator, ranker), requests, merged, len(task), valid_rows)
        values = list_values(lists, task, valid_rows)
        epoch_values.append(values["NDCG@10"])
        return metric_means(values)

    state = train_ranker(model, data, train_config, progress=settings.progress, validate=validate)
    return ranker, state.history, np.stack(epoch_values)


def ranker_gate(
    epoch_values: np.ndarray,
    train_losses: np.ndarray,
    base: np.ndarray,
    folds: np.ndarray,
    level: float,
    margin: float = 0.0,
    users: np.ndarray | None = None,
) -> tuple[bool, dict[str, float]]:
    """Serve the ranker? Cross-fitted against the merged order on every validation request.

    epoch_values [E, V]: NDCG@10 of the ranker's served list per epoch and validation request; train_losses
    [E]: each epoch's training loss (the loop's tie-break); base [V]: the merged order's NDCG@10; folds [V]:
    each request's fold (by user). Each fold is judged at the epoch the other folds pick by the training
    loop's own rule (one fold: the epoch it picks itself). Served when the cross-fitted mean NDCG@10 is above
    the merged order's times 1 + ``margin`` (the gain pays for the ranker's forward pass) and, with ``level``
    > 0, the lower end of the paired bootstrap interval (two-sided ``level``) of ranker / merged NDCG@10 is
    above 1 (the gain is not noise of the validation users). users [V]: each request's user, the unit the
    bootstrap resamples (a user's requests move together); None: each request alone. -> (serve,
    gate_ratio, gate_low, gate_requests)."""
    judged = np.full(base.shape, np.nan)
    for fold in np.unique(folds).tolist():
        judge = folds == fold
        picks = ~judge if (~judge).any() else judge
        scores = np.array([_mean_or_zero(v[picks]) for v in epoch_values])
        judged[judge] = epoch_values[pick_epoch(scores, train_losses), judge]
    numbers = {"gate_requests": float(np.isfinite(base).sum())}
    if level <= 0 or np.nansum(base) <= 0:
        higher = float(np.nanmean(judged)) > float(np.nanmean(base)) * (1.0 + margin)
        return higher, {**numbers, "gate_ratio": float(np.nansum(judged) / max(np.nansum(base), 1e-12))}
    interval = paired_ratio_interval(judged, base, level=level, seed=0, groups=users)
    serve = interval.ratio > 1.0 + margin and interval.low > 1.0
    return serve, {**numbers, "gate_ratio": interval.ratio, "gate_low": interval.low}


def _mean_or_zero(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0


def pick_epoch(scores: np.ndarray, train_losses: np.ndarray) -> int:
    """Index of the epoch the training loop keeps, given each epoch's validation score [E] and training loss
    [E] (``models.train.loop.improved``: the higher score, an equal one to the lower loss)."""
    state = TrainState()
    best = 0
    for index, (score, loss) in enumerate(zip(scores.tolist(), train_losses.tolist(), strict=True)):
        record = {"val_NDCG@10": score, "train_loss": loss}
        if improved(record, state):
            best, state.best_score, state.best_loss = index, score, loss
    return best


def _served_on_rows(
    pipeline: ServedPipeline,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    count: int,
    rows: np.ndarray,
) -> list[np.ndarray]:
    """The served lists of ``rows`` in a list of ``count`` (empty elsewhere), as the metrics read them."""
    served = _served_items(pipeline, [requests[i] for i in rows.tolist()], [merged[i] for i in rows.tolist()])
    lists = [np.zeros(0, np.int64)] * count
    for row, items in zip(rows.tolist(), served, strict=True):
        lists[row] = items
    return lists


def _served_items(
    pipeline: ServedPipeline, requests: list[CandidateRequest], merged: list[MergedCandidates]
) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for begin in range(0, len(requests), 64):
        served = pipeline.order(requests[begin : begin + 64], merged[begin : begin + 64])
        out += [s.candidates.items for s in served]
    return out


def merge_sources(available: tuple[str, ...], allow_seen: bool, chosen: tuple[str, ...]) -> tuple[str, ...]:
    """The sources the replay merges, in ``SOURCE_ORDER``: those available (``recent`` only where seen
    items may be recommended), cut to ``chosen`` when it names any. Unknown names are a ValueError."""
    unknown = sorted(set(chosen) - set(SOURCE_ORDER))
    if unknown:
        raise ValueError(f"unknown candidate source(s) {unknown}; expected some of {list(SOURCE_ORDER)}")
    names = tuple(
        n
        for n in SOURCE_ORDER
        if n in available and (n != "recent" or allow_seen) and (not chosen or n in chosen)
    )
    if not names:
        raise ValueError(
            f"no candidate source left to merge: asked for {list(chosen)}, have {list(available)}"
        )
    return names


def run_seed(
    dataset: Dataset, periods: PipelinePeriods, seed: int, settings: PipelineSettings
) -> SeedOutcome:
    torch.set_num_threads(settings.threads)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    fit_events = periods.fit_events(dataset)
    sources: dict[str, CandidateSource] = dict(
        fit_sources(
            fit_events, dataset.num_items, dataset.num_scenes, item_category=dataset.catalogue.category
        )
    )
    seconds["fit_sources"] = time.perf_counter() - started
    ranker_vectors = None
    encoder_training = None
    result: Any = None
    if settings.encoder_minutes > 0:
        started = time.perf_counter()
        choice = train_encoder_variants(dataset, periods, settings, seed)
        seconds["encoder"] = time.perf_counter() - started
        result = choice.result
        settings = replace(settings, encoder_overrides=choice.overrides)  # the refit continues the kept one
        state = result.state
        encoder_training = {
            "seed": seed,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "history": state.history,
            "variants": choice.tried,
            "overrides": choice.overrides,
        }
        sources["ann"] = _ann_source(result)
        ranker_vectors = _user_vectors(result, periods.ranker)
    allow_seen = not periods.exclude_seen
    names = merge_sources(tuple(sources), allow_seen, settings.sources)
    ranker_requests = candidate_requests(periods.ranker, ranker_vectors)
    recent: RecentItemsSource | None = None
    recent_tried: list[dict[str, Any]] = []
    if "recent" in names and len(periods.ranker):
        recent, recent_tried = choose_recent(periods.ranker, requests=ranker_requests)
        sources["recent"] = recent
    base = MergeConfig(
        sources=names,
        quotas=tuple(settings.quotas.get(n, settings.total) for n in names),
        weights=tuple(1.0 for _ in names),
        total=settings.total,
        allow_seen=allow_seen,
    )
    generator = CandidateGenerator(list(sources.values()), base)

    def lists_for(requests: list[CandidateRequest], desc: str) -> list[list[SourceList]]:
        return [
            generator.source_lists(r)
            for r in tqdm(requests, desc=desc, disable=not settings.progress, leave=False)
        ]

    ranker_lists = lists_for(ranker_requests, "candidates (ranker period)")
    rng = np.random.default_rng(seed)
    valid_rows, train_rows = _ranker_period_rows(periods.ranker.users, settings.valid_share, rng)
    notes: list[str] = []

    started = time.perf_counter()
    merge = base
    fusion_scores: dict[str, float] = {}
    if len(valid_rows):
        tuning_rows = merge_tuning_rows(train_rows, valid_rows, settings, rng)
        merge, fusion_scores = choose_merge(
            generator, ranker_requests, ranker_lists, periods.ranker, tuning_rows, base, settings.merge_fusion
        )
    else:
        notes.append("no validation requests: the merge keeps equal weights")
    seconds["tune_merge"] = time.perf_counter() - started
    generator = CandidateGenerator(list(sources.values()), merge)
    valid_unions = {  # with keep_candidates, computed once for the merge and the outcome
        i: candidate_union(generator, ranker_requests[i], ranker_lists[i])
        for i in (valid_rows.tolist() if settings.keep_candidates else [])
    }
    ranker_merged = merged_lists(generator, ranker_requests, ranker_lists, merge, valid_unions)

    started = time.perf_counter()
    ranker: Any = None
    ranker_log: list[dict[str, float]] = []
    epoch_values = np.zeros((0, len(valid_rows)))
    trainable = [r for r in train_rows.tolist() if _found_any(periods.ranker, ranker_merged, r)]
    if len(valid_rows) and trainable:
        ranker, ranker_log, epoch_values = _ranker_training(
            dataset,
            periods,
            ranker_requests,
            ranker_merged,
            np.asarray(trainable, dtype=np.int64),
            names,
            settings,
            seed,
            valid_rows,
            generator,
        )
    else:
        notes.append(
            f"ranker not trained: {len(trainable)} ranker-period requests with a target among the candidates "
            f"and {len(valid_rows)} validation requests; the merged order is served"
        )
    seconds["ranker"] = time.perf_counter() - started
    valid: dict[str, float] = dict(fusion_scores)
    merged_values = np.zeros(0)
    if len(valid_rows):
        merged_values = list_values([m.items for m in ranker_merged], periods.ranker, valid_rows)["NDCG@10"]
        valid["merged_NDCG@10"] = float(np.nanmean(merged_values))
        for column, name in enumerate(names):  # each source alone on the same users: what the tuning saw
            source_items = [lists[column].items for lists in ranker_lists]
            valid[f"{name}_NDCG@10"] = list_metrics(source_items, periods.ranker, valid_rows)["NDCG@10"]
    # the ranker holds its best epoch, scored during training on all validation rows: the best of many
    # noisy epochs, so the gate judges the cross-fitted epochs rather than this score
    if ranker_log:
        valid["ranker_NDCG@10"] = max(row["val_NDCG@10"] for row in ranker_log)
    use_ranker = False
    if ranker is not None:
        valid_users = periods.ranker.users[valid_rows]
        folds = _user_folds(valid_users, settings.ranker_gate_folds, rng)
        use_ranker, gate = ranker_gate(
            epoch_values,
            np.asarray([row["train_loss"] for row in ranker_log]),
            merged_values,
            folds,
            settings.ranker_gate_level,
            settings.ranker_gate_margin,
            valid_users,
        )
        valid.update(gate)

    if settings.refit_before_test:
        started = time.perf_counter()
        sources, continued = _refit_before_test(dataset, periods, settings, seed, result, ranker, recent)
        seconds["refit"] = time.perf_counter() - started
        if result is not None:
            seconds["encoder"] += continued
            encoder_training = {**(encoder_training or {}), "continued": result.continued}
    generator = CandidateGenerator(list(sources.values()), merge)
    test_vectors = _user_vectors(result, periods.test) if result is not None else None
    test_requests = candidate_requests(periods.test, test_vectors)
    test_lists = lists_for(test_requests, "candidates (test)")
    test_unions = {
        i: candidate_union(generator, test_requests[i], test_lists[i])
        for i in (range(len(test_requests)) if settings.keep_candidates else [])
    }
    test_merged = merged_lists(generator, test_requests, test_lists, merge, test_unions)
    served = ServedPipeline(generator, ranker, use_ranker)
    unions = None
    if settings.keep_candidates:
        unions = CandidateUnions(
            names, merge, valid_rows, list(valid_unions.values()), list(test_unions.values())
        )

    served_lists: dict[str, list[np.ndarray]] = {}
    kinds: dict[str, str] = {}
    for column, name in enumerate(names):
        served_lists[name] = [lists[column].items for lists in test_lists]
        kinds[name] = "source"
    plain = sources["popular_plain"]
    served_lists["popular_plain"] = [plain.candidates(r, settings.total).items for r in test_requests]
    kinds["popular_plain"] = "source"
    served_lists["merged"] = [m.items for m in test_merged]
    kinds["merged"] = "merged"
    if ranker is not None:
        candidate = ServedPipeline(generator, ranker)
        served_lists["ranker_over_merged"] = _served_items(candidate, test_requests, test_merged)
        kinds["ranker_over_merged"] = "ranker"
    served_lists["pipeline"] = _served_items(served, test_requests, test_merged)
    kinds["pipeline"] = "pipeline"
    metrics: dict[str, dict[str, float]] = {}
    per_request: dict[str, np.ndarray] = {}
    for row_name, row_lists in served_lists.items():
        values = list_values(row_lists, periods.test)
        metrics[row_name] = {metric: float(np.nanmean(values[metric])) for metric in PIPELINE_METRICS}
        per_request[row_name] = values["NDCG@10"]
    return SeedOutcome(
        metrics,
        kinds,
        merge,
        use_ranker,
        valid,
        {k: round(v, 1) for k, v in seconds.items()},
        encoder_training,
        result,
        ranker,
        ranker_log,
        notes,
        per_request,
        unions,
        None if recent is None else recent.to_dict(),
        recent_tried,
    )


def merge_tuning_rows(
    train_rows: np.ndarray, valid_rows: np.ndarray, settings: PipelineSettings, rng: np.random.Generator
) -> np.ndarray:
    """The ranker-period rows the merge weights are tuned on (``settings.merge_tuning``: "all" or "valid"),
    at most ``settings.merge_tuning_requests`` drawn at random, sorted. -> [R] int64."""
    if settings.merge_tuning not in ("all", "valid"):
        raise ValueError(f"merge tuning {settings.merge_tuning!r}: expected all or valid")
    pool = np.concatenate([train_rows, valid_rows]) if settings.merge_tuning == "all" else valid_rows
    return np.sort(rng.permutation(pool)[: settings.merge_tuning_requests]).astype(np.int64)


def _ranker_period_rows(
    users: np.ndarray, valid_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ranker period's requests [R] -> (validation rows, training rows), split by user; no
    validation rows when fewer than two users have a request (nothing would be left to train on)."""
    distinct = np.unique(users)
    if len(distinct) < 2:
        return np.zeros(0, np.int64), np.arange(len(users))
    chosen = rng.choice(distinct, size=max(1, int(len(distinct) * valid_share)), replace=False)
    is_valid = np.isin(users, chosen)
    return np.flatnonzero(is_valid), np.flatnonzero(~is_valid)


def _user_folds(users: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Requests' users [V] -> each request's fold in [0, folds) [V], every user's requests in one fold
    (all 0 with ``folds`` < 2 or fewer than two users)."""
    distinct = np.unique(users)
    if folds < 2 or len(distinct) < 2:
        return np.zeros(len(users), np.int64)
    fold_of = rng.permutation(len(distinct)) % min(folds, len(distinct))
    return fold_of[np.searchsorted(distinct, users)].astype(np.int64)


def _found_any(task: EvalTask, merged: list[MergedCandidates], row: int) -> bool:
    """Whether a source found any target of request ``row`` (only such requests can teach the ranker)."""
    return bool(np.isin(task.targets[row][task.target_mask[row]], merged[row].items).any())


def history_share(task: EvalTask) -> float:
    """Share of test targets that are already in the request's history (what a repeat source can find)."""
    hits, total = 0, 0
    for row in range(len(task)):
        targets = task.targets[row][task.target_mask[row]]
        hits += int(np.isin(targets, task.histories[row].item).sum())
        total += len(targets)
    return hits / max(total, 1)
