"""Warnings on what an evaluation protocol leaves to score: too few test or validation requests, and the
users no request can be made from. Printed by the eval commands and kept in the report's notes."""

from __future__ import annotations

import math

from models.data.shape import DataShape

MIN_TEST_REQUESTS = 200
MIN_VALID_REQUESTS = 100
TYPICAL_METRIC = 0.1  # the standard error quoted in a warning is the one of a hit rate near this value
RANKER_TIME_CUT = "the ranker stage's time cut"  # ``tandem eval --stage ranker`` (models.ranker.evaluate)


def standard_error(requests: int, value: float = TYPICAL_METRIC) -> float:
    """Standard error of a per-request mean with values in [0, 1] near ``value``, over ``requests``."""
    return math.sqrt(value * (1 - value) / max(requests, 1))


def _protocol_hint(protocol: str, shape: DataShape) -> str:
    if protocol == RANKER_TIME_CUT:
        return (
            " The ranker stage scores users active both before and after its time cut; --stage pipeline "
            "scores the ranker as served, on the data's own protocol."
        )
    if protocol == "next-session" and shape.single_session_share >= 0.5:
        return (
            f" {shape.single_session_share:.0%} of users have a single session, and next-session only scores "
            "users with an earlier session: --protocol leave-last-out scores every session."
        )
    if protocol == "next-session":
        return " Next-session scores users active both before and after the test cut: a longer log helps."
    return " Leave-last-out scores users with two or more events: a longer log helps."


def period_warnings(
    protocol: str, test_requests: int, valid_requests: int | None, shape: DataShape
) -> list[str]:
    """What a user must know before trusting the numbers (empty when the periods are large enough);
    ``valid_requests`` None: the stage has no validation period to check."""
    out = []
    if test_requests == 0:
        out.append(
            f"no test requests under {protocol}: nothing can be scored." + _protocol_hint(protocol, shape)
        )
    elif test_requests < MIN_TEST_REQUESTS:
        out.append(
            f"only {test_requests} test request{'' if test_requests == 1 else 's'} under {protocol} (fewer "
            f"than {MIN_TEST_REQUESTS}): a metric "
            f"near {TYPICAL_METRIC} is uncertain by about ±{standard_error(test_requests):.3f} (one standard "
            "error), so small differences between rows are noise." + _protocol_hint(protocol, shape)
        )
    if valid_requests is None:
        return out
    if valid_requests == 0:
        out.append(
            "the validation period has no requests: nothing picks the training epoch, the merge weights or "
            "the ranker, which are skipped or left at their defaults."
        )
    elif valid_requests < MIN_VALID_REQUESTS:
        out.append(
            f"only {valid_requests} validation requests (fewer than {MIN_VALID_REQUESTS}): the training "
            "epoch, the merge weights and the ranker gate are chosen on few requests."
        )
    return out


def skipped_users_note(shape: DataShape) -> str | None:
    """How many users have a single event (no request has a history and a target from them)."""
    if shape.single_event_users == 0:
        return None
    return (
        f"{shape.single_event_users:,} of {shape.users:,} users have a single event: no request can be made "
        "from them (skipped and counted, not scored)."
    )
