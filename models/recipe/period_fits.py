"""The sources and the feature state each ranker-period request is served from: refitted per offset.

A ranker-period request must see the candidate lists and features a bundle built just before its target
would give, or the merge weights and the ranker are tuned on numbers the served pipeline never produces
(sources fitted on less data, or on data after the target). So on leave-last-out the ranker requests are
grouped by **position** (0 = each user's last ranker target, 1 = the one before, ...), and the requests at
position p read sources and a ``FeatureState`` fitted on every user's events before *their* earliest
target at positions <= p: no fit a position-p request reads holds any user's position-<=p target or
anything after it, as no test fit holds any user's test event (``models.candidates.training_requests``
does the same offset by offset for the offline experiment). The oldest position's fit is the fit period
itself, which the encoder trains on: the encoder's data ends before every ranker target, so its vectors
leak none of them (it cannot be refitted per offset).

On next-session the ranker period is the validation period and, with ``ranker_windows``, as many windows of
the same length before it: one group per window, fitted on the training events before the window starts
(``models.recipe.periods.next_session_periods``); the oldest window's fit is the fit period, the encoder's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.candidates.sources import CandidateSource
from models.data.schema import Dataset
from models.recipe.periods import PipelinePeriods


@dataclass
class PeriodFit:
    """rows [R_g] int64: the ranker-period requests served from this fit; mask [E] bool: the events it
    fitted; sources: every source (the shared ``ann`` and ``recent`` added by the recipe)."""

    rows: np.ndarray
    mask: np.ndarray
    sources: dict[str, CandidateSource]


def target_positions(event_user: np.ndarray, target_rows: np.ndarray) -> np.ndarray:
    """event_user [E] (each event's user), ranker targets' event rows [R] -> each target's position among
    its user's targets, counted from the user's last (0) [R] int64."""
    user = event_user[target_rows].astype(np.int64)
    order = np.lexsort((-target_rows, user))  # by user, newest first
    ranked = np.empty(len(target_rows), np.int64)
    first = np.r_[True, user[order][1:] != user[order][:-1]]
    starts = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    ranked[order] = np.arange(len(order)) - starts
    return ranked


def fit_masks(dataset: Dataset, periods: PipelinePeriods) -> list[tuple[np.ndarray, np.ndarray]]:
    """-> [(ranker rows [R_g], fitted events [E] bool)], one per group (module docstring), oldest group
    first."""
    if periods.ranker_fits is not None:
        return list(periods.ranker_fits)
    task_rows = np.arange(len(periods.ranker))
    targets = periods.ranker_target_rows
    if periods.protocol != "leave-last-out" or len(targets) != len(task_rows) or not len(task_rows):
        return [(task_rows, periods.fit)]
    events = dataset.events
    base = periods.fit if periods.refit is None else periods.refit
    position = target_positions(events.user, targets)
    user = events.user[targets].astype(np.int64)
    row_index = np.arange(len(events))
    out = []
    for p in range(int(position.max()), -1, -1):
        cut = np.full(dataset.num_users, len(events), np.int64)
        within = position <= p
        np.minimum.at(cut, user[within], targets[within])
        mask = base & (row_index < cut[events.user.astype(np.int64)])
        out.append((task_rows[position == p], mask))
    return out
