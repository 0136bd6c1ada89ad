"""Sessionisation: cut each user's time-ordered events into sessions by inactivity gap and maximum length."""

from __future__ import annotations

import numpy as np

DEFAULT_SESSION_GAP_SECONDS = 30 * 60
DEFAULT_MAX_SESSION_ITEMS = 20  # models.md 1.7: longer sittings are cut into consecutive chunks of 20


def sessionise(
    user: np.ndarray,
    timestamp: np.ndarray,
    gap_seconds: int = DEFAULT_SESSION_GAP_SECONDS,
    max_items: int = DEFAULT_MAX_SESSION_ITEMS,
) -> np.ndarray:
    """Per-user session numbers 1, 2, ... in time order.

    user, timestamp: [E], sorted by (user, timestamp). A new session starts at a user's first event, after a
    gap strictly longer than ``gap_seconds`` (equal timestamps never split), and every ``max_items`` events
    inside one gap-session. Returns [E] int32.
    """
    if gap_seconds < 0 or max_items < 1:
        raise ValueError(f"gap_seconds must be >= 0 and max_items >= 1, got {gap_seconds}, {max_items}")
    n = int(user.shape[0])
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    new_user = np.empty(n, dtype=bool)
    new_user[0] = True
    new_user[1:] = user[1:] != user[:-1]
    if np.any(~new_user[1:] & (np.diff(timestamp) < 0)):
        raise ValueError("events must be sorted by (user, timestamp) before sessionising")
    gap_start = new_user.copy()
    gap_start[1:] |= np.diff(timestamp) > gap_seconds
    index = np.arange(n)
    start_index = np.maximum.accumulate(np.where(gap_start, index, 0))
    chunk_start = (index - start_index) % max_items == 0  # true at every gap start too
    global_number = np.cumsum(chunk_start)
    first_of_user = np.maximum.accumulate(np.where(new_user, global_number, 0))
    return (global_number - first_of_user + 1).astype(np.int32)
