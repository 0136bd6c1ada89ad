"""Rows of the event table as a serving-style ``UserHistory`` (one conversion for every caller)."""

from __future__ import annotations

import numpy as np

from models.data.schema import EventTable
from models.inference import UserHistory


def history_from_rows(
    events: EventTable, rows: slice | np.ndarray, user_features: dict[str, np.ndarray], user: int
) -> UserHistory:
    """events[rows] (one user's events, oldest first) -> UserHistory, with that user's static features
    read from ``user_features`` (name -> [num_users] index column)."""
    return UserHistory(
        item=events.item[rows].astype(np.int64),
        action=events.action[rows].astype(np.int64),
        value=events.value[rows].astype(np.float32),
        timestamp=events.timestamp[rows].astype(np.int64),
        scene=events.scene[rows].astype(np.int64),
        device=events.device[rows].astype(np.int64),
        user_features={name: int(column[user]) for name, column in user_features.items()},
    )
