"""Directed item-to-item transitions: what users went on to after an item (a sequential item-kNN).

Co-occurrence (``models.baselines.cooccurrence``) counts a pair in both directions and normalises it to a
cosine, so it says "watched around the same time". This fit keeps the order: every pair (a, b) where b
comes at most ``window`` events after a in one user's time-ordered events (optionally inside one session)
adds 1 / distance to t(a, b), and the row is normalised to a smoothed conditional share,
T(a, b) = t(a, b) / (n_a + smoothing), where n_a counts a's events. Each row keeps its ``max_neighbours``
strongest successors (sparse CSR, strongest first). A user is scored like co-occurrence: the recent items
weighted by decay^age, summed over their rows (``models.candidates.sources.CooccurrenceSource``).

On the ranker-period targets of the pipeline replay (fit period only, the defaults below) this source
alone scored NDCG@10 0.171 against co-occurrence's 0.140 on ML-1M, 0.118 / 0.125 on ML-100K, 0.153 /
0.117 on synthetic and 0.057 / 0.053 on Taobao (docs/pipeline.md has what it adds to the served list).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.baselines.cooccurrence import SparseRows, ordered_pairs, strongest_per_row
from models.data.schema import EventTable


@dataclass(frozen=True)
class TransitionConfig:
    # chosen on the ranker-period (validation) targets of the four pipeline datasets, fit period only:
    # windows 5/10/20, smoothing 5/20/50, decay 0.6/0.7/0.8, same session or not (docs/pipeline.md)
    window: int = 10
    same_session_only: bool = False
    smoothing: float = 20.0  # added to n_a: a rare item's few successors do not get a share near 1
    max_neighbours: int = 200
    history_length: int = 20
    history_decay: float = 0.8


def transition_matrix(events: EventTable, num_items: int, config: TransitionConfig) -> SparseRows:
    """events sorted by (user, timestamp) -> CSR [num_items, num_items] of T(a, b), strongest first per row
    (ties: smaller item index first)."""
    keys, weights = [np.zeros(0, np.int64)], [np.zeros(0)]
    for distance, a, b in ordered_pairs(events, config.window, config.same_session_only):
        keys.append(a * num_items + b)
        weights.append(np.full(len(a), 1.0 / distance))
    pairs, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    totals = np.bincount(inverse, np.concatenate(weights), minlength=len(pairs))
    rows, cols = pairs // num_items, pairs % num_items
    frequency = np.bincount(events.item.astype(np.int64), minlength=num_items).astype(np.float64)
    share = totals / (frequency[rows] + config.smoothing)
    return strongest_per_row(rows, cols, share, num_items, config.max_neighbours)
