"""Leave-one-out next-item validation used inside training (early stopping, curves).

For each user: history = events before the target, query = a request at the target's time (scene/device
of the target event), full ranking over the catalogue excluding the history window's items (models.md 2.5).
The shared harness in ``models.evaluate`` produces the reported numbers; this is the in-training monitor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.schema import FIRST_REAL_ID
from models.encoder.model import RetrievalEncoder
from models.encoder.serving import encode_histories
from models.inference import RequestContext, UserHistory


@dataclass
class NextItemCases:
    """B validation cases: a history and the one held-out item that follows it."""

    histories: list[UserHistory]
    targets: np.ndarray  # [B] item indices
    contexts: list[RequestContext]


def split_last(history: UserHistory) -> tuple[UserHistory, int, RequestContext]:
    """Hold out the last event of ``history``: (history before it, its item, the request at its time)."""
    n = len(history) - 1
    head = UserHistory(
        history.item[:n],
        history.action[:n],
        history.value[:n],
        history.timestamp[:n],
        history.scene[:n],
        history.device[:n],
        history.user_features,
    )
    context = RequestContext(
        timestamp=int(history.timestamp[n]), scene=int(history.scene[n]), device=int(history.device[n])
    )
    return head, int(history.item[n]), context


def leave_last_out_cases(histories: list[UserHistory]) -> NextItemCases:
    cases = [split_last(h) for h in histories if len(h) >= 2]
    return NextItemCases(
        [c[0] for c in cases], np.array([c[1] for c in cases], dtype=np.int64), [c[2] for c in cases]
    )


def target_ranks(
    model: RetrievalEncoder,
    item_category: np.ndarray,
    cases: NextItemCases,
    exclude_window: int,
    batch_size: int = 256,
) -> np.ndarray:
    """1-based rank of each target among all real items, history-window items excluded. [B] int64."""
    users = torch.as_tensor(
        encode_histories(model, item_category, cases.histories, cases.contexts, batch_size)
    )
    with torch.inference_mode():
        items = model.item_vectors()
    ranks = np.zeros(len(cases.targets), dtype=np.int64)
    for start in range(0, len(users), batch_size):
        scores = users[start : start + batch_size] @ items.T  # [b, I]
        scores[:, :FIRST_REAL_ID] = -torch.inf
        targets = torch.as_tensor(cases.targets[start : start + batch_size])
        rows = torch.arange(len(targets))
        target_scores = scores[rows, targets].clone()
        for offset, history in enumerate(cases.histories[start : start + batch_size]):
            window = history.item[-exclude_window:]
            scores[offset, torch.as_tensor(window[window != cases.targets[start + offset]])] = -torch.inf
        ranks[start : start + len(targets)] = ((scores > target_scores.unsqueeze(1)).sum(1) + 1).numpy()
    return ranks


def rank_metrics(ranks: np.ndarray, cutoffs: tuple[int, ...] = (10, 50, 200)) -> dict[str, float]:
    """HR@K, NDCG@K (single target) and MRR from 1-based ranks."""
    metrics: dict[str, float] = {}
    for k in cutoffs:
        hit = ranks <= k
        metrics[f"HR@{k}"] = float(hit.mean()) if len(ranks) else 0.0
        metrics[f"NDCG@{k}"] = (
            float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean()) if len(ranks) else 0.0
        )
    metrics["MRR"] = float((1.0 / ranks).mean()) if len(ranks) else 0.0
    return metrics
