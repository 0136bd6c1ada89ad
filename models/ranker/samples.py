"""Ranking requests cut from an event table with a global time split (no impression logs exist).

A request is "user u opens session s": its history is every event of u before s starts, its context is
the first event of s (time, scene, device), and its positives are the items of s with their funnel level.
Split: ``cut`` = the timestamp quantile at ``1 - test_fraction`` of all events. Training requests use only
events before ``cut`` (targets truncated at the cut); a test request is a user's first session starting at or
after ``cut`` that has history. Retriever, co-occurrence and popularity for training are fitted before
``cut``, so nothing after it leaks into training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.histories import history_from_rows
from models.data.schema import Dataset, EventTable
from models.data.splits import TEST
from models.types import RequestContext, UserHistory

HISTORY_KEEP = 200  # events kept per request history (more than any context length uses)


@dataclass
class RankingRequest:
    user: int
    history: UserHistory
    context: RequestContext
    positive_item: np.ndarray  # [P] int64, unique
    positive_level: np.ndarray  # [P] int64 in 1..3 (the strongest level reached in the session)


def split_time(events: EventTable, test_fraction: float = 0.1, labels: np.ndarray | None = None) -> int:
    """The test period's first second: with a supplied split (``labels`` [E], ``models.data.splits.TEST``
    on test rows), its earliest test event; else the (1 - test_fraction) quantile of all timestamps."""
    if labels is not None and np.any(labels == TEST):
        return int(events.timestamp[labels == TEST].min())
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    return int(np.quantile(events.timestamp, 1.0 - test_fraction, method="higher"))


def _history(dataset: Dataset, rows: slice, user: int) -> UserHistory:
    return history_from_rows(dataset.events, rows, dataset.user_features, user)


def _request(dataset: Dataset, user: int, user_start: int, start: int, end: int) -> RankingRequest | None:
    ev = dataset.events
    items = ev.item[start:end].astype(np.int64)
    levels = dataset.funnel.levels(ev.action[start:end], ev.value[start:end]).astype(np.int64)
    best = np.zeros(dataset.num_items, dtype=np.int64)
    np.maximum.at(best, items, levels)
    best[:2] = 0
    positive = np.flatnonzero(best)
    if len(positive) == 0:
        return None
    context = RequestContext(
        timestamp=int(ev.timestamp[start]), scene=int(ev.scene[start]), device=int(ev.device[start])
    )
    history = _history(dataset, slice(max(user_start, start - HISTORY_KEEP), start), user)
    return RankingRequest(user, history, context, positive, best[positive])


def build_requests(
    dataset: Dataset, cut: int, part: str, max_per_user: int = 8, max_users: int = 0
) -> list[RankingRequest]:
    """``part`` = "train" (up to ``max_per_user`` latest sessions before ``cut`` per user) or "test"."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got '{part}'")
    ev = dataset.events
    offsets = ev.user_offsets(dataset.num_users)
    requests: list[RankingRequest] = []
    users = np.flatnonzero(np.diff(offsets) > 0)
    if max_users:
        users = users[:max_users]
    for user in users.tolist():
        begin, finish = int(offsets[user]), int(offsets[user + 1])
        session = ev.session[begin:finish]
        starts = begin + np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
        ends = np.r_[starts[1:], finish]
        start_time = ev.timestamp[starts]
        if part == "test":
            after = np.flatnonzero((start_time >= cut) & (starts > begin))
            if len(after):
                request = _request(dataset, user, begin, int(starts[after[0]]), int(ends[after[0]]))
                if request is not None:
                    requests.append(request)
            continue
        before = np.flatnonzero((start_time < cut) & (starts > begin))[-max_per_user:]
        for index in before.tolist():
            start = int(starts[index])
            end = start + int(np.searchsorted(ev.timestamp[start : int(ends[index])], cut, side="left"))
            request = _request(dataset, user, begin, start, end)
            if request is not None:
                requests.append(request)
    return requests
