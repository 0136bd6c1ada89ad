"""The merge tuning's scorer: every tuning request's candidate union laid out once, so a weight vector is
scored without merging each request again.

``merge_lists`` (``models.candidates.merge``) does, per request and per weight trial: cut each source at
its quota, take the union, look the sources' scores up (score fusion), fuse, sort. Only the fusion depends
on the weights, so ``MergeTable.build`` keeps, per candidate of every request, what the fusion reads
(score fusion: the standardised scores; rank fusion: the source ranks) with its tie-breaks (best rank,
item), and ``ndcg(weights)`` fuses all requests at once and counts, per target, the candidates ahead of it
in ``merge_lists``' own order. Same arithmetic in the same order, so the same floats: NDCG@10 equals
``merge_ndcg`` exactly (``tests/models/recipe/test_merge_table.py``), at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.candidates.merge import NOT_FOUND, MergeConfig, UnionScores, standardised
from models.candidates.sources import SourceList
from models.metrics import ranking_metrics
from models.protocols import EvalTask
from models.recipe.lists import MISS_RANK

_ABSENT = np.iinfo(np.int64).max


@dataclass
class MergeTable:
    """R candidate rows of Q requests: values [R, S] (score fusion: standardised scores; rank fusion:
    source ranks, ``NOT_FOUND`` where absent), best_rank [R], items [R], group [Q + 1]; targets [Q, T]: each
    target's row (-1: not among the candidates), mask [Q, T]."""

    config: MergeConfig
    values: np.ndarray
    best_rank: np.ndarray
    items: np.ndarray
    group: np.ndarray
    targets: np.ndarray
    mask: np.ndarray

    @staticmethod
    def build(
        lists: Sequence[Sequence[SourceList]],
        task: EvalTask,
        rows: np.ndarray,
        config: MergeConfig,
        union_scores: Sequence[UnionScores | None] | None = None,
    ) -> MergeTable:
        """The table of ``rows`` (task rows; lists and union_scores indexed by task row) under ``config``'s
        sources, quotas, fusion and total (its weights are not read)."""
        values, best, items, sizes = [], [], [], []
        targets = np.full(task.targets[rows].shape, -1, dtype=np.int64)
        start = 0
        for q, row in enumerate(rows.tolist()):
            union, ranks = _union(lists[row], config)
            if config.fusion == "score":
                lookup = None if union_scores is None else union_scores[row]
                if lookup is None:
                    raise ValueError("score fusion needs every source's scores of the candidates")
                values.append(standardised(lookup(union)) if len(union) else np.zeros((0, ranks.shape[1])))
            else:
                values.append(ranks)
            best.append(
                np.where(ranks >= 0, ranks, _ABSENT).min(axis=1) if len(union) else np.zeros(0, np.int64)
            )
            items.append(union)
            wanted = task.targets[row][task.target_mask[row]]
            at = np.searchsorted(union, wanted)
            found = (at < len(union)) & (union[np.minimum(at, max(len(union) - 1, 0))] == wanted)
            slots = np.flatnonzero(task.target_mask[row])
            targets[q, slots] = np.where(found, start + at, -1)
            sizes.append(len(union))
            start += len(union)
        width = len(config.sources)
        return MergeTable(
            config,
            np.concatenate(values) if values else np.zeros((0, width)),
            np.concatenate(best).astype(np.int64) if best else np.zeros(0, np.int64),
            np.concatenate(items).astype(np.int64) if items else np.zeros(0, np.int64),
            np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
            targets,
            task.target_mask[rows],
        )

    def fused(self, weights: Sequence[float]) -> np.ndarray:
        """[R] fused score of every candidate, computed as ``merge_lists`` does."""
        w = np.asarray(weights, dtype=np.float64)[None, :]
        if self.config.fusion == "score":
            return (self.values * w).sum(axis=1)
        ranks = self.values
        return np.where(ranks >= 0, w / (self.config.rrf_k + ranks + 1.0), 0.0).sum(axis=1)

    def ranks(self, weights: Sequence[float]) -> np.ndarray:
        """[Q, T] 1-based rank of every target in its merged list (``MISS_RANK`` beyond ``config.total``
        or not found; 0 where masked), as ``list_ranks`` reads a merged list."""
        fused = self.fused(weights)
        owner = np.repeat(np.arange(len(self.group) - 1), np.diff(self.group))
        out = np.zeros(self.targets.shape, dtype=np.int64)
        for slot in range(self.targets.shape[1]):
            row = self.targets[:, slot]
            live = self.mask[:, slot] & (row >= 0)
            at = np.where(live, row, 0)[owner]
            ahead = (fused > fused[at]) | (
                (fused == fused[at])
                & (
                    (self.best_rank < self.best_rank[at])
                    | ((self.best_rank == self.best_rank[at]) & (self.items < self.items[at]))
                )
            )
            before = np.bincount(owner, ahead.astype(np.int64), minlength=len(row))
            position = np.where(live & (before < self.config.total), before + 1, MISS_RANK)
            out[:, slot] = np.where(self.mask[:, slot], position, 0)
        return out

    def ndcg(self, weights: Sequence[float]) -> float:
        """Mean NDCG@10 over the requests of the merged order under ``weights``."""
        values = ranking_metrics(self.ranks(weights), self.mask, (10,))["NDCG@10"]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _union(lists: Sequence[SourceList], config: MergeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(union items [C] sorted, source ranks [C, S] with ``NOT_FOUND``) as ``merge_lists`` builds them."""
    cut = [s.items[:quota] for s, quota in zip(lists, config.quotas, strict=True)]
    every = np.concatenate([*cut, np.zeros(0, np.int64)]).astype(np.int64)
    union, inverse = np.unique(every, return_inverse=True)
    ranks = np.full((len(union), len(cut)), NOT_FOUND, dtype=np.int64)
    begin = 0
    for column, items in enumerate(cut):
        ranks[inverse[begin : begin + len(items)], column] = np.arange(len(items))
        begin += len(items)
    return union, ranks
