"""Evaluation protocols: which requests are scored, against which targets, with which items excluded.

- ``leave-last-out`` (models.md 2.5 / 6.1 Protocol A): target = each user's last event (the split's test
  rows); history = up to ``max_history`` (200) events before it; rank all items except the ids in that
  history window (unless ``exclude_seen`` is off: logs where users re-visit items).
- ``next-session`` (models.md 6.1 Protocol B / 6.2, on the time split): for each warm user (>= 1 event before
  their first test row and >= 1 test row), targets = the distinct test items of the session that starts
  there; history = the last ``max_history`` events before it; nothing excluded unless ``exclude_seen``.

Both read the split's masks only, so a split the user supplied (``models.data.splits.protocol_split``)
works like a computed one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from models.data.histories import history_from_rows
from models.data.jagged import JaggedBatch, offsets_from_lengths
from models.data.schema import Dataset, EventTable
from models.data.splits import Split
from models.metrics import ranking_metrics, target_ranks
from models.scorer import Scorer
from models.types import RequestContext, UserHistory

PROTOCOLS = ("leave-last-out", "next-session")
LEAVE_LAST_OUT_KS = (10, 50, 200)
MAX_SCORE_CELLS = 32_000_000  # [B, num_items] float32 cells per scored batch (128 MB)
NEXT_SESSION_KS = (10, 20, 50, 100, 200)
REPORTED_METRICS = {
    "leave-last-out": ("HR@10", "NDCG@10", "HR@50", "NDCG@50", "HR@200", "NDCG@200", "MRR"),
    "next-session": (
        "Recall@20",
        "Recall@50",
        "Recall@100",
        "Recall@200",
        "NDCG@20",
        "NDCG@100",
        "HR@50",
        "MRR",
    ),
}


@dataclass
class EvalTask:
    """U requests: histories/contexts [U], targets [U, T] with mask, items to exclude per request."""

    protocol: str
    users: np.ndarray
    histories: list[UserHistory]
    contexts: list[RequestContext]
    targets: np.ndarray
    target_mask: np.ndarray
    exclude: JaggedBatch  # column "item", one row per request
    ks: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.users)


def user_history(dataset: Dataset, user: int, start: int, stop: int) -> UserHistory:
    """Rows start:stop of the (user-sorted) event table as a serving-style history."""
    return history_from_rows(dataset.events, slice(start, stop), dataset.user_features, user)


def _context(events: EventTable, row: int) -> RequestContext:
    return RequestContext(
        timestamp=int(events.timestamp[row]), scene=int(events.scene[row]), device=int(events.device[row])
    )


def _sample(users: np.ndarray, max_users: int | None, seed: int) -> np.ndarray:
    if max_users is None or len(users) <= max_users:
        return np.arange(len(users))
    return np.sort(np.random.default_rng(seed).choice(len(users), max_users, replace=False))


def leave_last_out_task(
    dataset: Dataset,
    split: Split,
    max_history: int = 200,
    max_users: int | None = None,
    seed: int = 0,
    exclude_seen: bool = True,
) -> EvalTask:
    events = dataset.events
    test_rows = np.flatnonzero(split.test)
    test_rows = test_rows[_sample(test_rows, max_users, seed)]
    offsets = events.user_offsets(dataset.num_users)
    histories, contexts, excluded = [], [], []
    for row in test_rows.tolist():
        user = int(events.user[row])
        start = max(int(offsets[user]), row - max_history)
        history = user_history(dataset, user, start, row)
        histories.append(history)
        contexts.append(_context(events, row))
        excluded.append(np.unique(history.item) if exclude_seen else np.zeros(0, np.int64))
    lengths = np.array([len(x) for x in excluded], dtype=np.int64)
    values = np.concatenate(excluded) if excluded else np.zeros(0, np.int64)
    return EvalTask(
        protocol="leave-last-out",
        users=events.user[test_rows].astype(np.int64),
        histories=histories,
        contexts=contexts,
        targets=events.item[test_rows].astype(np.int64)[:, None],
        target_mask=np.ones((len(test_rows), 1), dtype=bool),
        exclude=JaggedBatch({"item": values}, offsets_from_lengths(lengths)),
        ks=LEAVE_LAST_OUT_KS,
    )


def next_session_task(
    dataset: Dataset,
    split: Split,
    max_history: int = 200,
    exclude_seen: bool = False,
    max_users: int | None = None,
    seed: int = 0,
) -> EvalTask:
    if split.kind not in ("time", "supplied-time"):
        raise ValueError(f"next-session evaluation needs a time split, not {split.kind}")
    events = dataset.events
    offsets = events.user_offsets(dataset.num_users)
    users, histories, contexts, targets, excluded = [], [], [], [], []
    for user in np.flatnonzero(np.diff(offsets)).tolist():
        lo, hi = int(offsets[user]), int(offsets[user + 1])
        held_out = np.flatnonzero(split.test[lo:hi])
        if len(held_out) == 0 or held_out[0] == 0:
            continue  # no test events, or cold (nothing before the first one)
        cut = lo + int(held_out[0])
        in_session = (events.session[cut:hi] == events.session[cut]) & split.test[cut:hi]
        session_rows = cut + np.flatnonzero(in_session)
        items = events.item[session_rows].astype(np.int64)
        _, first = np.unique(items, return_index=True)
        history = user_history(dataset, user, max(lo, cut - max_history), cut)
        users.append(user)
        histories.append(history)
        contexts.append(_context(events, cut))
        targets.append(items[np.sort(first)])
        excluded.append(np.unique(history.item) if exclude_seen else np.zeros(0, np.int64))
    keep = _sample(np.array(users), max_users, seed)
    width = max((len(targets[i]) for i in keep), default=1)
    target_array = np.zeros((len(keep), width), dtype=np.int64)
    mask = np.zeros((len(keep), width), dtype=bool)
    for out_row, i in enumerate(keep.tolist()):
        target_array[out_row, : len(targets[i])] = targets[i]
        mask[out_row, : len(targets[i])] = True
    lengths = np.array([len(excluded[i]) for i in keep], dtype=np.int64)
    values = np.concatenate([excluded[i] for i in keep] + [np.zeros(0, np.int64)])
    return EvalTask(
        protocol="next-session",
        users=np.array(users, dtype=np.int64)[keep],
        histories=[histories[i] for i in keep],
        contexts=[contexts[i] for i in keep],
        targets=target_array,
        target_mask=mask,
        exclude=JaggedBatch({"item": values}, offsets_from_lengths(lengths)),
        ks=NEXT_SESSION_KS,
    )


def evaluate(
    scorer: Scorer, task: EvalTask, num_items: int, batch_size: int = 256, progress: bool = True
) -> dict[str, np.ndarray]:
    """Scores every request of ``task``; returns metric name -> [U] per-request values. The batch shrinks
    for big catalogues so one score matrix stays near ``MAX_SCORE_CELLS`` floats."""
    batch_size = max(1, min(batch_size, MAX_SCORE_CELLS // max(num_items, 1)))
    parts: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, len(task), batch_size), desc=f"eval {task.protocol}", disable=not progress):
        stop = min(start + batch_size, len(task))
        scores = np.array(
            scorer.score_users(task.histories[start:stop], task.contexts[start:stop]), np.float32
        )
        if scores.shape != (stop - start, num_items):
            raise ValueError(f"scorer returned shape {scores.shape}, expected {(stop - start, num_items)}")
        scores[:, :2] = -np.inf  # pad and unknown are never recommendations
        excluded = task.exclude.take(np.arange(start, stop))
        rows = np.repeat(np.arange(stop - start), excluded.lengths)
        scores[rows, excluded.columns["item"]] = -np.inf
        ranks = target_ranks(scores, task.targets[start:stop], task.target_mask[start:stop])
        for name, values in ranking_metrics(ranks, task.target_mask[start:stop], task.ks).items():
            parts.setdefault(name, []).append(values)
    return {name: np.concatenate(values) for name, values in parts.items()}
