"""Merging several sources' lists into one candidate set, in an order that stands on its own.

Each source contributes its first ``quota`` items. Duplicates collapse into one candidate that remembers
its rank and score in every source. Two orders (``MergeConfig.fusion``):

- ``rrf``, weighted reciprocal-rank fusion (Cormack et al., SIGIR 2009): merge_score(i) =
  Σ_s w_s / (k_rrf + rank_s(i) + 1). Only ranks count, and a source says nothing about an item it did not
  return.
- ``score``, score fusion: every source scores every candidate of the union (``score_items``, also the
  ones it did not return), each source's scores are standardised over the union, and merge_score(i) =
  Σ_s w_s · z_s(i). An item the ANN ranks 201st still gets its ANN score.

Ties by the best single rank, then item index. Without a ranker this order is what users receive; with
one, the ranker reads the per-source ranks and the merged position as features and may reorder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.candidates.sources import SourceList

NOT_FOUND = -1
FUSIONS = ("rrf", "score")
# the union's items [N] -> every source's score of each [N, S] (``CandidateGenerator.union_scores``)
UnionScores = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MergeConfig:
    """sources: names in feature order; quotas / weights: per source (same order); total: list length."""

    sources: tuple[str, ...]
    quotas: tuple[int, ...]
    weights: tuple[float, ...]
    total: int = 200
    rrf_k: float = 10.0
    allow_seen: bool = False  # may items from the user's own history be recommended again?
    fusion: str = "rrf"  # "rrf" (ranks) or "score" (standardised scores of every source, see above)

    def __post_init__(self) -> None:
        if not (len(self.sources) == len(self.quotas) == len(self.weights)):
            raise ValueError("sources, quotas and weights must have the same length")
        if len(set(self.sources)) != len(self.sources):
            raise ValueError(f"duplicate source names in {self.sources}")
        if self.total < 1 or any(q < 0 for q in self.quotas) or any(w < 0 for w in self.weights):
            raise ValueError("total must be >= 1, quotas and weights >= 0")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")

    def to_dict(self) -> dict[str, object]:
        return {
            "sources": list(self.sources),
            "quotas": list(self.quotas),
            "weights": list(self.weights),
            "total": self.total,
            "rrf_k": self.rrf_k,
            "allow_seen": self.allow_seen,
            "fusion": self.fusion,
        }

    @staticmethod
    def from_dict(values: dict[str, object]) -> MergeConfig:
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return MergeConfig(**fixed)  # type: ignore[arg-type]

    def quota(self, name: str) -> int:
        return self.quotas[self.sources.index(name)]


@dataclass
class MergedCandidates:
    """N candidates in merged order.

    items [N] int64; merge_score [N] float32; source_rank [N, S] int64 (0-based rank in each source,
    -1 = that source did not return it); source_score [N, S] float32 (0 where absent); weights [S]: the
    merge's weight of each source (empty: unknown, every source counts).
    """

    items: np.ndarray
    merge_score: np.ndarray
    source_rank: np.ndarray
    source_score: np.ndarray
    sources: tuple[str, ...] = field(default_factory=tuple)
    weights: tuple[float, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def take(self, order: np.ndarray) -> MergedCandidates:
        """The candidates reordered (or subset) by ``order`` [M] int64 positions."""
        return MergedCandidates(
            self.items[order],
            self.merge_score[order],
            self.source_rank[order],
            self.source_score[order],
            self.sources,
            self.weights,
        )

    def primary_source(self) -> list[str]:
        """Per candidate, the source that ranked it best among those the merge weighs (the name shown to
        callers); a candidate that only weight-0 sources found is named after the best of them. [N]."""
        if len(self) == 0:
            return []
        absent = np.iinfo(np.int64).max
        ranks = np.where(self.source_rank < 0, absent, self.source_rank)
        if len(self.weights) == ranks.shape[1]:
            muted = np.asarray(self.weights) <= 0
            weighed = np.where(muted[None, :], absent, ranks)
            ranks = np.where((weighed < absent).any(axis=1, keepdims=True), weighed, ranks)
        return [self.sources[s] for s in ranks.argmin(axis=1).tolist()]


def merge_lists(
    lists: Sequence[SourceList], config: MergeConfig, union_scores: UnionScores | None = None
) -> MergedCandidates:
    """lists: one ``SourceList`` per ``config.sources`` entry (same order) -> the merged candidates.
    ``union_scores`` is required by score fusion (every source's score of every candidate)."""
    if len(lists) != len(config.sources):
        raise ValueError(f"{len(lists)} lists for {len(config.sources)} sources")
    num_sources = len(config.sources)
    cut = [(s.items[:quota], s.scores[:quota]) for s, quota in zip(lists, config.quotas, strict=True)]
    all_items = np.concatenate([items for items, _ in cut] + [np.zeros(0, np.int64)]).astype(np.int64)
    if all_items.size == 0:
        empty_ranks = np.zeros((0, num_sources), dtype=np.int64)
        return MergedCandidates(
            all_items,
            np.zeros(0, np.float32),
            empty_ranks,
            np.zeros((0, num_sources), np.float32),
            config.sources,
            config.weights,
        )
    items, inverse = np.unique(all_items, return_inverse=True)
    source_rank = np.full((len(items), num_sources), NOT_FOUND, dtype=np.int64)
    source_score = np.zeros((len(items), num_sources), dtype=np.float32)
    begin = 0
    for column, (source_items, source_scores) in enumerate(cut):
        rows = inverse[begin : begin + len(source_items)]
        source_rank[rows, column] = np.arange(len(source_items))
        source_score[rows, column] = source_scores
        begin += len(source_items)
    weights = np.asarray(config.weights, dtype=np.float64)[None, :]
    if config.fusion == "score":
        if union_scores is None:
            raise ValueError("score fusion needs every source's scores of the candidates (union_scores)")
        fused = (standardised(union_scores(items)) * weights).sum(axis=1)
    else:
        fused = np.where(source_rank >= 0, weights / (config.rrf_k + source_rank + 1.0), 0.0).sum(axis=1)
    best_rank = np.where(source_rank >= 0, source_rank, np.iinfo(np.int64).max).min(axis=1)
    order = np.lexsort((items, best_rank, -fused))[: config.total]
    return MergedCandidates(
        items[order],
        fused[order].astype(np.float32),
        source_rank[order],
        source_score[order],
        config.sources,
        config.weights,
    )


def standardised(scores: np.ndarray) -> np.ndarray:
    """[N, S] -> each column minus its mean, over its standard deviation (a constant column -> 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    centred = scores - scores.mean(axis=0, keepdims=True)
    spread = np.sqrt((centred * centred).mean(axis=0, keepdims=True))  # np.std's arithmetic, one mean less
    return np.where(spread > 0, centred / np.maximum(spread, 1e-12), 0.0)


# the merge of a pipeline without a tuned one (a bundle assembled from checkpoints, the baseline bundle):
# the ANN list first, co-occurrence and successors next, popularity as the filler. With the successor list
# this untuned merge went, on the replay's test requests, ML-1M 0.1287 -> 0.1548 NDCG@10, Taobao 0.0734 ->
# 0.0748, ML-100K 0.1149 -> 0.1178 (docs/pipeline.md)
DEFAULT_WEIGHTS = {"ann": 1.0, "cooccurrence": 0.5, "transitions": 0.5, "recent": 1.0, "popular": 0.1}
DEFAULT_QUOTAS = {
    "ann": 1.0,
    "cooccurrence": 1.0,
    "transitions": 1.0,
    "recent": 0.25,
    "popular": 0.5,
}  # of total


def default_merge(available: list[str], total: int, allow_seen: bool = False) -> MergeConfig:
    """The untuned merge of the ``available`` sources (``recent`` only where seen items may return)."""
    names = tuple(n for n in DEFAULT_WEIGHTS if n in available and (n != "recent" or allow_seen))
    return MergeConfig(
        sources=names,
        quotas=tuple(max(1, int(DEFAULT_QUOTAS[n] * total)) for n in names),
        weights=tuple(DEFAULT_WEIGHTS[n] for n in names),
        total=total,
        allow_seen=allow_seen,
    )
