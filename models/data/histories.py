"""Rows of the event table as a serving-style ``UserHistory`` (one conversion for every caller)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.data.schema import EventTable
from models.types import UserHistory


def history_from_rows(
    events: EventTable | Mapping[str, np.ndarray],
    rows: slice | np.ndarray,
    user_features: Mapping[str, np.ndarray] | None = None,
    user: int = 0,
) -> UserHistory:
    """events[rows] (one user's events, oldest first; an EventTable or its columns by name) ->
    UserHistory, with that user's static features read from ``user_features`` (name -> [num_users])."""
    columns = events if isinstance(events, Mapping) else vars(events)
    return UserHistory(
        item=columns["item"][rows].astype(np.int64),
        action=columns["action"][rows].astype(np.int64),
        value=columns["value"][rows].astype(np.float32),
        timestamp=columns["timestamp"][rows].astype(np.int64),
        scene=columns["scene"][rows].astype(np.int64),
        device=columns["device"][rows].astype(np.int64),
        user_features={name: int(column[user]) for name, column in (user_features or {}).items()},
    )
