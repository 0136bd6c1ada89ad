"""Train / validation / test splits of an event table: global time split and leave-last-out."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from models.data.schema import EventTable


@dataclass
class Split:
    """Boolean masks [E] over the rows of one EventTable; every row is in exactly one part."""

    kind: str  # "time" or "leave-last-out"
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_start: int | None = None  # time split: first second of validation
    test_start: int | None = None  # time split: first second of test

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name).sum()) for name in ("train", "valid", "test")}


def time_split(events: EventTable, test_fraction: float = 0.1, valid_fraction: float = 0.1) -> Split:
    """Global cut by time (models.md 6.1 Protocol B): the last ``test_fraction`` of the time range is test,
    the ``valid_fraction`` before it validation, everything earlier train. No test event is earlier than
    any train or validation event."""
    if not (0 < test_fraction < 1 and 0 <= valid_fraction < 1 and test_fraction + valid_fraction < 1):
        raise ValueError(f"bad fractions: test {test_fraction}, valid {valid_fraction}")
    if len(events) == 0:
        raise ValueError("cannot split an empty event table")
    lo, hi = int(events.timestamp.min()), int(events.timestamp.max())
    span = hi - lo
    test_start = lo + math.ceil((1 - test_fraction) * span)
    valid_start = lo + math.ceil((1 - test_fraction - valid_fraction) * span)
    ts = events.timestamp
    test = ts >= test_start
    valid = (ts >= valid_start) & ~test
    return Split("time", ~(test | valid), valid, test, valid_start, test_start)


def leave_last_out(events: EventTable) -> Split:
    """Per user (rows already sorted by timestamp, then original order): the last event is test when the
    user has >= 2 events, the second-to-last is validation when they have >= 3 (models.md 2.5/6.1)."""
    if len(events) and np.any(np.diff(events.user) < 0):
        raise ValueError("events must be sorted by user")
    num_users = int(events.user.max()) + 1 if len(events) else 0
    offsets = events.user_offsets(num_users)
    run_length = np.diff(offsets)[events.user]
    position_from_end = offsets[events.user + 1] - 1 - np.arange(len(events))
    test = (position_from_end == 0) & (run_length >= 2)
    valid = (position_from_end == 1) & (run_length >= 3)
    return Split("leave-last-out", ~(test | valid), valid, test)
