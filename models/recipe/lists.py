"""Served lists scored against a task's targets, and a task's requests as the candidate sources see them.

Shared by the recipe (tuning and validation on the ranker period) and the replay (the test period), so a
validation score is computed exactly as the test score is."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.candidates.merge import MergedCandidates
from models.candidates.rules import WHOLE_LIST
from models.candidates.served import ServedPipeline
from models.candidates.sources import CandidateRequest
from models.metrics import ranking_metrics
from models.protocols import EvalTask

PIPELINE_METRICS = ("NDCG@10", "HR@10", "Recall@50", "MRR")


MISS_RANK = 1 << 40  # rank given to a target that is not in the served list: no credit at any cutoff


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
    targets), every metric of ``models.metrics.ranking_metrics`` at cut-offs 10 and 50."""
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


def served_on_rows(
    pipeline: ServedPipeline,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    count: int,
    rows: np.ndarray,
) -> list[np.ndarray]:
    """The served lists of ``rows`` in a list of ``count`` (empty elsewhere), as the metrics read them."""
    served = served_items(pipeline, [requests[i] for i in rows.tolist()], [merged[i] for i in rows.tolist()])
    lists = [np.zeros(0, np.int64)] * count
    for row, items in zip(rows.tolist(), served, strict=True):
        lists[row] = items
    return lists


def served_items(
    pipeline: ServedPipeline, requests: list[CandidateRequest], merged: list[MergedCandidates]
) -> list[np.ndarray]:
    """The whole served list of each request (``ServedPipeline.recommend_many`` under no rule: the
    protocol's exclusions are in the requests), over already merged candidates, 64 requests a forward."""
    out: list[np.ndarray] = []
    for begin in range(0, len(requests), 64):
        batch = slice(begin, begin + 64)
        served = pipeline.recommend_many(requests[batch], WHOLE_LIST, merged=merged[batch])
        out += [s.items for s in served]
    return out


def found_any(task: EvalTask, merged: list[MergedCandidates], row: int) -> bool:
    """Whether a source found any target of request ``row`` (only such requests can teach the ranker)."""
    return bool(np.isin(task.targets[row][task.target_mask[row]], merged[row].items).any())
