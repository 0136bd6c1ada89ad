"""An upper bound on next-session quality for the synthetic log, from the generator's own draws.

The generator picks a session's intent cluster from the previous session's (stay, step to a neighbour,
jump) and then draws every view independently: inside the intent cluster with a known popularity curve, or
from global popularity (``models.data.loaders.synthetic``). Given the intent of the user's last session
before the request, the chance that a view of the next session picks item i is therefore known exactly:

    p(i) = Σ_c P(next intent c | last intent) · [in-cluster share · P(i | c)] + global share · P_global(i)

Ranking by p(i) is the best any scorer of the history can do in expectation (it knows the last intent,
which a scorer can only infer, and nothing about the next session beyond it). No model sees this; the
pipeline report shows it as a ``ceiling`` row, so a ratio target can be read against what is attainable.
"""

from __future__ import annotations

import numpy as np

from models.data.builder import lookup
from models.data.loaders.synthetic import SyntheticConfig, SyntheticTruth, synthetic_truth
from models.data.schema import FIRST_REAL_ID, Dataset
from models.protocols import EvalTask
from models.recipe.lists import candidate_requests


def synthetic_ceiling_lists(dataset: Dataset, task: EvalTask, total: int) -> list[np.ndarray] | None:
    """Per request of ``task``, the ``total`` items with the highest p(i) (excluded items dropped), as
    item indices best first. None when ``dataset`` is not the synthetic generator's (no config saved);
    ValueError when its saved config no longer regenerates it."""
    saved = dataset.manifest.get("synthetic")
    if not saved:
        return None
    regenerated, truth = synthetic_truth(SyntheticConfig(**saved))
    if not np.array_equal(regenerated.events.timestamp, dataset.events.timestamp):
        raise ValueError(
            f"{dataset.name}: the generator no longer draws this log from its saved config (prepared by "
            "another version?); prepare it again for a ceiling"
        )
    return ceiling_lists(truth, dataset, task, total)


def ceiling_lists(truth: SyntheticTruth, dataset: Dataset, task: EvalTask, total: int) -> list[np.ndarray]:
    """``synthetic_ceiling_lists`` for a given truth (the generator's draws behind ``dataset``)."""
    item_index = _raw_item_index(dataset, truth.config.num_items)
    user_raw = np.asarray([int(dataset.user_raw_id[u]) for u in task.users.tolist()], dtype=np.int64)
    lists = []
    for row, request in enumerate(candidate_requests(task, None)):
        if len(request.history.timestamp) == 0:
            lists.append(np.zeros(0, dtype=np.int64))
            continue
        session = _last_session(truth, int(user_raw[row]), int(request.history.timestamp[-1]))
        probs = truth.view_probs(truth.next_intent_probs(int(truth.intent[session])))
        lists.append(_best(probs, item_index, request.exclude, total))
    return lists


def _best(probs: np.ndarray, item_index: np.ndarray, excluded: np.ndarray, total: int) -> np.ndarray:
    """The ``total`` best items by ``probs`` [I] (raw ids), as item indices, excluded ones dropped; ties by
    raw id. Only the head is sorted, so a million-item catalogue costs one partition per request."""
    head = min(total + len(excluded), len(probs))
    raw = np.argpartition(-probs, head - 1)[:head] if head < len(probs) else np.arange(len(probs))
    raw = raw[np.lexsort((raw, -probs[raw]))]
    items = item_index[raw]
    return items[~np.isin(items, excluded)][:total]


def _raw_item_index(dataset: Dataset, num_items: int) -> np.ndarray:
    """[num_items] item index of every raw generator item id (every item appears in a generated log)."""
    vocab = np.asarray(dataset.catalogue.raw_id[FIRST_REAL_ID:], dtype=object)
    index = lookup(vocab, np.arange(num_items))
    if (index < FIRST_REAL_ID).any():
        raise ValueError(
            f"{dataset.name}: {int((index < FIRST_REAL_ID).sum())} generator items are missing from the data"
        )
    return index


def _last_session(truth: SyntheticTruth, user: int, last_time: int) -> int:
    """Row of the user's generator session holding the event at ``last_time`` (the latest one started)."""
    first, stop = np.searchsorted(truth.session_user, [user, user + 1])
    started = int(np.searchsorted(truth.session_start[first:stop], last_time, side="right"))
    if started == 0:
        raise ValueError(f"user {user} has no generator session before t={last_time}")
    return int(first) + started - 1
