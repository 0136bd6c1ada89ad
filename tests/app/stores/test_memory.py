"""The in-process stores in the details the contract tests (test_base.py) let through in ``make mutate``
(docs/results/mutation.md): the backlog bound counts pending entries, a duplicate inside a batch does not
stop the events after it, stream ids, acknowledging an unknown id."""

from __future__ import annotations

import pytest

from app.stores.base import BacklogFull, BundleRecord, StoredEvent, keyed
from app.stores.memory import MemoryEventStream, memory_stores
from tests.app.stores.test_base import FrozenClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    frozen = FrozenClock()
    monkeypatch.setattr("app.stores.memory.time", frozen)
    return frozen


def event(item: str, timestamp: int) -> StoredEvent:
    return StoredEvent(item=item, action=2, value=1.0, timestamp=timestamp)


async def test_the_backlog_bound_counts_delivered_but_unacknowledged_entries() -> None:
    stores = memory_stores(stream_maxlen=2)
    await stores.events.append_events(keyed([("a", event("i1", 1))]))
    await stores.events.read_new("w", 10, 0)  # pending now
    await stores.events.append_events(keyed([("a", event("i2", 2))]))
    with pytest.raises(BacklogFull, match=r"^the event stream holds 2 unprocessed entries$"):
        await stores.events.append_events(keyed([("a", event("i3", 3))]))
    assert await stores.connection.ping() is True


async def test_a_duplicate_does_not_stop_the_rest_of_its_batch() -> None:
    stores = memory_stores()
    await stores.events.append_events(keyed([("a", event("i1", 1))]))
    result = await stores.events.append_events(keyed([("a", event("i1", 1)), ("a", event("i2", 2))]))
    assert (result.stored, result.duplicates) == (1, 1)
    assert [e.item for e in (await stores.users.get_history("a")).events] == ["i1", "i2"]


async def test_entries_get_increasing_ids_and_unknown_acks_are_ignored() -> None:
    stores = memory_stores()
    for item in ("i1", "i2", "i3"):
        await stores.events.append_events(keyed([("a", event(item, 1))]))
    entries = await stores.events.read_new("w", 10, 0)
    assert [e.entry_id for e in entries] == ["1-0", "2-0", "3-0"]
    assert isinstance(stores.events, MemoryEventStream)
    await stores.events.ack(["9-0", "1-0"])
    assert (await stores.events.backlog()).pending == 2


async def test_claims_count_idle_time_in_milliseconds_and_stop_at_count(clock: FrozenClock) -> None:
    stores = memory_stores()
    for item in ("i1", "i2", "i3"):
        await stores.events.append_events(keyed([("a", event(item, 1))]))
    delivered = clock.now
    await stores.events.read_new("w", 10, 0)
    clock.advance(0.1249)  # 124.9 ms
    assert await stores.events.claim_stale("x", 125, 10) == []
    clock.now = delivered + 0.125  # 125 ms exactly (binary-exact): idle long enough
    assert [e.entry_id for e in await stores.events.claim_stale("x", 125, 2)] == ["1-0", "2-0"]
    assert await stores.events.trim_processed() == 0


async def test_unknown_users_and_processes(clock: FrozenClock) -> None:
    stores = memory_stores()
    state = await stores.users.get_state("nobody")
    assert state.sequence == 0 and state.events == [] and state.vector is None
    assert await stores.users.seed_histories([("a", [event("i1", 1)]), ("b", [event("i2", 2)])]) == 2
    await stores.registry.report_bundle("never-reported", None)  # a clean stop of an unknown process
    await stores.registry.report_bundle("p", BundleRecord("/b", "m1", clock.now - 10))
    assert list(await stores.registry.served_bundles(10)) == ["p"]  # exactly max_age_s old: still fresh
