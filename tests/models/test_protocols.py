import numpy as np

from models.data.schema import Dataset
from models.data.splits import TEST, TRAIN, leave_last_out, protocol_split, time_split
from models.protocols import evaluate, leave_last_out_task, next_session_task
from models.types import RequestContext, UserHistory


class OracleScorer:
    """Gives every target the highest score: what a perfect model would do."""

    def __init__(self, num_items: int, targets: dict[int, np.ndarray]):
        self.num_items = num_items
        self.targets = targets  # request timestamp -> target items

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        scores = np.zeros((len(contexts), self.num_items), dtype=np.float32)
        for row, context in enumerate(contexts):
            scores[row, self.targets[context.timestamp]] = 1.0
        return scores


class ConstantScorer:
    def __init__(self, num_items: int):
        self.num_items = num_items

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        return np.ones((len(histories), self.num_items), dtype=np.float32)


def test_leave_last_out_task_layout(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    task = leave_last_out_task(tiny_synthetic, leave_last_out(events), max_history=30)
    assert len(task) == len(np.unique(events.user))
    first_user = int(task.users[0])
    rows = np.flatnonzero(events.user == first_user)
    np.testing.assert_array_equal(task.histories[0].item, events.item[rows[-31:-1]])
    assert task.targets[0, 0] == events.item[rows[-1]]
    assert task.contexts[0].timestamp == events.timestamp[rows[-1]]
    np.testing.assert_array_equal(task.exclude.row(0, "item"), np.unique(events.item[rows[-31:-1]]))


def test_oracle_and_constant_scorers(tiny_synthetic: Dataset) -> None:
    task = leave_last_out_task(tiny_synthetic, leave_last_out(tiny_synthetic.events), max_users=50)
    assert len(task) == 50
    oracle = OracleScorer(
        tiny_synthetic.num_items, {c.timestamp: t for c, t in zip(task.contexts, task.targets, strict=True)}
    )
    perfect = evaluate(oracle, task, tiny_synthetic.num_items, batch_size=16, progress=False)
    in_history = np.array([t[0] in task.exclude.row(i, "item") for i, t in enumerate(task.targets)])
    np.testing.assert_array_equal(
        perfect["HR@10"], np.where(in_history, 0.0, 1.0)
    )  # excluded targets are lost
    constant = evaluate(
        ConstantScorer(tiny_synthetic.num_items), task, tiny_synthetic.num_items, progress=False
    )
    assert np.all(constant["HR@200"] == 0)


def test_next_session_task_targets_first_test_session(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    split = time_split(events)
    task = next_session_task(tiny_synthetic, split, max_history=50)
    assert len(task) > 0
    for i in range(min(len(task), 20)):
        user = int(task.users[i])
        rows = np.flatnonzero(events.user == user)
        after = rows[events.timestamp[rows] >= split.test_start]
        before = rows[events.timestamp[rows] < split.test_start]
        assert len(before) > 0
        session_rows = after[events.session[after] == events.session[after[0]]]
        assert set(task.targets[i][task.target_mask[i]].tolist()) == set(events.item[session_rows].tolist())
        assert task.histories[i].timestamp.max() < split.test_start
        assert len(task.exclude.row(i, "item")) == 0
    seen = next_session_task(tiny_synthetic, split, exclude_seen=True)
    assert seen.exclude.lengths.sum() > 0


def test_leave_last_out_may_keep_seen_items(tiny_synthetic: Dataset) -> None:
    split = leave_last_out(tiny_synthetic.events)
    task = leave_last_out_task(tiny_synthetic, split, max_users=40, exclude_seen=False)
    assert len(task) == 40 and task.exclude.lengths.sum() == 0


def test_next_session_on_a_supplied_split_scores_each_users_test_session(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    last_session = np.zeros(len(events), dtype=bool)
    offsets = events.user_offsets(tiny_synthetic.num_users)
    for user in np.flatnonzero(np.diff(offsets)).tolist():
        lo, hi = int(offsets[user]), int(offsets[user + 1])
        last_session[lo:hi] = events.session[lo:hi] == events.session[hi - 1]
    labels = np.where(last_session, TEST, TRAIN).astype(np.int8)
    task = next_session_task(tiny_synthetic, protocol_split(events, "next-session", labels), max_history=500)
    multi_session_users = [
        u for u in np.flatnonzero(np.diff(offsets)).tolist() if events.session[offsets[u + 1] - 1] > 1
    ]
    assert task.users.tolist() == multi_session_users
    for row in range(len(task)):
        rows = np.arange(offsets[task.users[row]], offsets[task.users[row] + 1])
        test_rows = rows[last_session[rows]]
        assert set(task.targets[row][task.target_mask[row]].tolist()) == set(events.item[test_rows].tolist())
        assert len(task.histories[row]) == min(500, len(rows) - len(test_rows))  # earlier rows, no test row
