"""Event times as read (integers or decimals, in s, ms or us) -> whole seconds, the unit the event table
stores, with a note on what was done when anything was rounded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNIT_DIVISORS = {"s": 1, "ms": 1000, "us": 1_000_000}


@dataclass(frozen=True)
class WholeSeconds:
    """seconds [E] int64 (floored); order [E] int64: the rows' rank by exact time, ties in row order (the
    sort's tie-break, so events inside one second keep their true order); note: what was rounded, or None."""

    seconds: np.ndarray
    order: np.ndarray
    note: str | None


def whole_seconds(values: np.ndarray, unit: str, row_order: np.ndarray) -> WholeSeconds:
    """values [E] int64 or float64 timestamps in ``unit``; row_order [E]: the rows' original order."""
    if unit not in UNIT_DIVISORS:
        raise ValueError(f"timestamp unit must be one of {sorted(UNIT_DIVISORS)}, got '{unit}'")
    divisor = UNIT_DIVISORS[unit]
    if values.dtype.kind == "f" and np.all(values == np.floor(values)) and np.all(np.abs(values) < 2**53):
        values = values.astype(np.int64)  # decimals without a fraction ("1600000000.0"): exact integers
    if values.dtype.kind == "f":
        seconds = np.floor(values / divisor).astype(np.int64)
        rounded = values != seconds * divisor
    else:
        seconds = values.astype(np.int64) // divisor
        rounded = values % divisor != 0
    if not rounded.any():
        return WholeSeconds(seconds, row_order, None)
    exact = np.lexsort((row_order, values))
    order = np.empty(len(values), dtype=np.int64)
    order[exact] = np.arange(len(values))
    example = values[np.flatnonzero(rounded)[0]]
    note = (
        f"timestamp: {int(rounded.sum()):,} of {len(values):,} values in {unit} had a fraction of a second "
        f"(first: {example}); floored to whole seconds, the stored unit; events inside one second keep "
        "their exact order"
    )
    return WholeSeconds(seconds, order, note)
