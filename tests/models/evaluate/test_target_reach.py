import numpy as np
import pytest

from models.data.jagged import JaggedBatch
from models.data.schema import EVENT_COLUMNS, EventTable
from models.evaluate.target_reach import target_reach
from models.protocols import EvalTask
from models.types import RequestContext, UserHistory


def _log(pairs: list[tuple[int, int]]) -> EventTable:
    """(user, item) events, one second apart, every other column zero."""
    users = np.array([u for u, _ in pairs], dtype=np.int64)
    columns = {name: np.zeros(len(pairs), dtype=dtype) for name, dtype in EVENT_COLUMNS.items()}
    columns.update(user=users, item=np.array([i for _, i in pairs], dtype=np.int64))
    columns["timestamp"] = np.arange(len(pairs), dtype=np.int64)
    return EventTable(**columns)


def _history(items: list[int]) -> UserHistory:
    z = np.zeros(len(items), dtype=np.int64)
    return UserHistory(np.array(items, dtype=np.int64), z, np.ones(len(items), np.float32), z, z, z)


def _task(users: list[int], histories: list[list[int]], targets: list[list[int]]) -> EvalTask:
    width = max(len(t) for t in targets)
    padded = np.array([t + [0] * (width - len(t)) for t in targets], dtype=np.int64)
    mask = np.array([[j < len(t) for j in range(width)] for t in targets])
    exclude = JaggedBatch({"item": np.zeros(0, np.int64)}, np.zeros(len(users) + 1, np.int64))
    contexts = [RequestContext(timestamp=100) for _ in users]
    return EvalTask(
        "next-session",
        np.array(users),
        [_history(h) for h in histories],
        contexts,
        padded,
        mask,
        exclude,
        (10,),
    )


# User 0 asks with history {2, 3}. User 1 touched 3 and 4 (so 4 is linked to 0's history), user 2 touched
# 5 alone (known, unlinked), and user 0 itself touched 6 in the log: its own events link nothing.
NUM_ITEMS = 10
KNOWN = _log([(0, 2), (0, 3), (0, 6), (1, 3), (1, 4), (2, 5)])


def test_each_target_kind_is_counted_once() -> None:
    # targets: 2 re-visit, 4 linked through user 1, 5 known unlinked, 6 only the asker touched, 9 unknown
    reach = target_reach(_task([0], [[2, 3]], [[2, 4, 5, 6, 9]]), KNOWN, NUM_ITEMS)
    assert reach.targets == 5
    assert reach.in_history == pytest.approx(1 / 5)
    assert reach.new_linked == pytest.approx(1 / 5)
    assert reach.new_known == pytest.approx(2 / 5)  # 5, and 6 (touched by the asker alone)
    assert reach.unknown == pytest.approx(1 / 5)


def test_masked_targets_and_empty_histories_are_handled() -> None:
    task = _task([0, 1], [[2], []], [[3], [4, 5]])
    task.target_mask[1, 1] = False  # the second request's target 5 is padding
    reach = target_reach(task, KNOWN, NUM_ITEMS)
    assert reach.targets == 2
    # request 0: no other user touched 2, so 3 is known but unlinked; request 1 has no history to link from
    assert reach.new_known == pytest.approx(1.0)
    assert reach.in_history == reach.new_linked == reach.unknown == 0.0


def test_a_link_needs_another_user_who_touched_both() -> None:
    linked = target_reach(_task([2], [[3]], [[4]]), KNOWN, NUM_ITEMS)  # user 1 touched 3 and 4
    assert linked.new_linked == 1.0
    alone = target_reach(_task([1], [[3]], [[4]]), KNOWN, NUM_ITEMS)  # only the asker (user 1) touched both
    assert alone.new_known == 1.0
