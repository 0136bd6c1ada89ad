"""The periods of a served-pipeline replay: what the bundle is fitted on, what the ranker learns from,
what is tested. Nothing a test request asks about is inside the fit or ranker periods.

- leave-last-out: per user, the test target is the last event (or, with a supplied split, the last event
  labelled test). The last ``ranker_events`` trainable events before it with an earlier event are ranker
  requests (one target each, history = every earlier event); the rest is the fit period (sources,
  encoder). Rows the user labelled valid are the ranker period when there are; on anonymous sessions only
  a share of the users give ranker requests. Items in the history are excluded when ``exclude_seen`` (the
  protocol's rule on rating logs).
- next-session: the time split (or the supplied one). Events of the training period are the fit period;
  sessions that start in the validation period (targets cut at the test period) are ranker requests, up
  to ``ranker_events`` per user; the first test-period session of every warm user is a test request.

A period without requests (a tiny validation period, users with one event) gives an empty task: the
replay then skips what needs it and says so, it does not fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.data.defaults import SINGLE_SESSION_MAJORITY
from models.data.jagged import JaggedBatch, offsets_from_lengths
from models.data.schema import Dataset, EventTable
from models.data.shape import measure_shape
from models.data.splits import VALID, Split, protocol_split
from models.protocols import (
    EvalTask,
    _context,
    leave_last_out_task,
    next_session_task,
    user_history,
)


@dataclass
class PipelinePeriods:
    """fit: rows [E] bool of the fit period; ranker: requests to train/validate the ranker, with the
    funnel level of every target (ranker_levels [U, T], 0 where masked); test: the scored requests."""

    protocol: str
    fit: np.ndarray
    ranker: EvalTask
    ranker_levels: np.ndarray
    ranker_target_rows: np.ndarray  # [R] event rows of the ranker targets (the encoder's validation)
    test: EvalTask
    exclude_seen: bool = True  # history items are excluded from every request's answer
    # [E] bool: what the sources are refitted on (and the encoder continues on) before the test: the fit
    # and ranker periods together, everything before the test targets; None = the fit period only
    refit: np.ndarray | None = None
    # next-session with earlier windows: per window, oldest first, its requests (ranker rows [R_w]) and the
    # events its sources are fitted on [E] bool (models.recipe.period_fits); None = one group on ``fit``
    ranker_fits: list[tuple[np.ndarray, np.ndarray]] | None = None

    def fit_events(self, dataset: Dataset) -> EventTable:
        return dataset.events.take(self.fit)

    def refit_events(self, dataset: Dataset) -> EventTable:
        return dataset.events.take(self.fit if self.refit is None else self.refit)


def _stack_tasks(tasks: list[EvalTask]) -> EvalTask:
    """Concatenates tasks of one protocol (targets padded to the widest)."""
    width = max(task.targets.shape[1] for task in tasks)

    def pad(array: np.ndarray, fill: int | bool) -> np.ndarray:
        out = np.full((array.shape[0], width), fill, dtype=array.dtype)
        out[:, : array.shape[1]] = array
        return out

    values = [task.exclude.columns["item"] for task in tasks]
    lengths = np.concatenate([task.exclude.lengths for task in tasks])
    return EvalTask(
        protocol=tasks[0].protocol,
        users=np.concatenate([task.users for task in tasks]),
        histories=[h for task in tasks for h in task.histories],
        contexts=[c for task in tasks for c in task.contexts],
        targets=np.concatenate([pad(task.targets, 0) for task in tasks]),
        target_mask=np.concatenate([pad(task.target_mask, False) for task in tasks]),
        exclude=JaggedBatch({"item": np.concatenate(values)}, offsets_from_lengths(lengths)),
        ks=tasks[0].ks,
    )


def empty_task(protocol: str, ks: tuple[int, ...] = (10, 50)) -> EvalTask:
    """A task without requests (targets [0, 1])."""
    return EvalTask(
        protocol=protocol,
        users=np.zeros(0, np.int64),
        histories=[],
        contexts=[],
        targets=np.zeros((0, 1), np.int64),
        target_mask=np.zeros((0, 1), bool),
        exclude=JaggedBatch({"item": np.zeros(0, np.int64)}, offsets_from_lengths(np.zeros(0, np.int64))),
        ks=ks,
    )


def _positions_among(
    mask: np.ndarray, offsets: np.ndarray, user: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For rows of a user-sorted table: how many ``mask`` rows of the same user come before each row and
    after it. mask [E] bool, offsets [U + 1], user [E] -> (before [E], after [E]) int64."""
    counted = np.r_[0, np.cumsum(mask)]
    rows = np.arange(len(mask))
    before = counted[rows] - counted[offsets[user]]
    after = counted[offsets[user + 1]] - counted[rows + 1]
    return before, after


ANONYMOUS_RANKER_USERS = 0.2  # share of single-session users whose last events form the ranker period


