import numpy as np

from models.data.builder import RawEvents, build_dataset
from models.data.schema import COMMERCE_FUNNEL, Action, EventTable
from models.data.shape import measure_shape


def views(users: list[str], items: list[str], times: list[int]) -> EventTable:
    raw = RawEvents(
        user=np.array(users, dtype=object),
        item=np.array(items, dtype=object),
        timestamp=np.array(times),
        action=np.full(len(users), Action.VIEW, np.int8),
    )
    return build_dataset("t", raw, COMMERCE_FUNNEL, "commerce").events


def test_shape_counts_sessions_and_revisits() -> None:
    hour = 3600
    events = views(
        ["a", "a", "a", "a", "b", "b", "c"],
        ["x", "y", "x", "z", "x", "y", "x"],
        [0, 10, 20, 5 * hour, 0, 10, 0],  # a: two sessions (the 5-hour gap), b and c: one each
    )
    shape = measure_shape(events)
    assert (shape.users, shape.events, shape.sessions) == (3, 7, 4)
    assert shape.single_event_users == 1  # c
    assert shape.single_session_share == 2 / 3 and shape.sessions_per_user == 1.0
    assert shape.session_length == 1.5  # median of sessions of 3, 1, 2 and 1 events
    assert shape.revisit_share == 1 / 7  # a's second x
    assert not shape.rating_only
    assert "3 users" in shape.describe() and "14.3% of events re-visit" in shape.describe()


def test_empty_table() -> None:
    empty = views(["a"], ["x"], [0]).take(np.zeros(1, dtype=bool))
    assert measure_shape(empty).users == 0
