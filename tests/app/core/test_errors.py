"""Every validation failure answers the one error shape, naming the field, with the request id."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio

OK_EVENT = {"user_id": "u1", "item_id": "i1", "action": "click", "timestamp": 1_700_000_000}

RECOMMEND_CASES: list[tuple[Any, str]] = [
    ({"k": 5}, "user_id"),
    ({"user_id": "u1", "k": 0}, "k"),
    ({"user_id": "u1", "k": 201}, "k"),
    ({"user_id": "u1", "k": "ten"}, "k"),
    ({"user_id": True}, "user_id"),
    ({"user_id": 1.5}, "user_id"),
    ({"user_id": ""}, "user_id"),
    ({"user_id": "x" * 300}, "user_id"),
    ({"user_id": "u1", "surprise": 1}, "surprise"),
    ({"user_id": "u1", "options": {"diversity": 1.5}}, "options.diversity"),
    ({"user_id": "u1", "options": {"explain": "maybe"}}, "options.explain"),
    ({"user_id": "u1", "filters": {"category_in": "c1"}}, "filters.category_in"),
    ({"user_id": "u1", "filters": {"colour": ["red"]}}, "filters.colour"),
    ({"user_id": "u1", "anchors": "i1"}, "anchors"),
    ({"user_id": "u1", "anchors": [f"i{n}" for n in range(51)]}, "anchors"),
    ({"user_id": "u1", "context": {"timestamp": -5}}, "context.timestamp"),
    ({"user_id": "u1", "context": {f"key{n}": n for n in range(17)}}, "context"),
    ([1, 2, 3], "body"),
]

EVENTS_CASES: list[tuple[Any, str]] = [
    ({"events": []}, "events"),
    ({"events": [OK_EVENT] * 1001}, "events"),
    ({"events": [{**OK_EVENT, "action": "stare"}]}, "events.0.action"),
    ({"events": [{**OK_EVENT, "timestamp": -1}]}, "events.0.timestamp"),
    ({"events": [{k: v for k, v in OK_EVENT.items() if k != "item_id"}]}, "events.0.item_id"),
    ({"events": [{**OK_EVENT, "extra": 1}]}, "events.0.extra"),
    ({}, "events"),
]


def assert_error_shape(response: Any, status: int, code: str, mentions: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code
    assert mentions in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


@pytest.fixture
def settings(bundle_v1: Path):
    return make_settings(bundle_v1, k_max=200)


async def test_recommend_validation_errors(settings) -> None:
    async with running_app(settings) as (_, client):
        for body, field in RECOMMEND_CASES:
            response = await client.post("/v1/recommend", json=body)
            assert_error_shape(response, 422, "validation_error", field)


async def test_events_validation_errors(settings) -> None:
    async with running_app(settings) as (_, client):
        for body, field in EVENTS_CASES:
            response = await client.post("/v1/events", json=body)
            assert_error_shape(response, 422, "validation_error", field)


async def test_malformed_json_unknown_route_and_method(settings) -> None:
    async with running_app(settings) as (_, client):
        broken = await client.post(
            "/v1/recommend", content=b'{"user_id": ', headers={"content-type": "application/json"}
        )
        assert_error_shape(broken, 422, "validation_error", "JSON")
        assert_error_shape(await client.get("/v1/nothing-here"), 404, "not_found", "Not Found")
        assert_error_shape(await client.get("/v1/recommend"), 405, "method_not_allowed", "Method Not Allowed")
        similar = await client.get("/v1/items/i1/similar", params={"k": 0})
        assert_error_shape(similar, 422, "validation_error", "k")


async def test_k_above_configured_maximum(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, k_max=20, candidate_count=50)) as (_, client):
        response = await client.post("/v1/recommend", json={"user_id": "u1", "k": 21})
        assert_error_shape(response, 422, "validation_error", "TANDEM_K_MAX")


async def test_events_too_far_ahead_of_the_clock_are_refused_and_old_ones_accepted(bundle_v1: Path) -> None:
    now = int(time.time())

    def one(timestamp: int) -> dict:
        return {"events": [{"user_id": "u1", "item_id": "i1", "action": "click", "timestamp": timestamp}]}

    async with running_app(make_settings(bundle_v1, event_max_future_s=3600)) as (app, client):
        ahead = await client.post("/v1/events", json=one(now + 2 * 3600))
        assert_error_shape(ahead, 422, "validation_error", "events.0.timestamp")
        assert (await client.post("/v1/events", json=one(now + 60))).status_code == 202  # clock skew
        assert (await client.post("/v1/events", json=one(1_000_000))).status_code == 202  # late event
        state = await app.state.services.stores.users.get_state("u1")
        assert now + 2 * 3600 not in [event.timestamp for event in state.events]
