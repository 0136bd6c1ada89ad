"""Leave-one-out next-item validation used inside training (early stopping, curves).

For each user: history = events before the target, query = a request at the target's time (scene/device
of the target event), full ranking over the catalogue excluding the history window's items (models.md 2.5).
The shared harness in ``models.evaluate`` produces the reported numbers; this in-training monitor uses its
metric module, so a validation number means what a test number means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models.data.schema import FIRST_REAL_ID
from models.encoder.model import RetrievalEncoder
from models.encoder.serving import encode_histories
from models.metrics import ranking_metrics
from models.metrics import target_ranks as shared_target_ranks
from models.types import RequestContext, UserHistory


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
    """1-based rank of each target among all real items. [B] int64.

    Computed exactly as the reported test numbers are (``models.metrics``): the items of the last
    ``exclude_window`` history events are excluded *whatever the target is* (0 = exclude nothing, as the
    next-session protocol does), and ties rank the target below every equal score."""
    users = torch.as_tensor(
        encode_histories(model, item_category, cases.histories, cases.contexts, batch_size)
    )
    with torch.inference_mode():
        items = model.item_vectors()
    ranks = np.zeros(len(cases.targets), dtype=np.int64)
    for start in range(0, len(users), batch_size):
        scores = (users[start : start + batch_size] @ items.T).numpy().astype(np.float32)  # [b, I]
        scores[:, :FIRST_REAL_ID] = -np.inf
        if exclude_window > 0:
            for offset, history in enumerate(cases.histories[start : start + batch_size]):
                scores[offset, history.item[-exclude_window:]] = -np.inf
        targets = cases.targets[start : start + len(scores), None]
        found = shared_target_ranks(scores, targets, np.ones_like(targets, dtype=bool))
        ranks[start : start + len(scores)] = found[:, 0]
    return ranks


def rank_metrics(ranks: np.ndarray, cutoffs: tuple[int, ...] = (10, 50, 200)) -> dict[str, float]:
    """HR@K, NDCG@K (single target) and MRR from 1-based ranks (the shared metric definitions)."""
    if len(ranks) == 0:
        return {**{f"{m}@{k}": 0.0 for k in cutoffs for m in ("HR", "NDCG")}, "MRR": 0.0}
    per_row = ranking_metrics(ranks[:, None], np.ones((len(ranks), 1), dtype=bool), cutoffs)
    names = [f"{m}@{k}" for k in cutoffs for m in ("HR", "NDCG")] + ["MRR"]
    return {name: float(per_row[name].mean()) for name in names}
