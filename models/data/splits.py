"""Train / validation / test splits of an event table: global time split and leave-last-out, computed or
taken from a split column the user supplied (``supplied_split``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.data.schema import EventTable


@dataclass
class Split:
    """Boolean masks [E] over the rows of one EventTable; every row is in at most one part. ``test`` rows
    are never trained on; a row in no part (a supplied split's test row that is not a leave-last-out
    target) is only history for the requests after it."""

    kind: str  # "time", "leave-last-out", "supplied-time" or "supplied-leave-last-out"
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    valid_start: int | None = None  # time split: first second of validation
    test_start: int | None = None  # time split: first second of test

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name).sum()) for name in ("train", "valid", "test")}

    @property
    def trainable(self) -> np.ndarray:
        """[E] rows a model may learn from: training rows and validation targets."""
        return self.train | self.valid


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


TRAIN, VALID, TEST = 0, 1, 2
SPLIT_LABELS: dict[str, int] = {
    **dict.fromkeys(("train", "training", "trn"), TRAIN),
    **dict.fromkeys(("valid", "validation", "val", "dev"), VALID),
    **dict.fromkeys(("test", "testing", "tst", "holdout"), TEST),
}


def split_codes(labels: Sequence[str] | np.ndarray) -> np.ndarray:
    """Split labels as a user writes them ("train", "Test", "validation", ...) -> [E] int8 codes TRAIN,
    VALID, TEST; -1 for a label that is none of ``SPLIT_LABELS`` (case and surrounding spaces ignored)."""
    return np.fromiter(
        (SPLIT_LABELS.get(str(label).strip().lower(), -1) for label in labels), np.int8, len(labels)
    )


def split_counts(codes: np.ndarray) -> dict[str, int]:
    """codes [E] -> {"train": n, "valid": n, "test": n}."""
    counts = np.bincount(codes.astype(np.int64), minlength=3)
    return {"train": int(counts[TRAIN]), "valid": int(counts[VALID]), "test": int(counts[TEST])}


def _last_per_user(user: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The last of ``rows`` (sorted row numbers) of every user. rows [R] -> [U'] (sorted)."""
    if len(rows) == 0:
        return rows
    users = user[rows]
    return rows[np.r_[users[1:] != users[:-1], True]]


def supplied_leave_last_out(events: EventTable, labels: np.ndarray) -> Split:
    """Leave-last-out inside a supplied split (labels [E]: TRAIN/VALID/TEST). Per user, the last row
    labelled test is the test target when the user has an earlier row; the last row labelled valid (or,
    when no row is, the last training row) with an earlier row is the validation target. The other test
    rows are history only (in no part)."""
    if len(events) and np.any(np.diff(events.user) < 0):
        raise ValueError("events must be sorted by user")
    n = len(events)
    has_earlier = np.r_[False, events.user[1:] == events.user[:-1]] if n else np.zeros(0, bool)

    def targets(mask: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        out[_last_per_user(events.user, np.flatnonzero(mask & has_earlier))] = True
        return out

    test = targets(labels == TEST)
    valid = targets(labels == VALID) if np.any(labels == VALID) else targets(labels == TRAIN)
    return Split("supplied-leave-last-out", (labels != TEST) & ~valid, valid, test)


def supplied_time_split(events: EventTable, labels: np.ndarray, valid_fraction: float = 0.1) -> Split:
    """Next-session periods from a supplied split (labels [E]): the test rows are held out; validation is
    the rows labelled valid, or, when none is, the last ``valid_fraction`` of the training rows' time
    range."""
    test = labels == TEST
    valid = labels == VALID
    training = labels == TRAIN
    if not valid.any() and training.any():
        stamps = events.timestamp[training]
        lo, hi = int(stamps.min()), int(stamps.max())
        valid = training & (events.timestamp >= lo + math.ceil((1 - valid_fraction) * (hi - lo)))
    return Split("supplied-time", ~(test | valid), valid, test)


def protocol_split(events: EventTable, protocol: str, labels: np.ndarray | None = None) -> Split:
    """The split a protocol scores on: from the supplied ``labels`` [E] when there are, else
    ``leave_last_out`` or ``time_split``."""
    if protocol not in ("leave-last-out", "next-session"):
        raise ValueError(f"unknown protocol {protocol!r}")
    if labels is None:
        return leave_last_out(events) if protocol == "leave-last-out" else time_split(events)
    if protocol == "leave-last-out":
        return supplied_leave_last_out(events, labels)
    return supplied_time_split(events, labels)
