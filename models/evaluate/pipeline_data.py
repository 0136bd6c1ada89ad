"""The periods of a served-pipeline replay: what the bundle is fitted on, what the ranker learns from,
what is tested. Nothing a test request asks about is inside the fit or ranker periods.

- leave-last-out: per user, position p from the end (0 = last). p = 0 is the test target (its history is
  everything before it); p = 1..``ranker_events`` are ranker requests (one target each, history = every
  earlier event); the rest is the fit period (sources, encoder). Items in the history are excluded, as the
  protocol rules.
- next-session: the time split. Events before the validation start are the fit period; sessions that
  start in the validation period (targets cut at the test start) are ranker requests, up to
  ``ranker_events`` per user; the first test-period session of every warm user is a test request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.jagged import JaggedBatch, offsets_from_lengths
from models.data.schema import Dataset, EventTable
from models.data.splits import Split, leave_last_out, time_split
from models.evaluate.protocols import (
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

    def fit_events(self, dataset: Dataset) -> EventTable:
        return dataset.events.take(self.fit)


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


def leave_last_out_periods(
    dataset: Dataset, ranker_events: int = 3, max_history: int = 200
) -> PipelinePeriods:
    events = dataset.events
    split = leave_last_out(events)
    offsets = events.user_offsets(dataset.num_users)
    run_length = np.diff(offsets)[events.user]
    position = offsets[events.user + 1] - 1 - np.arange(len(events))  # 0 = the user's last event
    ranker_rows = (position >= 1) & (position <= ranker_events) & (position + 1 < run_length)
    tasks, rows = [], []
    for p in range(1, ranker_events + 1):
        target = ranker_rows & (position == p)
        if target.any():
            fake = Split("leave-last-out", ~target, np.zeros_like(target), target)
            tasks.append(leave_last_out_task(dataset, fake, max_history))
            rows.append(np.flatnonzero(target))
    if not tasks:
        raise ValueError(f"{dataset.name}: no user has enough events for ranker requests")
    ranker = _stack_tasks(tasks)
    target_rows = np.concatenate(rows)
    levels = dataset.funnel.levels(events.action[target_rows], events.value[target_rows]).astype(np.int64)
    fit = ~(split.test | ranker_rows)
    return PipelinePeriods(
        "leave-last-out",
        fit,
        ranker,
        levels[:, None],
        target_rows,
        leave_last_out_task(dataset, split, max_history),
    )


def next_session_periods(dataset: Dataset, ranker_events: int = 4, max_history: int = 200) -> PipelinePeriods:
    events = dataset.events
    split = time_split(events)
    assert split.valid_start is not None and split.test_start is not None
    offsets = events.user_offsets(dataset.num_users)
    users, histories, contexts, targets, levels, target_rows = [], [], [], [], [], []
    for user in np.flatnonzero(np.diff(offsets)).tolist():
        lo, hi = int(offsets[user]), int(offsets[user + 1])
        stamps, sessions = events.timestamp[lo:hi], events.session[lo:hi]
        starts = np.flatnonzero(np.r_[True, sessions[1:] != sessions[:-1]])
        inside = starts[
            (stamps[starts] >= split.valid_start) & (stamps[starts] < split.test_start) & (starts > 0)
        ]
        for start in inside[:ranker_events].tolist():
            rows = (
                lo
                + start
                + np.flatnonzero((sessions[start:] == sessions[start]) & (stamps[start:] < split.test_start))
            )
            items = events.item[rows].astype(np.int64)
            item_levels = dataset.funnel.levels(events.action[rows], events.value[rows]).astype(np.int64)
            distinct, first = np.unique(items, return_index=True)
            best = np.zeros(len(distinct), dtype=np.int64)
            np.maximum.at(best, np.searchsorted(distinct, items), item_levels)
            order = np.argsort(first)
            users.append(user)
            histories.append(user_history(dataset, user, max(lo, lo + start - max_history), lo + start))
            contexts.append(_context(events, lo + start))
            targets.append(distinct[order])
            levels.append(best[order])
            target_rows.append(rows)
    if not users:
        raise ValueError(f"{dataset.name}: no session starts in the validation period with history before it")
    width = max(len(t) for t in targets)
    target_array = np.zeros((len(users), width), dtype=np.int64)
    level_array = np.zeros((len(users), width), dtype=np.int64)
    mask = np.zeros((len(users), width), dtype=bool)
    for row, (items, item_levels) in enumerate(zip(targets, levels, strict=True)):
        target_array[row, : len(items)] = items
        level_array[row, : len(items)] = item_levels
        mask[row, : len(items)] = True
    ranker = EvalTask(
        protocol="next-session",
        users=np.asarray(users, dtype=np.int64),
        histories=histories,
        contexts=contexts,
        targets=target_array,
        target_mask=mask,
        exclude=JaggedBatch(
            {"item": np.zeros(0, np.int64)}, offsets_from_lengths(np.zeros(len(users), np.int64))
        ),
        ks=(10, 50),
    )
    fit = events.timestamp < split.valid_start
    test = next_session_task(dataset, split, max_history)
    return PipelinePeriods("next-session", fit, ranker, level_array, np.concatenate(target_rows), test)


def pipeline_periods(dataset: Dataset, protocol: str, ranker_events: int | None = None) -> PipelinePeriods:
    if protocol == "leave-last-out":
        return leave_last_out_periods(dataset, ranker_events or 10)
    if protocol == "next-session":
        return next_session_periods(dataset, ranker_events or 4)
    raise ValueError(f"unknown protocol {protocol!r}")
