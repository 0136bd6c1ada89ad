"""Which test targets any candidate source could find at all: the ceiling of a log, before any model.

A target is one of four kinds, counted over every (request, target) pair:
- ``in_history``: the item is in the request's history (a re-visit; what a recent-items source finds);
- ``new_linked``: not in the history, but another user of the known log touched both it and one of the
  history's items (what a co-occurrence or transition source can reach, at any depth);
- ``new_known``: in the known log (some user touched it), but linked to no history item that way (only
  popularity-like sources reach it, ranked among the whole catalogue);
- ``unknown``: never in the known log: no source fitted on it can name the item.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.data.schema import EventTable
from models.protocols import EvalTask


@dataclass(frozen=True)
class TargetReach:
    """Shares of the test targets (they sum to 1) and how many targets were counted."""

    in_history: float
    new_linked: float
    new_known: float
    unknown: float
    targets: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _users_by_item(known: EventTable, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the distinct users per item: users[offsets[i]:offsets[i + 1]] (sorted) touched item i."""
    pairs = (
        np.unique(np.stack([known.item, known.user]), axis=1) if len(known) else np.zeros((2, 0), np.int64)
    )
    counts = np.bincount(pairs[0], minlength=num_items)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, pairs[1].astype(np.int64)


def target_reach(task: EvalTask, known: EventTable, num_items: int) -> TargetReach:
    """Classifies every target of ``task`` against ``known``, the events the sources are fitted on before
    the test (a request's own user is left out of the links: their history is the seed, not a witness);
    item indices are below ``num_items`` (the dataset's)."""
    offsets, users = _users_by_item(known, num_items)
    counts = {"in_history": 0, "new_linked": 0, "new_known": 0, "unknown": 0}
    for row in range(len(task)):
        targets = task.targets[row][task.target_mask[row]]
        seen = np.unique(task.histories[row].item)
        revisit = np.isin(targets, seen)
        counts["in_history"] += int(revisit.sum())
        new = targets[~revisit]
        if not len(new):
            continue
        own = task.users[row]
        witnesses = np.unique(
            np.concatenate([users[offsets[i] : offsets[i + 1]] for i in seen] or [users[:0]])
        )
        witnesses = witnesses[witnesses != own]
        for item in new:
            touched = users[offsets[item] : offsets[item + 1]]
            if not len(touched):
                counts["unknown"] += 1
            elif np.isin(touched, witnesses).any():
                counts["new_linked"] += 1
            else:
                counts["new_known"] += 1
    total = sum(counts.values())
    shares = {name: count / max(total, 1) for name, count in counts.items()}
    return TargetReach(**shares, targets=total)
