"""The served pipeline of a bundle: which sources it has, how they merge, whether the ranker is trusted.

A bundle built by the pipeline trainer stores its tuned merge and the ranker decision in the manifest
(``config.serving``); an older or hand-built bundle gets ``default_merge``: the ANN list first, co-occurrence
next, popularity as the filler, and its ranker (if any) over the merged list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
from models.candidates.served import ServedPipeline
from models.candidates.sources import (
    AnnSource,
    CandidateSource,
    CategorySource,
    CooccurrenceSource,
    ItemSearch,
    PopularSource,
    RecentItemsSource,
)
from models.inference import CandidateRanker

# the merge of a bundle without a tuned one (the category source is used only where a tuned merge names it).
# The successor list weighs what co-occurrence does, not a tuned value; with it the baseline bundle's
# untuned merge went, on the replay's test requests, ML-1M 0.1287 -> 0.1548 NDCG@10, Taobao 0.0734 ->
# 0.0748, ML-100K 0.1149 -> 0.1178 (docs/pipeline.md)
DEFAULT_WEIGHTS = {"ann": 1.0, "cooccurrence": 0.5, "transitions": 0.5, "recent": 1.0, "popular": 0.1}
# shares of the total
DEFAULT_QUOTAS = {"ann": 1.0, "cooccurrence": 1.0, "transitions": 1.0, "recent": 0.25, "popular": 0.5}


def bundle_sources(
    index: ItemSearch | None,
    cooccurrence_scorer: Any | None,
    popularity: np.ndarray,
    item_category: np.ndarray | None = None,
    transitions: CandidateSource | None = None,
) -> list[CandidateSource]:
    """Sources a bundle can feed: ANN (with an index), co-occurrence (with the fitted baseline scorer,
    ``models.baselines.cooccurrence.CooccurrenceScorer``), directed successors (``transitions``, as
    ``models.bundle.load_transitions`` loads it), category popularity (with the catalogue's
    ``item_category`` [num_items]), the user's recent items, popularity."""
    sources: list[CandidateSource] = []
    if index is not None:
        sources.append(AnnSource(index))
    matrix = getattr(cooccurrence_scorer, "matrix", None)
    if matrix is not None and cooccurrence_scorer is not None:
        config = cooccurrence_scorer.config
        sources.append(
            CooccurrenceSource(
                matrix.indptr, matrix.indices, matrix.data, config.history_length, config.history_decay
            )
        )
    if transitions is not None:
        sources.append(transitions)
    scores = np.where(np.isfinite(popularity), popularity, 0.0)
    if item_category is not None:
        sources.append(CategorySource(item_category, scores))
    sources += [RecentItemsSource(), PopularSource(scores, "popular")]
    return sources


def default_merge(available: list[str], total: int, allow_seen: bool = False) -> MergeConfig:
    names = tuple(n for n in DEFAULT_WEIGHTS if n in available and (n != "recent" or allow_seen))
    return MergeConfig(
        sources=names,
        quotas=tuple(max(1, int(DEFAULT_QUOTAS[n] * total)) for n in names),
        weights=tuple(DEFAULT_WEIGHTS[n] for n in names),
        total=total,
        allow_seen=allow_seen,
    )


def serving_pipeline(
    serving_config: dict[str, Any] | None,
    sources: list[CandidateSource],
    ranker: CandidateRanker | None,
    total: int,
) -> ServedPipeline:
    """``serving_config``: the manifest's ``config.serving`` ({"merge": MergeConfig dict, "ranker_served",
    "recent": RecentItemsSource dict}) or None. Sources the stored merge names but this bundle lacks are
    dropped; ``total`` caps the list."""
    if serving_config and serving_config.get("recent"):  # the scoring the pipeline trainer chose
        chosen = RecentItemsSource.from_dict(dict(serving_config["recent"]))
        sources = [chosen if source.name == "recent" else source for source in sources]
    available = [source.name for source in sources]
    if serving_config and serving_config.get("merge"):
        stored = MergeConfig.from_dict(dict(serving_config["merge"]))
        keep = [i for i, name in enumerate(stored.sources) if name in available]
        merge = MergeConfig(
            sources=tuple(stored.sources[i] for i in keep),
            quotas=tuple(stored.quotas[i] for i in keep),
            weights=tuple(stored.weights[i] for i in keep),
            total=min(total, stored.total),
            rrf_k=stored.rrf_k,
            allow_seen=stored.allow_seen,
            fusion=stored.fusion,
        )
        use_ranker = bool(serving_config.get("ranker_served", True))
    else:
        merge, use_ranker = default_merge(available, total), True
    return ServedPipeline(CandidateGenerator(sources, merge), ranker, use_ranker)
