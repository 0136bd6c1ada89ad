"""The near-line worker against the real Redis: vectors follow events; a crash between read and ack loses
nothing and re-processing writes the same state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from app.services.serving_bundle import BundleHolder
from app.services.user_vectors import encode_one, wait_for_write_backs
from app.services.worker import VectorWorker
from app.startup import open_stores
from app.stores.base import StoredEvent, Stores, UserStateStore, keyed
from app.stores.memory import memory_stores
from app.stores.redis_connection import RedisConnection
from app.stores.redis_stores import redis_stores
from models.types import RequestContext
from tests.app.api.test_routes_events import category, events_for
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@asynccontextmanager
async def worker_for(settings, bundle: Path, consumer: str) -> AsyncIterator[VectorWorker]:
    holder = BundleHolder(FakeBundle.load)
    await holder.load(bundle)
    stores = open_stores(settings, block_ms=50)
    worker = VectorWorker(
        stores.events, stores.users, holder, consumer=consumer, block_ms=50, claim_idle_ms=0, claim_every_s=0
    )
    await stores.events.ensure_group()
    try:
        yield worker
    finally:
        await stores.connection.close()


async def stored_vector(users: UserStateStore, user: str) -> tuple[bytes, int]:
    state = await users.get_state(user)
    assert state.vector is not None
    return state.vector.vector.tobytes(), state.vector.sequence


async def test_events_worker_fresher_vector_changed_recommendations(
    bundle_v1: Path, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client), worker_for(settings, bundle_v1, "w1") as worker:
        before = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 6})).json()
        assert sum(category(item["item_id"]) == 1 for item in before["items"]) >= 4
        await wait_for_write_backs()  # the online answer's cache write lands before the worker's
        await client.post("/v1/events", json=events_for("u1", ["i0", "i1", "i2", "i3", "i4"]))
        assert await worker.step() == 1  # one stream entry read, vectors written, acknowledged
        state = await worker.users.get_state("u1")
        assert state.vector is not None and state.vector.sequence == state.sequence
        assert state.vector.model_version == "fake-v1" and state.vector.newest_event_ts == 1_750_000_004
        after = (await client.post("/v1/recommend", json={"user_id": "u1", "k": 6})).json()
        assert after["meta"]["served_by"] == "cache"  # the worker's vector covers the new events
        assert sum(category(item["item_id"]) == 0 for item in after["items"]) >= 4
        assert (await worker.events.backlog()).pending == 0


async def test_crash_between_read_and_ack_is_recovered_idempotently(
    bundle_v1: Path, redis_url: str, key_prefix: str
) -> None:
    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client):
        await client.post("/v1/events", json=events_for("u2", ["i50", "i51"]))
        await client.post("/v1/events", json=events_for("u3", ["i5", "i6"], start=1_750_000_100))

        async with worker_for(settings, bundle_v1, "doomed") as doomed:
            read = await doomed.events.read_new("doomed", 10, 50)
            assert len(read) == 2  # read, then the process "dies": no write, no ack
        async with worker_for(settings, bundle_v1, "rescuer") as rescuer:
            users, events = rescuer.users, rescuer.events
            assert (await events.backlog()).pending == 2
            assert (await users.get_state("u2")).vector is None
            assert await rescuer.step() == 2  # re-claimed from the dead consumer
            assert (await events.backlog()).pending == 0
            first = {user: await stored_vector(users, user) for user in ("u2", "u3")}
            for user in ("u2", "u3"):
                assert first[user][1] == (await users.get_state(user)).sequence  # every event covered

            # Re-deliver the same entries (a second crash after the write, before the ack).
            entries = [entry for entry in read]
            await rescuer.process(entries)
            second = {user: await stored_vector(users, user) for user in ("u2", "u3")}
            assert second == first
        recommended = (await client.post("/v1/recommend", json={"user_id": "u2", "k": 4})).json()
        assert recommended["meta"]["served_by"] == "cache"


async def test_worker_run_loop_stops_cleanly(bundle_v1: Path, redis_url: str, key_prefix: str) -> None:
    import asyncio

    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client), worker_for(settings, bundle_v1, "looper") as worker:
        task = asyncio.create_task(worker.run())
        await client.post("/v1/events", json=events_for("u4", ["i20"]))
        for _ in range(100):
            state = await worker.users.get_state("u4")
            if state.vector is not None and state.vector.sequence == state.sequence:
                break
            await asyncio.sleep(0.05)
        assert state.vector is not None and state.vector.sequence == state.sequence
        worker.stop()
        await asyncio.wait_for(task, timeout=5)
        assert np.isclose(np.linalg.norm(state.vector.vector), 1.0, atol=1e-5)


async def wait_for_fresh_vector(users: UserStateStore, user: str) -> bool:
    import asyncio

    for _ in range(200):
        state = await users.get_state(user)
        if state.vector is not None and state.vector.sequence == state.sequence:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("failure", ["unexpected error", "group flushed"])
async def test_the_worker_survives_errors_and_a_flushed_redis(
    bundle_v1: Path, redis_url: str, key_prefix: str, failure: str
) -> None:
    import asyncio

    settings = make_settings(bundle_v1, redis_url=redis_url, key_prefix=key_prefix)
    async with running_app(settings) as (_, client), worker_for(settings, bundle_v1, "survivor") as worker:
        events = worker.events
        if failure == "unexpected error":
            real_read = events.read_new
            calls = {"n": 0}

            async def flaky_read(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == 1:
                    raise RuntimeError("a bug in one step")
                return await real_read(*args, **kwargs)

            events.read_new = flaky_read  # type: ignore[method-assign]
        task = asyncio.create_task(worker.run(backoff_s=0.05))
        await client.post("/v1/events", json=events_for("u6", ["i30"]))
        assert await wait_for_fresh_vector(worker.users, "u6")
        if failure == "group flushed":
            connection = events.connection  # type: ignore[attr-defined]
            assert isinstance(connection, RedisConnection)
            await connection.flush_prefix()  # stream, group and users gone (FLUSHALL, empty replica)
            await client.post("/v1/events", json=events_for("u7", ["i31"]))
            assert await wait_for_fresh_vector(worker.users, "u7")
        worker.stop()
        await asyncio.wait_for(task, timeout=5)
        assert not task.done() or task.exception() is None


@pytest.fixture(params=["memory", "redis"])
async def stores(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Stores]:
    """The embedded stores (always) and the real Redis (skipped without it, failing under CI=true)."""
    if request.param == "memory":
        yield memory_stores()
        return
    stores = redis_stores(request.getfixturevalue("redis_url"), key_prefix=key_prefix, block_ms=50)
    try:
        yield stores
    finally:
        assert isinstance(stores.connection, RedisConnection)
        await stores.connection.flush_prefix()
        await stores.connection.close()


async def bare_worker(stores: Stores, bundle: Path) -> VectorWorker:
    holder = BundleHolder(FakeBundle.load)
    await holder.load(bundle)
    await stores.events.ensure_group()
    return VectorWorker(
        stores.events, stores.users, holder, consumer="w", block_ms=50, claim_idle_ms=0, claim_every_s=0
    )


def bought(items: list[int], start: int) -> list[StoredEvent]:
    return [StoredEvent(f"i{item}", 2, 1.0, start + n, "home") for n, item in enumerate(items)]


async def test_an_entry_is_acknowledged_only_after_its_vectors_are_written(
    stores: Stores, bundle_v1: Path
) -> None:
    worker = await bare_worker(stores, bundle_v1)
    await stores.events.append_events(keyed([("x", event) for event in bought([3, 4], 1_750_000_000)]))
    users = worker.users
    written = users.put_vectors

    async def killed_while_writing(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the worker died before its vectors were written")

    users.put_vectors = killed_while_writing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await worker.step()
    assert (await stores.events.backlog()).pending == 1  # not acknowledged: another step re-claims it
    assert (await stores.users.get_state("x")).vector is None

    users.put_vectors = written  # type: ignore[method-assign]
    assert await worker.step() == 1
    state = await stores.users.get_state("x")
    assert state.vector is not None and state.vector.sequence == state.sequence == 2
    assert (await stores.events.backlog()).pending == 0


async def test_each_user_gets_the_vector_of_their_own_history(stores: Stores, bundle_v1: Path) -> None:
    # three users in one stream entry, each buying in another category, with histories of other lengths
    purchases = {"p": bought([1], 1_750_000_000), "q": bought([16, 17, 18], 1_750_000_100)}
    purchases["r"] = bought([31, 32, 33, 34, 35], 1_750_000_200)
    await stores.events.append_events(
        keyed([(user, e) for user, events in purchases.items() for e in events])
    )
    worker = await bare_worker(stores, bundle_v1)
    assert await worker.step() == 1
    serving = worker.holder.current
    for user, events in purchases.items():
        state = await stores.users.get_state(user)
        assert state.vector is not None, user
        # the vector the online path computes from this user's history alone
        history = serving.history_from_events(events)
        context = RequestContext(
            timestamp=events[-1].timestamp, scene=int(history.scene[-1]), device=int(history.device[-1])
        )
        expected = encode_one(serving, history, context)
        assert np.allclose(state.vector.vector, expected, atol=1e-6), user
        assert (state.vector.sequence, state.vector.newest_event_ts) == (len(events), events[-1].timestamp)
    vectors = [(await stores.users.get_state(user)).vector for user in purchases]
    assert len({vector.vector.tobytes() for vector in vectors if vector is not None}) == 3
