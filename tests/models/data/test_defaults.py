from dataclasses import replace

import pytest

from models.data.defaults import REQUEST_ITEMS_DEFAULT, choose_defaults
from models.data.shape import DataShape

RETURNING_SHOPPERS = DataShape(
    users=800,
    events=80_000,
    sessions=12_800,
    single_event_users=0,
    single_session_share=0.02,
    sessions_per_user=16.0,
    session_length=3.0,
    revisit_share=0.24,
    rating_only=False,
)
ANONYMOUS_CLICKS = replace(RETURNING_SHOPPERS, single_session_share=1.0, sessions_per_user=1.0)
RATINGS = replace(RETURNING_SHOPPERS, revisit_share=0.0, rating_only=True)


def test_returning_users_get_next_session_and_session_requests() -> None:
    chosen = choose_defaults(RETURNING_SHOPPERS)
    assert chosen.protocol.value == "next-session"
    assert chosen.items_per_request.value == REQUEST_ITEMS_DEFAULT
    assert chosen.exclude_seen.value is False and "24.0% of events re-visit" in chosen.exclude_seen.reason


def test_anonymous_sessions_get_one_item_per_request_and_leave_last_out() -> None:
    chosen = choose_defaults(ANONYMOUS_CLICKS)
    assert chosen.protocol.value == "leave-last-out" and "single session" in chosen.protocol.reason
    assert chosen.items_per_request.value == 1 and "popularity" in chosen.items_per_request.reason
    assert chosen.exclude_seen.value is False  # re-visits stay recommendable


def test_rating_logs_exclude_what_was_rated() -> None:
    chosen = choose_defaults(RATINGS)
    assert (chosen.protocol.value, chosen.items_per_request.value, chosen.exclude_seen.value) == (
        "leave-last-out",
        1,
        True,
    )


def test_flags_replace_choices_and_every_choice_is_printed_with_its_reason() -> None:
    chosen = choose_defaults(ANONYMOUS_CLICKS).overridden("protocol", "next-session", "--protocol")
    chosen = chosen.overridden("exclude_seen", None, "--exclude-seen")  # not given: the shape's choice
    lines = chosen.lines()
    assert lines[0].startswith("data shape: 800 users")
    assert lines[1] == "protocol: next-session (--protocol: set on the command line)"
    assert lines[2].startswith("items per request: 1 (the data's shape: ")
    assert lines[3].startswith("exclude seen items: no (the data's shape: ")
    assert chosen.to_dict()["protocol"] == {
        "value": "next-session",
        "reason": "set on the command line",
        "chosen_by": "--protocol",
    }
    with pytest.raises(ValueError, match="no default named"):
        chosen.overridden("colour", "red", "--colour")
