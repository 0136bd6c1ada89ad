"""POST /v1/events against the real Redis: durable stream entry, and read-your-writes on recommend."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from app.services.user_vectors import wait_for_write_backs
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import ITEMS_PER_CATEGORY

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


def category(raw_item: str) -> int:
    return int(raw_item[1:]) // ITEMS_PER_CATEGORY


def events_for(user: str, items: list[str], start: int = 1_750_000_000) -> dict:
    return {
        "events": [
            {
                "user_id": user,
                "item_id": item,
                "action": "purchase",
                "timestamp": start + n,
                "context": {"scene": "home"},
            }
            for n, item in enumerate(items)
        ]
    }


async def test_events_are_in_the_stream_and_the_next_recommendation_reflects_them(
    bundle_v1: Path, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client):
        before = (await client.post("/v1/recommend", json={"user_id": "u0", "k": 6})).json()
        assert before["meta"]["served_by"] == "online"
        assert sum(category(item["item_id"]) == 0 for item in before["items"]) >= 4
        await wait_for_write_backs()  # the online vector is cached in the background
        cached = (await client.post("/v1/recommend", json={"user_id": "u0", "k": 6})).json()
        assert cached["meta"]["served_by"] == "cache"

        # u0 (category 0) now buys five category-3 items; no worker runs in this test.
        accepted = await client.post("/v1/events", json=events_for("u0", ["i45", "i46", "i47", "i48", "i49"]))
        assert accepted.status_code == 202 and accepted.json() == {"accepted": 5, "duplicates": 0}
        redis = Redis.from_url(redis_url)
        try:
            assert await redis.xlen(f"{key_prefix}:events") == 1
        finally:
            await redis.aclose()

        after = (await client.post("/v1/recommend", json={"user_id": "u0", "k": 6})).json()
        assert after["meta"]["served_by"] == "online"  # cached vector is behind the user's events
        assert sum(category(item["item_id"]) == 3 for item in after["items"]) >= 4
        assert not {item["item_id"] for item in after["items"]} & {"i45", "i46", "i47", "i48", "i49"}


async def test_unknown_user_becomes_known_through_events(
    bundle_v1: Path, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client):
        assert (await client.post("/v1/recommend", json={"user_id": "fresh"})).json()["meta"][
            "served_by"
        ] == "popular"
        await client.post("/v1/events", json=events_for("fresh", ["i16", "i17", "unknown-item"]))
        body = (await client.post("/v1/recommend", json={"user_id": "fresh", "k": 5})).json()
        assert body["meta"]["served_by"] == "online"
        assert sum(category(item["item_id"]) == 1 for item in body["items"]) >= 4


async def test_a_retried_request_is_stored_once_and_reports_its_duplicates(
    bundle_v1: Path, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    body = events_for("u5", ["i20", "i21"])
    body["events"][0]["event_id"] = "client-1"
    async with running_app(settings) as (app, client):
        first = await client.post("/v1/events", json=body)
        retry = await client.post("/v1/events", json=body)
        assert first.json() == {"accepted": 2, "duplicates": 0}
        assert retry.status_code == 202 and retry.json() == {"accepted": 2, "duplicates": 2}
        store = app.state.services.stores.users
        state = await store.get_state("u5")
        assert [event.item for event in state.events].count("i20") == 1
        assert state.sequence == 8 + 2  # the seeded history plus the two events, once
