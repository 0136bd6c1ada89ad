"""POST /v1/recommend against the real app (embedded mode: in-memory store + in-process worker)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from app.services.user_vectors import wait_for_write_backs
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import CATEGORY_NAMES, ITEMS_PER_CATEGORY, NUM_CATEGORIES, FakeBundle

pytestmark = pytest.mark.anyio


def category(raw_item: str) -> int:
    return int(raw_item[1:]) // ITEMS_PER_CATEGORY


def seen_items(user: str) -> set[str]:
    history = dict(FakeBundle(Path("."), "v1").recent_histories())[user]
    return {f"i{int(item) - 2}" for item in history.item}


async def test_known_user_gets_k_ranked_unseen_items_and_request_id_is_echoed(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        response = await client.post(
            "/v1/recommend",
            json={"user_id": "u1", "k": 5, "options": {"explain": True}},
            headers={"X-Request-ID": "req-42"},
        )
        assert response.status_code == 200
        assert response.headers["x-request-id"] == "req-42"
        body = response.json()
        assert body["meta"]["request_id"] == "req-42"
        assert body["meta"]["model_version"] == "fake-v1" and body["meta"]["index_version"] == "index-v1"
        assert body["meta"]["served_by"] == "online"
        assert set(body["meta"]["timings_ms"]) == {"user_vector", "retrieve", "rank", "rules", "total"}
        items = body["items"]
        assert [item["rank"] for item in items] == [1, 2, 3, 4, 5]
        # the source that found each candidate (the ranker ordered them): the fake bundle has ANN + popularity
        assert {item["source"] for item in items} <= {"ann", "popular"}
        assert items[0]["source"] == "ann"
        assert not {item["item_id"] for item in items} & seen_items("u1")
        # u1's history is in category 1: the planted clusters make most recommendations category 1.
        assert sum(category(item["item_id"]) == 1 for item in items) >= 3
        # each row carries the catalogue's title for that id
        assert all(item["title"] == f"item {int(item['item_id'][1:])}" for item in items)
        assert all(item["category"] == CATEGORY_NAMES[category(item["item_id"])] for item in items)
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)

        await wait_for_write_backs()  # the online vector is cached in the background
        again = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()
        assert again["meta"]["served_by"] == "cache"  # the online vector was written back
        assert again["meta"]["timings_ms"] is None


async def test_exclude_seen_false_allows_history_items(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        body = {"user_id": "u2", "k": 20, "options": {"exclude_seen": False}}
        items = (await client.post("/v1/recommend", json=body)).json()["items"]
        assert {item["item_id"] for item in items} & seen_items("u2")


async def test_unknown_user_gets_popular_then_cold_start_with_anchors(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        popular = (await client.post("/v1/recommend", json={"user_id": 999999, "k": 4})).json()
        assert popular["meta"]["served_by"] == "popular"
        bundle = FakeBundle(Path("."), "v1")
        expected = sorted(range(2, bundle.catalogue.num_items), key=lambda row: -bundle.popularity[row])[:4]
        assert [item["item_id"] for item in popular["items"]] == [f"i{row - 2}" for row in expected]
        assert {item["source"] for item in popular["items"]} == {"popular"}

        body = {"user_id": "new-user", "k": 5, "anchors": ["i31", "i32", "nope"]}
        cold = (await client.post("/v1/recommend", json=body)).json()
        assert cold["meta"]["served_by"] == "cold_start"
        assert any("unknown anchor items ignored: nope" in warning for warning in cold["warnings"])
        ids = [item["item_id"] for item in cold["items"]]
        assert "i31" not in ids and "i32" not in ids
        assert sum(category(item) == 2 for item in ids) >= 4


async def test_exclude_and_category_filters(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        first = (await client.post("/v1/recommend", json={"user_id": "u0", "k": 3})).json()["items"]
        excluded = [item["item_id"] for item in first]
        body = {"user_id": "u0", "k": 10, "exclude": excluded, "filters": {"category_not_in": ["c0"]}}
        items = (await client.post("/v1/recommend", json=body)).json()["items"]
        assert len(items) == 10
        assert not {item["item_id"] for item in items} & set(excluded)
        assert all(category(item["item_id"]) != 0 for item in items)

        body = {"user_id": "u0", "k": 5, "filters": {"category_in": ["c3"]}}
        items = (await client.post("/v1/recommend", json=body)).json()["items"]
        assert len(items) == 5 and all(category(item["item_id"]) == 3 for item in items)


async def test_k_larger_than_what_remains_after_filters_warns(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        body = {"user_id": "u3", "k": 50, "filters": {"category_in": ["c2", "unknown-cat"]}}
        response = (await client.post("/v1/recommend", json=body)).json()
        # c2 has 15 items and u3 (category 3) has seen none of them: all 15 come back, with a warning.
        assert len(response["items"]) == ITEMS_PER_CATEGORY
        assert all(category(item["item_id"]) == 2 for item in response["items"])
        assert any(f"only {ITEMS_PER_CATEGORY} items remain" in w for w in response["warnings"])
        assert any("unknown categories ignored: unknown-cat" in w for w in response["warnings"])


async def test_all_candidates_excluded_gives_empty_list_and_warning(bundle_v1: Path) -> None:
    everything = [f"i{position}" for position in range(NUM_CATEGORIES * ITEMS_PER_CATEGORY)]
    async with running_app(make_settings(bundle_v1)) as (_, client):
        response = await client.post("/v1/recommend", json={"user_id": "u1", "k": 10, "exclude": everything})
        assert response.status_code == 200
        assert response.json()["items"] == []
        assert any("only 0 items remain" in warning for warning in response.json()["warnings"])


async def test_diversity_spreads_categories(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        plain = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 8})).json()["items"]
        body = {"user_id": "u1", "k": 8, "options": {"diversity": 0.9}}
        diverse = (await client.post("/v1/recommend", json=body)).json()["items"]
        assert len({category(i["item_id"]) for i in diverse}) > len({category(i["item_id"]) for i in plain})


async def test_api_key_required_when_configured(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, api_keys=["k1", "k2"])) as (_, client):
        missing = await client.post("/v1/recommend", json={"user_id": "u1"})
        wrong = await client.post("/v1/recommend", json={"user_id": "u1"}, headers={"X-API-Key": "nope"})
        right = await client.post("/v1/recommend", json={"user_id": "u1"}, headers={"X-API-Key": "k2"})
        assert missing.status_code == wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        assert right.status_code == 200
        assert (await client.get("/livez")).status_code == 200  # health stays open


async def test_body_size_limit(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, max_body_bytes=2048)) as (_, client):
        body = {"user_id": "u1", "exclude": [f"item-{n}" for n in range(400)]}
        response = await client.post("/v1/recommend", json=body)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        # at the boundary: the same request padded to exactly the limit is served, one byte more is not
        padded = json.dumps({"user_id": "u1", "k": 5}).ljust(2048).encode()
        headers = {"content-type": "application/json"}
        at_limit = await client.post("/v1/recommend", content=padded, headers=headers)
        assert at_limit.status_code == 200 and len(at_limit.json()["items"]) == 5
        over = await client.post("/v1/recommend", content=padded + b" ", headers=headers)
        assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"


async def test_load_shedding_returns_429_with_retry_after(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1, max_in_flight=1)) as (app, client):
        encoder = app.state.services.holder.current.encoder
        original = encoder.encode
        inside, release = threading.Event(), threading.Event()

        def held_encode(histories, contexts):  # runs in a thread: the request holds its slot meanwhile
            inside.set()
            release.wait(timeout=60)
            return original(histories, contexts)

        encoder.encode = held_encode
        first = asyncio.create_task(client.post("/v1/recommend", json={"user_id": "u5"}))
        try:
            assert await asyncio.to_thread(inside.wait, 60)  # the first request is in flight
            second = await client.post("/v1/recommend", json={"user_id": "u6"})
        finally:
            release.set()
        assert second.status_code == 429
        assert second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "too_many_requests"
        assert (await first).status_code == 200


async def test_training_user_missing_from_the_store_is_served_from_the_bundle(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        store = app.state.services.stores.users
        store._histories.pop("u7")  # as if seeding had failed for this user
        store._sequence.pop("u7")
        body = (await client.post("/v1/recommend", json={"user_id": "u7", "k": 5})).json()
        assert body["meta"]["served_by"] == "online"
        assert not {item["item_id"] for item in body["items"]} & seen_items("u7")


async def test_pre_serialised_answers_validate_as_the_documented_response(bundle_v1: Path) -> None:
    from app.api.schemas import RecommendResponse

    async with running_app(make_settings(bundle_v1)) as (_, client):
        for body in ({"user_id": "u1", "k": 5, "options": {"explain": True}}, {"user_id": "nobody", "k": 3}):
            response = await client.post("/v1/recommend", json=body)
            assert response.headers["content-type"] == "application/json"
            parsed = RecommendResponse.model_validate_json(response.content)
            assert parsed.model_dump(mode="json") == response.json()  # no field missing, none extra
        similar = await client.get("/v1/items/i3/similar?k=4")
        parsed = RecommendResponse.model_validate_json(similar.content)
        assert parsed.model_dump(mode="json") == similar.json()


async def test_online_answer_does_not_wait_for_the_vector_write_back(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        store = app.state.services.stores.users
        release = asyncio.Event()
        written = store.put_vectors

        async def slow_put_vectors(*args: object, **kwargs: object) -> None:
            await release.wait()
            await written(*args, **kwargs)

        store.put_vectors = slow_put_vectors
        first = await asyncio.wait_for(client.post("/v1/recommend", json={"user_id": "u1", "k": 5}), 5)
        assert first.json()["meta"]["served_by"] == "online"  # answered while the write is held back
        still_online = await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        assert still_online.json()["meta"]["served_by"] == "online"
        release.set()
        for _ in range(50):  # the background write lands; the next answer is a cache hit
            await asyncio.sleep(0.01)
            again = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()
            if again["meta"]["served_by"] == "cache":
                break
        assert again["meta"]["served_by"] == "cache"


async def test_the_plain_recommend_path_is_an_alias(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        body = {"user_id": "u1", "k": 5, "options": {"exclude_seen": True}}
        versioned = (await client.post("/v1/recommend", json=body)).json()
        plain = await client.post("/recommend", json=body)
        assert plain.status_code == 200
        assert [i["item_id"] for i in plain.json()["items"]] == [i["item_id"] for i in versioned["items"]]
        bad = await client.post("/recommend", json={"user_id": "u1", "k": 0})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"
