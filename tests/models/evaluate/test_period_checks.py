from dataclasses import replace

from models.data.shape import DataShape
from models.evaluate.period_checks import (
    MIN_TEST_REQUESTS,
    MIN_VALID_REQUESTS,
    RANKER_TIME_CUT,
    period_warnings,
    skipped_users_note,
    standard_error,
)

ANONYMOUS = DataShape(
    users=3000,
    events=13000,
    sessions=3000,
    single_event_users=120,
    single_session_share=1.0,
    sessions_per_user=1.0,
    session_length=3.0,
    revisit_share=0.3,
    rating_only=False,
)


def test_few_next_session_requests_on_anonymous_sessions_point_to_leave_last_out() -> None:
    warnings = period_warnings("next-session", 24, 300, ANONYMOUS)
    assert len(warnings) == 1
    assert warnings[0].startswith("only 24 test requests under next-session")
    assert f"±{standard_error(24):.3f}" in warnings[0] and "--protocol leave-last-out" in warnings[0]


def test_enough_requests_give_no_warning_and_an_empty_validation_period_is_named() -> None:
    assert period_warnings("leave-last-out", MIN_TEST_REQUESTS, MIN_VALID_REQUESTS, ANONYMOUS) == []
    [empty] = period_warnings("leave-last-out", 5000, 0, ANONYMOUS)
    assert "validation period has no requests" in empty
    [few] = period_warnings("leave-last-out", 5000, MIN_VALID_REQUESTS - 1, ANONYMOUS)
    assert f"only {MIN_VALID_REQUESTS - 1} validation requests" in few


def test_single_event_users_are_counted() -> None:
    assert skipped_users_note(ANONYMOUS) == (
        "120 of 3,000 users have a single event: no request can be made from them (skipped and counted, "
        "not scored)."
    )
    assert skipped_users_note(replace(ANONYMOUS, single_event_users=0)) is None


def test_the_ranker_stage_is_warned_about_its_own_time_cut() -> None:
    [warning] = period_warnings(RANKER_TIME_CUT, 1, None, ANONYMOUS)
    assert warning.startswith("only 1 test request under the ranker stage's time cut")
    assert "--stage pipeline" in warning


def test_no_test_request_at_all_is_said_plainly() -> None:
    [warning] = period_warnings("next-session", 0, 0, ANONYMOUS)[:1]
    assert warning.startswith("no test requests under next-session: nothing can be scored.")
    assert "±" not in warning
