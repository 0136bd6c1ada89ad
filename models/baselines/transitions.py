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

from models.baselines.cooccurrence import SparseRows
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
    keys, weights = [], []
    items = events.item.astype(np.int64)
    for distance in range(1, config.window + 1):
        a, b = items[:-distance], items[distance:]
        same = events.user[:-distance] == events.user[distance:]
        if config.same_session_only:
            same &= events.session[:-distance] == events.session[distance:]
        same &= a != b
        keys.append(a[same] * num_items + b[same])
        weights.append(np.full(int(same.sum()), 1.0 / distance))
    flat = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    pairs, inverse = np.unique(flat, return_inverse=True)
    totals = np.bincount(inverse, np.concatenate(weights) if weights else None, minlength=len(pairs))
    rows, cols = pairs // num_items, pairs % num_items
    frequency = np.bincount(items, minlength=num_items).astype(np.float64)
    share = totals / (frequency[rows] + config.smoothing)
    order = np.lexsort((cols, -share, rows))
    rows, cols, share = rows[order], cols[order], share[order]
    row_start = np.searchsorted(rows, np.arange(num_items))
    keep = np.arange(len(rows)) - row_start[rows] < config.max_neighbours
    rows, cols, share = rows[keep], cols[keep], share[keep]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_items))]).astype(np.int64)
    return SparseRows(indptr, cols.astype(np.int64), share.astype(np.float32))
