"""Offline ranker evaluation: rerank the retriever's top-N and compare with the retrieval order.

``evaluate_ranker`` builds a time split (``models.ranker.samples``), fits the frozen retriever and the
anchor sources before the cut, trains one ranker per variant (full model and ablations) and scores every
test request's candidates. Metrics on the same candidate lists: NDCG@10 / HR@10 / MRR with the session's
items as targets (requests whose candidates contain none are skipped, same rows for every model), plus AUC
and GAUC per funnel task. ``retrieval_order`` is the baseline row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from models.data.schema import Dataset
from models.metrics import auc, gauc, ranking_metrics, target_ranks
from models.ranker.anchors import AnchorSources
from models.ranker.config import RankerConfig, TrainConfig
from models.ranker.features import collate
from models.ranker.model import OnePieceRanker
from models.ranker.retrieval import CandidateRetriever, CooccurrenceRetriever
from models.ranker.samples import RankingRequest, build_requests, split_time
from models.ranker.train import (
    EncodedRequests,
    encode_requests,
    feature_sizes,
    fit_anchor_sources,
    retrieve_for,
    train_ranker,
)

VARIANTS: dict[str, dict[str, Any]] = {
    "onepiece": {},
    "no_anchors": {"anchor_types": ()},
    "no_reasoning": {"reasoning_steps": 0},
    "single_task": {"tasks": (1,), "serving_weights": (1.0,)},
    "group_size_1": {"group_size": 1},
    # cascade variant: trained only on what the retriever found, with its rank as a candidate feature
    "onepiece_with_rank": {
        "use_retrieval_rank": True,
        "train_positives_in_retrieved": True,
        "train_uniform_negatives": 0,
    },
}
KS = (10,)


@dataclass
class RankerExperiment:
    """Everything shared by the variants of one dataset."""

    dataset: Dataset
    cut: int
    train_requests: list[RankingRequest]
    test_requests: list[RankingRequest]
    train_retrieved: list[np.ndarray]
    test_retrieved: list[np.ndarray]
    eval_candidates: int
    sources: dict[tuple[int, int], AnchorSources] = field(default_factory=dict)


def prepare_experiment(
    dataset: Dataset,
    base: RankerConfig,
    train_config: TrainConfig,
    retriever: CandidateRetriever | None = None,
    test_fraction: float = 0.1,
    eval_candidates: int = 200,
) -> tuple[RankerExperiment, CandidateRetriever]:
    cut = split_time(dataset.events, test_fraction, dataset.event_split)
    train_events = dataset.events.take(dataset.events.timestamp < cut)
    if retriever is None:
        sources = fit_anchor_sources(train_events, dataset.events, dataset.num_items, base)
        exclude_seen = dataset.funnel.rating_thresholds is not None  # a film is rated once
        retriever = CooccurrenceRetriever(sources.cooccurrence, exclude_seen=exclude_seen)
    train_requests = build_requests(dataset, cut, "train", train_config.max_requests_per_user)
    if train_config.max_train_requests and len(train_requests) > train_config.max_train_requests:
        keep = np.random.default_rng(train_config.seed).choice(
            len(train_requests), train_config.max_train_requests, replace=False
        )
        train_requests = [train_requests[i] for i in np.sort(keep)]
    test_requests = build_requests(dataset, cut, "test")
    experiment = RankerExperiment(
        dataset,
        cut,
        train_requests,
        test_requests,
        retrieve_for(retriever, train_requests, base.retrieval_depth),
        retrieve_for(retriever, test_requests, eval_candidates),
        eval_candidates,
    )
    return experiment, retriever


def encode_sources(experiment: RankerExperiment, config: RankerConfig) -> AnchorSources:
    """Anchor sources fitted on the events before the cut (popularity timeline over all events), cached
    per (anchor_len, popular_days)."""
    key = (config.anchor_len, config.popular_days)
    if key not in experiment.sources:
        dataset = experiment.dataset
        train_events = dataset.events.take(dataset.events.timestamp < experiment.cut)
        experiment.sources[key] = fit_anchor_sources(train_events, dataset.events, dataset.num_items, config)
    return experiment.sources[key]


def encode(experiment: RankerExperiment, config: RankerConfig, part: str) -> EncodedRequests:
    dataset = experiment.dataset
    sources = encode_sources(experiment, config)
    requests = experiment.train_requests if part == "train" else experiment.test_requests
    retrieved = experiment.train_retrieved if part == "train" else experiment.test_retrieved
    return encode_requests(config, feature_sizes(dataset), dataset.funnel, sources, requests, retrieved)


def fit_variant(
    experiment: RankerExperiment, config: RankerConfig, train_config: TrainConfig, progress: bool = True
) -> tuple[OnePieceRanker, list[dict[str, float]]]:
    dataset = experiment.dataset
    torch.manual_seed(train_config.seed)
    model = OnePieceRanker(config, feature_sizes(dataset), torch.from_numpy(dataset.catalogue.category))
    state = train_ranker(model, encode(experiment, config, "train"), train_config, progress)
    return model, state.history


def score_lists(
    model: OnePieceRanker, data: EncodedRequests, candidates: Sequence[np.ndarray], batch_size: int = 64
) -> list[np.ndarray]:
    """Task logits per request: [num_tasks, N_r] float32, deterministic serving grouping."""
    out: list[np.ndarray] = []
    model.eval()
    with torch.inference_mode():
        for begin in range(0, len(candidates), batch_size):
            chunk = list(candidates[begin : begin + batch_size])
            batch = collate(model.config, data.features[begin : begin + batch_size], chunk)
            logits = model(batch).task_logits.numpy()
            out += [logits[row, :, : len(items)] for row, items in enumerate(chunk)]
    return out


def candidate_levels(experiment: RankerExperiment) -> list[np.ndarray]:
    """Funnel level of every test candidate (0 = not in the target session)."""
    levels = []
    for request, items in zip(experiment.test_requests, experiment.test_retrieved, strict=True):
        lookup = dict(zip(request.positive_item.tolist(), request.positive_level.tolist(), strict=True))
        levels.append(np.asarray([lookup.get(i, 0) for i in items.tolist()], dtype=np.int64))
    return levels


def list_metrics(
    final_scores: list[np.ndarray],
    task_scores: dict[int, list[np.ndarray]],
    levels: list[np.ndarray],
    names: tuple,
) -> dict[str, float]:
    """final_scores: per request [N_r]; task_scores: funnel level -> per request [N_r]; levels per request."""
    rows = [i for i, level in enumerate(levels) if (level > 0).any()]
    width = max((len(levels[i]) for i in rows), default=1)
    scores = np.full((len(rows), width), -np.inf)
    targets = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for out_row, i in enumerate(rows):
        scores[out_row, : len(final_scores[i])] = final_scores[i]
        hits = np.flatnonzero(levels[i] > 0)
        targets[out_row, : len(hits)] = hits
        mask[out_row, : len(hits)] = True
    per_row = ranking_metrics(target_ranks(scores, targets, mask), mask, KS)
    result = {
        name: float(np.nanmean(values)) for name, values in per_row.items() if not name.startswith("Recall")
    }
    for level, per_request in task_scores.items():
        labels = [(lv >= level).astype(np.int64) for lv in levels]
        name = names[level - 1]
        result[f"AUC[{name}]"] = auc(np.concatenate(per_request), np.concatenate(labels))
        result[f"GAUC[{name}]"] = gauc(per_request, labels)
    return result


def model_metrics(
    model: OnePieceRanker, experiment: RankerExperiment, levels: list[np.ndarray]
) -> dict[str, float]:
    logits = score_lists(model, encode(experiment, model.config, "test"), experiment.test_retrieved)
    final = [model.serving_score(torch.from_numpy(x)[None])[0].numpy() for x in logits]
    per_task: dict[int, list[np.ndarray]] = {}
    for level in (1, 2, 3):
        if level in model.config.tasks:
            index = model.config.tasks.index(level)
            per_task[level] = [x[index] for x in logits]
        else:  # a model without this task's head is judged on its serving score
            per_task[level] = final
    return list_metrics(final, per_task, levels, experiment.dataset.funnel.names)


def retrieval_order_metrics(experiment: RankerExperiment, levels: list[np.ndarray]) -> dict[str, float]:
    order = [-np.arange(len(items), dtype=np.float64) for items in experiment.test_retrieved]
    return list_metrics(order, {1: order, 2: order, 3: order}, levels, experiment.dataset.funnel.names)


def evaluate_ranker(
    dataset: Dataset,
    base: RankerConfig,
    train_config: TrainConfig,
    variants: Sequence[str] = tuple(VARIANTS),
    retriever: CandidateRetriever | None = None,
    eval_candidates: int = 200,
    test_fraction: float = 0.1,
    progress: bool = True,
) -> dict[str, Any]:
    """Trains each variant and returns the report dict (``models.<name>.<metric>`` layout)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ranker variants {unknown}, expected some of {sorted(VARIANTS)}")
    started = time.perf_counter()
    experiment, _ = prepare_experiment(dataset, base, train_config, retriever, test_fraction, eval_candidates)
    levels = candidate_levels(experiment)
    if not any((lv > 0).any() for lv in levels):
        raise ValueError(
            f"{dataset.name}: the ranker stage has no test request with a target among its candidates "
            f"({len(experiment.test_requests)} test requests after its time cut); --stage pipeline scores "
            "the ranker on the data's own protocol"
        )
    results: dict[str, dict[str, float]] = {"retrieval_order": retrieval_order_metrics(experiment, levels)}
    training: dict[str, Any] = {}
    for name in variants:
        config = replace(base, **VARIANTS[name])
        variant_started = time.perf_counter()
        model, log = fit_variant(experiment, config, train_config, progress)
        results[name] = model_metrics(model, experiment, levels)
        training[name] = {"log": log, "seconds": time.perf_counter() - variant_started}
        if progress:
            print(f"[{dataset.name}] {name}: NDCG@10 {results[name]['NDCG@10']:.4f}", flush=True)
    return {
        "dataset": dataset.name,
        "stage": "ranker",
        "split": {"cut_timestamp": experiment.cut, "test_fraction": test_fraction},
        "counts": {
            "train_requests": len(experiment.train_requests),
            "test_requests": len(experiment.test_requests),
            "test_requests_with_target_in_candidates": int(sum((lv > 0).any() for lv in levels)),
            "eval_candidates": eval_candidates,
        },
        "config": base.to_dict(),
        "train_config": {k: v for k, v in vars(train_config).items() if k != "extra"},
        "models": results,
        "training": training,
        "seconds": time.perf_counter() - started,
    }
