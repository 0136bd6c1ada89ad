from typing import Any

import numpy as np

from models.data.schema import Action
from models.encoder.config import EncoderConfig
from models.encoder.layout import (
    CONTEXT_TOKEN,
    FOLDED_TOKEN,
    ITEM_TOKEN,
    build_layout,
    day_of_week,
    pad_jagged,
    stack_layouts,
)
from models.types import RequestContext, UserHistory

T0 = 1_000_000_000


def history(items, times, actions=None, values=None) -> UserHistory:
    n = len(items)
    return UserHistory(
        item=np.array(items, dtype=np.int64),
        action=np.array(actions if actions is not None else [Action.RATE] * n, dtype=np.int64),
        value=np.array(values if values is not None else [3.0] * n, dtype=np.float32),
        timestamp=np.array(times, dtype=np.int64) + T0,
        scene=np.ones(n, dtype=np.int64),
        device=np.ones(n, dtype=np.int64),
    )


def config(**overrides) -> EncoderConfig:
    values: dict[str, Any] = dict(
        kind="session_encoder", num_items=50, max_tokens=64, max_items_per_session=3
    )
    values.update(overrides)
    return EncoderConfig(**values)


CATEGORY = np.arange(50) % 5


def test_sessions_split_on_gap_dedup_and_chunk():
    # session A: items 5, 6, 5 (repeat, stronger rating), 7, 8 within minutes -> dedup to 5, 6, 7, 8,
    # chunked by 3 -> [5, 6, 7], [8]; session B after 2 hours: [9]
    h = history([5, 6, 5, 7, 8, 9], [0, 60, 120, 180, 240, 7440], values=[3, 3, 5, 3, 3, 3])
    tokens = build_layout(h, None, config(), CATEGORY)
    assert tokens["tok_type"].tolist() == [1, 2, 2, 2, 1, 2, 1, 2]
    assert tokens["item"].tolist() == [0, 5, 6, 7, 0, 8, 0, 9]
    assert tokens["sess"].tolist() == [1, 1, 1, 1, 2, 2, 3, 3]
    assert tokens["level"][1] == 3  # strongest occurrence (rating 5) kept, at the first position
    assert tokens["category"][1] == 0 and tokens["category"][2] == 1
    assert tokens["gap"][0] == 0 and tokens["gap"][6] > tokens["gap"][4] > 0


def test_request_appends_context_token_and_truncation_keeps_whole_sessions():
    h = history(list(range(2, 12)), [i * 4000 for i in range(10)])  # ten sessions of one item
    request = RequestContext(timestamp=T0 + 10 * 4000, scene=1)
    tokens = build_layout(h, request, config(max_tokens=7), CATEGORY)
    assert len(tokens["tok_type"]) == 7
    assert tokens["tok_type"][0] == CONTEXT_TOKEN and tokens["tok_type"][-1] == CONTEXT_TOKEN
    assert tokens["sess"][0] == 1 and tokens["sess"][-1] == 4
    assert tokens["item"][-2] == 11 and tokens["ts"][-1] == request.timestamp


def test_causal_layout_query_times_point_to_next_event():
    h = history([4, 5, 6], [0, 10, 20])
    request = RequestContext(timestamp=T0 + 99)
    tokens = build_layout(h, request, config(kind="hstu"), CATEGORY)
    assert (tokens["tok_type"] == ITEM_TOKEN).all()
    assert tokens["query_ts"].tolist() == [T0 + 10, T0 + 20, T0 + 99]


def test_stack_and_pad_round_trip():
    a = build_layout(history([4, 5], [0, 10]), None, config(), CATEGORY)
    b = build_layout(history([6], [0]), None, config(), CATEGORY)
    padded = pad_jagged(stack_layouts([a, b], np.zeros((2, 0))))
    assert padded["item"].shape == (2, 3)
    assert padded["item"][1].tolist() == [0, 6, 0] and padded["tok_type"][1].tolist() == [1, 2, 0]


def test_day_of_week_monday_is_zero():
    assert day_of_week(np.array([0]))[0] == 3  # 1970-01-01 was a Thursday
    assert day_of_week(np.array([4 * 86400]))[0] == 0


def folded_config(**overrides) -> EncoderConfig:
    return config(max_items_per_session=1, fold_context=True, **overrides)


def test_folded_layout_is_one_token_per_request():
    # three requests of one rating each (5, 6 within minutes: separate requests at one item per request)
    h = history([5, 6, 7], [0, 60, 7260], values=[3, 5, 3])
    request = RequestContext(timestamp=T0 + 9000, scene=1, device=1)
    tokens = build_layout(h, request, folded_config(), CATEGORY)
    assert tokens["tok_type"].tolist() == [FOLDED_TOKEN] * 4
    assert tokens["item"].tolist() == [0, 5, 6, 7]  # token j: the item of request j - 1
    assert tokens["level"].tolist()[1:] == [1, 3, 1] and tokens["category"].tolist() == [0, 0, 1, 2]
    assert tokens["sess"].tolist() == [1, 2, 3, 4]
    # request j's time is token j's query time; ts is the item's own time (the first token: its request)
    assert tokens["query_ts"].tolist() == [T0, T0 + 60, T0 + 7260, T0 + 9000]
    assert tokens["ts"].tolist() == [T0, T0, T0 + 60, T0 + 7260]
    assert tokens["gap"][0] == 0 and tokens["gap"][2] > tokens["gap"][1] > 0 and tokens["gap"][3] > 0
    training = build_layout(h, None, folded_config(), CATEGORY)  # no request: the last context is empty
    assert training["item"].tolist() == [0, 5, 6, 7] and training["scene"][-1] == 0
    assert training["gap"][-1] == 0 and training["query_ts"][-1] == T0 + 7260


def test_folded_layout_truncates_to_the_latest_tokens_and_handles_empty_histories():
    h = history(list(range(2, 12)), [i * 4000 for i in range(10)])
    request = RequestContext(timestamp=T0 + 10 * 4000)
    tokens = build_layout(h, request, folded_config(max_tokens=4), CATEGORY)
    assert tokens["item"].tolist() == [8, 9, 10, 11] and tokens["sess"].tolist() == [1, 2, 3, 4]
    assert tokens["query_ts"][-1] == request.timestamp
    empty = history([], [])
    alone = build_layout(empty, request, folded_config(), CATEGORY)
    assert alone["tok_type"].tolist() == [FOLDED_TOKEN] and alone["item"].tolist() == [0]
    assert len(build_layout(empty, None, folded_config(), CATEGORY)["tok_type"]) == 0


def test_folding_needs_one_item_per_request():
    assert folded_config().folded
    assert not config(fold_context=True).folded  # three items per request: the two-token layout
    assert not EncoderConfig.from_dict({"kind": "session_encoder", "max_items_per_session": 1}).folded
    tokens = build_layout(history([5, 6], [0, 9000]), None, config(fold_context=True), CATEGORY)
    assert tokens["tok_type"].tolist() == [CONTEXT_TOKEN, ITEM_TOKEN, CONTEXT_TOKEN, ITEM_TOKEN]
