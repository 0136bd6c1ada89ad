"""Item-to-item neighbours: nearest item vectors in the ANN index, else the co-occurrence baseline."""

from __future__ import annotations

import numpy as np

from app.services.items import RankedItem
from app.services.serving_bundle import ServingBundle
from models.candidates.sources import CooccurrenceSource
from models.data.schema import FIRST_REAL_ID


def similar_items(serving: ServingBundle, item: int, k: int) -> list[RankedItem]:
    """Top-k neighbours of item index ``item`` (never itself, never padding/unknown rows)."""
    if serving.item_vectors is not None and serving.index is not None:
        query = serving.item_vectors[item][None, :]
        items, scores = serving.index.search(query, k, exclude=[{item}])
        found, found_scores, source = items[0], scores[0], "ann"
    elif isinstance(cooccurrence := serving.sources.get("cooccurrence"), CooccurrenceSource):
        found, found_scores = cooccurrence.item_neighbours(item, k + 1)
        source = "cooccurrence"
    else:
        found, found_scores, source = np.zeros(0, np.int64), np.zeros(0, np.float32), "none"
    keep = (found >= FIRST_REAL_ID) & (found != item)
    pairs = list(zip(found[keep].tolist(), found_scores[keep].tolist(), strict=True))[:k]
    return [
        serving.ranked_item(int(neighbour), rank, float(score), source)
        for rank, (neighbour, score) in enumerate(pairs, start=1)
    ]
