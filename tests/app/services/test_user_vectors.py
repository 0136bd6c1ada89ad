"""The user-vector stage's read-your-writes rule: a cached vector is served only while it covers every event
the store accepted for the user (embedded store, no Redis)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from app.services.serving_bundle import ServingBundle
from app.services.user_vectors import is_fresh, wait_for_write_backs
from app.stores.base import StoredEvent, StoredVector, UserState
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio


def state_at(sequence: int, vector_sequence: int, model_version: str = "fake-v1") -> UserState:
    vector = StoredVector(np.ones(8, np.float32) / np.sqrt(8), model_version, vector_sequence, 0, time.time())
    return UserState(vector, sequence, [StoredEvent("i1", 2, 1.0, 1)] * sequence)


def test_a_vector_is_fresh_only_when_it_covers_the_newest_event() -> None:
    serving = ServingBundle(FakeBundle(Path("."), "v1"))
    for sequence, vector_sequence, fresh in [(5, 5, True), (5, 4, False), (1, 0, False), (5, 6, True)]:
        state = state_at(sequence, vector_sequence)
        assert is_fresh(state.vector, state, serving) is fresh, (sequence, vector_sequence)
    other_model = state_at(5, 5, model_version="fake-v0")
    assert not is_fresh(other_model.vector, other_model, serving)


async def test_one_event_after_caching_makes_the_cached_vector_stale(bundle_v1: Path) -> None:
    async with running_app(make_settings(bundle_v1)) as (app, client):
        services = app.state.services
        services.worker.stop()  # no worker in this test: only the request path refreshes vectors
        await services.worker_task

        async def served_by() -> str:
            return (await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})).json()["meta"][
                "served_by"
            ]

        assert await served_by() == "online"
        await wait_for_write_backs()
        assert await served_by() == "cache"
        event = {"user_id": "u1", "item_id": "i50", "action": "click", "timestamp": 1_750_000_000}
        assert (await client.post("/v1/events", json={"events": [event]})).status_code == 202
        assert await served_by() == "online"  # the cached vector is one event behind
        await wait_for_write_backs()
        assert await served_by() == "cache"  # the new vector covers it
        state = await services.stores.users.get_state("u1")
        assert state.vector is not None and state.vector.sequence == state.sequence
