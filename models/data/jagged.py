"""Jagged sequences as values + offsets (no padding until a kernel needs it), and length-bucketed batching.

Row ``b`` of a ``JaggedBatch`` is ``columns[name][offsets[b]:offsets[b + 1]]`` for every column.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from models.data.schema import EVENT_COLUMNS, EventTable


def offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    """[B] -> [B + 1] int64 CSR offsets."""
    return np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])


@dataclass
class JaggedBatch:
    """B variable-length rows sharing one layout. columns: name -> [N, ...]; offsets: [B + 1] int64."""

    columns: dict[str, np.ndarray]
    offsets: np.ndarray

    def __post_init__(self) -> None:
        total = int(self.offsets[-1]) if len(self.offsets) else 0
        for name, values in self.columns.items():
            if len(values) != total:
                raise ValueError(f"column '{name}' has {len(values)} values, offsets say {total}")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, b: int, name: str) -> np.ndarray:
        return self.columns[name][self.offsets[b] : self.offsets[b + 1]]

    def _gather(self, rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> JaggedBatch:
        new_offsets = offsets_from_lengths(lengths)
        index = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
        return JaggedBatch({k: v[index] for k, v in self.columns.items()}, new_offsets)

    def take(self, rows: np.ndarray) -> JaggedBatch:
        """Rows ``rows`` [B'] in that order (vectorised gather)."""
        rows = np.asarray(rows, dtype=np.int64)
        return self._gather(rows, self.offsets[rows], self.lengths[rows])

    def last(self, max_length: int) -> JaggedBatch:
        """Every row cut to its last ``max_length`` values (the most recent events)."""
        lengths = np.minimum(self.lengths, max_length)
        rows = np.arange(len(self))
        return self._gather(rows, self.offsets[1:] - lengths, lengths)

    def padded(
        self, name: str, max_length: int | None = None, pad_value: int | float = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Column ``name`` as a left-aligned [B, L] array and its [B, L] bool mask; rows longer than
        ``max_length`` keep their last values."""
        batch = self if max_length is None else self.last(max_length)
        lengths = batch.lengths
        width = int(lengths.max()) if len(lengths) else 0
        values = batch.columns[name]
        out = np.full((len(batch), width, *values.shape[1:]), pad_value, dtype=values.dtype)
        row = np.repeat(np.arange(len(batch)), lengths)
        col = np.arange(batch.offsets[-1]) - np.repeat(batch.offsets[:-1], lengths)
        out[row, col] = values
        mask = np.zeros((len(batch), width), dtype=bool)
        mask[row, col] = True
        return out, mask


def user_sequences(events: EventTable, num_users: int) -> JaggedBatch:
    """Every event column as one row per user index 0..num_users-1 (empty rows for users without events).
    ``events`` must be sorted by user, as prepared tables are."""
    if len(events) and np.any(np.diff(events.user) < 0):
        raise ValueError("events must be sorted by user")
    return JaggedBatch(
        {name: getattr(events, name) for name in EVENT_COLUMNS}, events.user_offsets(num_users)
    )


def length_bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    bucket_batches: int = 50,
    min_length: int = 1,
) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (less padding). Rows are shuffled, cut into pools of
    ``bucket_batches * batch_size``, sorted by length inside a pool, batched, and the batches shuffled.
    Rows shorter than ``min_length`` are left out. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(lengths >= min_length)
    if shuffle:
        rows = rng.permutation(rows)
    pool_size = batch_size * bucket_batches
    batches = []
    for start in range(0, len(rows), pool_size):
        pool = rows[start : start + pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches += [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
    order = rng.permutation(len(batches)) if shuffle else np.arange(len(batches))
    for b in order:
        yield batches[b]
