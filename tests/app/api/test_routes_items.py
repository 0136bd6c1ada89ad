"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import ITEMS_PER_CATEGORY

pytestmark = pytest.mark.anyio


async def test_similar_items_come_from_the_same_cluster_and_never_the_item_itself(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        response = await client.get("/v1/items/i20/similar", params={"k": 5})
        assert response.status_code == 200
        body = response.json()
        ids = [item["item_id"] for item in body["items"]]
        assert len(ids) == 5 and "i20" not in ids
        assert all(int(item[1:]) // ITEMS_PER_CATEGORY == 1 for item in ids)
        assert body["meta"]["served_by"] == "ann" and body["warnings"] == []
        assert [item["rank"] for item in body["items"]] == [1, 2, 3, 4, 5]


async def test_unknown_item_is_404_in_the_error_shape(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (_, client):
        response = await client.get("/v1/items/not-an-item/similar")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "item_not_found"
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