def _ranker_pool(dataset: Dataset, split: Split, user_share: float) -> np.ndarray:
    """[E] rows ranker requests may be taken from: the rows labelled valid when the user supplied some;
    else the trainable rows of every user (``user_share`` 1) or of a fixed random share of the users (the
    others are fitted whole: on anonymous sessions a session's last events are most of it)."""
    labels = dataset.event_split
    if labels is not None and np.any(labels == VALID):
        return labels == VALID
    if user_share >= 1.0:
        return split.trainable
    users = np.unique(dataset.events.user)
    chosen = np.random.default_rng(0).choice(
        users, size=max(1, round(user_share * len(users))), replace=False
    )
    return split.trainable & np.isin(dataset.events.user, chosen)


RANKER_REQUESTS = 20_000  # leave-last-out: the ranker period aims at about this many requests ...
RANKER_POSITIONS = (20, 30)  # ... with this many targets per user at least and at most


def leave_last_out_positions(users: int) -> int:
    """Ranker-period targets per user on leave-last-out when the settings name none: 20 where a log has
    1,000 users or more; a smaller log takes more of each user's last events (up to 30) so that the
    ranker trains on, and the gate judges, about ``RANKER_REQUESTS`` requests (ML-100K, 943 users: 22).
    With 10 the GBDT of ML-100K trained on ~5,400 requests, stopped after 21-98 rounds on validation
    noise and left the gate 1,880 requests, too few to pass a +2.6% gain; ML-1M's (2,998 users) gained
    more from 20 than the encoder lost (docs/pipeline.md, "Periods of the replay")."""
    low, high = RANKER_POSITIONS
    return int(np.clip(-(-RANKER_REQUESTS // max(users, 1)), low, high))


def leave_last_out_periods(
    dataset: Dataset,
    ranker_events: int | None = 3,
    max_history: int = 200,
    exclude_seen: bool = True,
    ranker_user_share: float = 1.0,
) -> PipelinePeriods:
    events = dataset.events
    split = protocol_split(events, "leave-last-out", dataset.event_split)
    pool = _ranker_pool(dataset, split, ranker_user_share)
    offsets = events.user_offsets(dataset.num_users)
    if ranker_events is None:
        ranker_events = leave_last_out_positions(len(np.unique(events.user[pool])))
    before, after = _positions_among(pool, offsets, events.user.astype(np.int64))
    has_earlier = np.r_[False, events.user[1:] == events.user[:-1]]
    # at most half of a user's pool events are ranker targets: the rest stays in the fit period (the
    # encoder's and the oldest position's data), however many positions a small log asks for
    ranker_rows = pool & (after < ranker_events) & (before >= after) & has_earlier
    tasks, rows = [], []
    for position in range(ranker_events):
        target = ranker_rows & (after == position)
        if target.any():
            fake = Split("leave-last-out", ~target, np.zeros_like(target), target)
            tasks.append(leave_last_out_task(dataset, fake, max_history, exclude_seen=exclude_seen))
            rows.append(np.flatnonzero(target))
    ranker = _stack_tasks(tasks) if tasks else empty_task("leave-last-out")
    target_rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    levels = dataset.funnel.levels(events.action[target_rows], events.value[target_rows]).astype(np.int64)
    return PipelinePeriods(
        "leave-last-out",
        split.trainable & ~ranker_rows,
        ranker,
        levels[:, None],
        target_rows,
        leave_last_out_task(dataset, split, max_history, exclude_seen=exclude_seen),
        exclude_seen,
        split.trainable,
    )


NEXT_SESSION_WINDOWS = 2  # next-session: earlier windows of ranker requests when the settings name none


@dataclass
class _SessionRequests:
    """Ranker requests gathered window by window: one entry per request."""

    users: list[int]
    histories: list[Any]
    contexts: list[Any]
    targets: list[np.ndarray]  # distinct items in order of first appearance
    levels: list[np.ndarray]  # each target's strongest funnel level
    rows: list[np.ndarray]  # the target events' rows

    def add(self, dataset: Dataset, window: np.ndarray, ranker_events: int, max_history: int) -> None:
        """Per user, the first ``ranker_events`` sessions that start inside ``window`` [E] bool after the
        user's first event; a session's targets are its events inside the window."""
        events = dataset.events
        offsets = events.user_offsets(dataset.num_users)
        for user in np.flatnonzero(np.diff(offsets)).tolist():
            lo, hi = int(offsets[user]), int(offsets[user + 1])
            sessions, inside_window = events.session[lo:hi], window[lo:hi]
            starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
            inside = starts[inside_window[starts] & (starts > 0)]
            for start in inside[:ranker_events].tolist():
                same = (sessions[start:] == sessions[start]) & inside_window[start:]
                rows = lo + start + np.flatnonzero(same)
                items = events.item[rows].astype(np.int64)
                item_levels = dataset.funnel.levels(events.action[rows], events.value[rows]).astype(np.int64)
                distinct, first = np.unique(items, return_index=True)
                best = np.zeros(len(distinct), dtype=np.int64)
                np.maximum.at(best, np.searchsorted(distinct, items), item_levels)
                order = np.argsort(first)
                self.users.append(user)
                self.histories.append(
                    user_history(dataset, user, max(lo, lo + start - max_history), lo + start)
                )
                self.contexts.append(_context(events, lo + start))
                self.targets.append(distinct[order])
                self.levels.append(best[order])
                self.rows.append(rows)


def ranker_windows_of(
    split: Split, timestamp: np.ndarray, windows: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ranker period's windows, oldest first, each as ([E] bool window, [E] bool fit): the validation
    period, fitted on the training period, and before it ``windows`` windows of the training period as long
    as the validation period's time range, each fitted on the training events before it (a window that
    holds no training event is dropped)."""
    if not split.valid.any():
        return [(split.valid, split.train)]
    start = int(timestamp[split.valid].min())
    length = max(int(timestamp[split.valid].max()) - start + 1, 1)
    out = [(split.valid, split.train)]
    for k in range(1, windows + 1):
        lo = start - k * length
        window = split.train & (timestamp >= lo) & (timestamp < lo + length)
        if window.any():
            out.insert(0, (window, split.train & (timestamp < lo)))
    return out


def next_session_periods(
    dataset: Dataset,
    ranker_events: int = 4,
    max_history: int = 200,
    exclude_seen: bool = False,
    windows: int = 0,
) -> PipelinePeriods:
    """Ranker requests from the validation period and ``windows`` earlier windows of the same length
    (``ranker_windows_of``); each window's requests are served from a fit on the training events before
    it (the validation window's: the whole training period), and the fit period, which the encoder trains
    on, ends where the oldest window starts (``PipelinePeriods.ranker_fits``)."""
    events = dataset.events
    split = protocol_split(events, "next-session", dataset.event_split)
    parts = ranker_windows_of(split, events.timestamp, windows)
    found = _SessionRequests([], [], [], [], [], [])
    groups: list[tuple[np.ndarray, np.ndarray]] = []
    for window, fit in parts:
        first = len(found.users)
        found.add(dataset, window, ranker_events, max_history)
        groups.append((np.arange(first, len(found.users), dtype=np.int64), fit))
    users, histories, targets = found.users, found.histories, found.targets
    width = max((len(t) for t in targets), default=1)
    target_array = np.zeros((len(users), width), dtype=np.int64)
    level_array = np.zeros((len(users), width), dtype=np.int64)
    mask = np.zeros((len(users), width), dtype=bool)
    for row, (items, item_levels) in enumerate(zip(targets, found.levels, strict=True)):
        target_array[row, : len(items)] = items
        level_array[row, : len(items)] = item_levels
        mask[row, : len(items)] = True
    seen = [np.unique(h.item) if exclude_seen else np.zeros(0, np.int64) for h in histories]
    ranker = EvalTask(
        protocol="next-session",
        users=np.asarray(users, dtype=np.int64),
        histories=histories,
        contexts=found.contexts,
        targets=target_array,
        target_mask=mask,
        exclude=JaggedBatch(
            {"item": np.concatenate([*seen, np.zeros(0, np.int64)])},
            offsets_from_lengths(np.array([len(x) for x in seen], dtype=np.int64)),
        ),
        ks=(10, 50),
    )
    test = next_session_task(dataset, split, max_history, exclude_seen)
    rows = np.concatenate(found.rows) if found.rows else np.zeros(0, np.int64)
    return PipelinePeriods(
        "next-session",
        groups[0][1],
        ranker,
        level_array,
        rows,
        test,
        exclude_seen,
        split.trainable,
        groups if len(groups) > 1 else None,
    )


def pipeline_periods(
    dataset: Dataset,
    protocol: str,
    ranker_events: int | None = None,
    exclude_seen: bool | None = None,
    ranker_windows: int | None = None,
) -> PipelinePeriods:
    """``exclude_seen`` None: the protocol's own rule (leave-last-out excludes the history, next-session
    does not); ``ranker_windows`` (next-session): windows before the validation period that give ranker
    requests too, None: ``NEXT_SESSION_WINDOWS``. Leave-last-out on a log of mostly one session per user
    takes its ranker requests from ``ANONYMOUS_RANKER_USERS`` of the users, so the fit period keeps whole
    sessions."""
    if protocol == "leave-last-out":
        exclude = True if exclude_seen is None else exclude_seen
        anonymous = measure_shape(dataset.events).single_session_share >= SINGLE_SESSION_MAJORITY
        share = ANONYMOUS_RANKER_USERS if anonymous else 1.0
        return leave_last_out_periods(dataset, ranker_events, exclude_seen=exclude, ranker_user_share=share)
    if protocol == "next-session":
        exclude = False if exclude_seen is None else exclude_seen
        windows = NEXT_SESSION_WINDOWS if ranker_windows is None else ranker_windows
        return next_session_periods(dataset, ranker_events or 4, exclude_seen=exclude, windows=windows)
    raise ValueError(f"unknown protocol {protocol!r}")
