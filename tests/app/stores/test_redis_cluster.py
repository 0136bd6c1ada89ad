"""The Redis stores on a real 3-master Redis Cluster (``tests.app.redis_cluster``): events of users spread
over every master stored once each, in their user's stream shard; histories with their sequence numbers;
a worker's reads, claims, acks and trims over every shard; and the store contracts of ``test_base`` that
hold unchanged on a cluster."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.crc import key_slot

from app.core.failures import StoreMisconfigured
from app.stores.base import BacklogFull, KeyedEvent, StoredEvent, Stores, keyed
from app.stores.redis_cluster import ClusterConnection, check_server_mode, cluster_stores
from app.stores.redis_cluster_stream import ClusterEventStream, shard_of
from tests.app.redis_cluster import LocalCluster
from tests.app.stores.test_base import (  # the contracts that hold on a cluster as on one Redis
    clock,  # noqa: F401 (a fixture the imported tests take)
    test_client_event_ids_decide_what_is_a_duplicate,  # noqa: F401
    test_histories_are_bounded_and_sequence_counts_every_event,  # noqa: F401
    test_keys_are_forgotten_after_the_dedupe_window,  # noqa: F401
    test_seeding_only_writes_users_the_store_does_not_know,  # noqa: F401
    test_the_registry_keeps_the_desired_bundle_and_fresh_reports,  # noqa: F401
    test_vectors_round_trip_and_expire,  # noqa: F401
    test_without_event_ids_events_differing_in_any_field_are_all_stored,  # noqa: F401
)

pytestmark = [pytest.mark.anyio, pytest.mark.scale]
SHARDS = 4


def event(item: str, timestamp: int) -> StoredEvent:
    return StoredEvent(item=item, action=2, value=1.0, timestamp=timestamp, scene="home", device=None)


@pytest.fixture
async def stores(redis_cluster: LocalCluster, key_prefix: str) -> AsyncIterator[Stores]:
    """What ``test_base``'s contracts run on here: history_length 3, dedupe window 1 s."""
    stores = cluster_stores(
        redis_cluster.url, key_prefix=key_prefix, history_length=3, block_ms=100, dedupe_ttl_s=1,
        stream_shards=SHARDS,
    )  # fmt: skip
    try:
        yield stores
    finally:
        await close(stores)


@pytest.fixture
async def cluster(redis_cluster: LocalCluster, key_prefix: str) -> AsyncIterator[Stores]:
    stores = cluster_stores(redis_cluster.url, key_prefix=key_prefix, block_ms=100, stream_shards=SHARDS)
    try:
        yield stores
    finally:
        await close(stores)


async def close(stores: Stores) -> None:
    assert isinstance(stores.connection, ClusterConnection)
    await stores.connection.flush_prefix()
    await stores.connection.close()


def stream_of(stores: Stores) -> ClusterEventStream:
    assert isinstance(stores.events, ClusterEventStream)
    return stores.events


async def shard_entries(stores: Stores) -> dict[int, list[list[str]]]:
    """Every entry of every shard (its users), by shard."""
    events = stream_of(stores)
    client: Any = events.client
    out = {}
    for n, shard in enumerate(events.shards):
        out[n] = [json.loads(fields[b"users"]) for _, fields in await client.xrange(shard.stream)]
    return out


async def test_events_of_users_on_every_master_are_stored_once_in_their_users_shard(
    cluster: Stores, redis_cluster: LocalCluster
) -> None:
    users = [f"user-{n}" for n in range(120)]
    client: Any = cluster.connection.client
    await cluster.connection.ping()  # the client reads the slot map
    masters = {client.get_node_from_key(f"x:u:{{{user}}}:h").port for user in users}
    assert masters == set(redis_cluster.ports)  # the users' slots are spread over all three masters
    assert len({key_slot(user.encode()) for user in users}) == len(users)
    batch = [KeyedEvent.of(user, event(f"i{n}", 100 + n), f"{user}-{n}") for user in users for n in range(3)]
    first = await cluster.events.append_events(batch)
    assert (first.stored, first.duplicates) == (360, 0)
    retry = await cluster.events.append_events(batch[:30])  # a client's retry of part of the batch
    assert (retry.stored, retry.duplicates) == (0, 30)

    records = await cluster.users.get_histories(users)
    for n, user in enumerate(users):
        assert records[user].sequence == 3
        assert [e.item for e in records[user].events] == ["i0", "i1", "i2"]
        if n % 40 == 0:
            state = await cluster.users.get_state(user)
            assert (state.sequence, len(state.events), state.vector) == (3, 3, None)

    entries = await shard_entries(cluster)
    for n, shard in entries.items():
        expected = [user for user in users if shard_of(user, SHARDS) == n]
        assert shard[0] == expected  # the batch: one entry per shard, each user there once
        retried = [user for user in expected if user in {keyed.user for keyed in batch[:30]}]
        assert shard[1:] == ([retried] if retried else [])  # a retry writes the entry again (duplicates)
    assert all(entries.values())


async def test_a_worker_reads_claims_acks_and_trims_every_shard(cluster: Stores) -> None:
    events = cluster.events
    await events.ensure_group()
    users = [f"w{n}" for n in range(40)]
    await events.append_events(keyed([(user, event("i1", 1)) for user in users]))
    await events.append_events(keyed([(user, event("i2", 2)) for user in users[:10]]))
    shards_used = {shard_of(user, SHARDS) for user in users}
    assert len(shards_used) == SHARDS

    first = await events.read_new("one", count=100, block_ms=50)
    assert sorted(user for entry in first for user in entry.users) == sorted(users + users[:10])
    assert {entry.entry_id.split("/")[0] for entry in first} == {str(n) for n in range(SHARDS)}
    assert (await events.backlog()).pending == len(first)
    assert await events.read_new("one", count=100, block_ms=50) == []  # all delivered; blocks, then empty

    assert await events.claim_stale("two", min_idle_ms=60_000, count=100) == []
    claimed = await events.claim_stale("two", min_idle_ms=0, count=100)  # "one" died before acking
    assert sorted(entry.entry_id for entry in claimed) == sorted(entry.entry_id for entry in first)
    await events.ack([entry.entry_id for entry in claimed])
    backlog = await events.backlog()
    assert (backlog.lag, backlog.pending) == (0, 0)
    assert await events.trim_processed() == len(first)
    assert await shard_entries(cluster) == {n: [] for n in range(SHARDS)}
    assert await events.remove_idle_consumers(min_idle_ms=0, keep="two") == ["one"]

    await events.append_events(keyed([("late", event("i3", 3))]))  # read by the blocking pass
    (late,) = await events.read_new("two", count=100, block_ms=50)
    assert late.users == ["late"] and late.entry_id.startswith(f"{shard_of('late', SHARDS)}/")


async def test_a_full_shard_refuses_the_batch_and_other_shards_accept(
    redis_cluster: LocalCluster, key_prefix: str
) -> None:
    stores = cluster_stores(redis_cluster.url, key_prefix=key_prefix, stream_maxlen=2, stream_shards=SHARDS)
    try:
        await stores.events.ensure_group()
        other = next(f"o{n}" for n in range(100) if shard_of(f"o{n}", SHARDS) != shard_of("a", SHARDS))
        await stores.events.append_events(keyed([("a", event("i1", 1))]))
        await stores.events.append_events(keyed([("a", event("i2", 2))]))
        with pytest.raises(BacklogFull) as full:
            await stores.events.append_events(keyed([(other, event("i3", 3)), ("a", event("i4", 4))]))
        assert full.value.refused == 2
        records = await stores.users.get_histories(["a", other])
        assert (records["a"].sequence, records[other].sequence) == (2, 0)  # nothing of the batch stored
        assert (await stores.events.append_events(keyed([(other, event("i3", 3))]))).stored == 1
        entries = await stores.events.read_new("w", count=10, block_ms=10)
        await stores.events.ack([entry.entry_id for entry in entries])
        assert await stores.events.trim_processed() == 3
        assert (await stores.events.append_events(keyed([("a", event("i4", 4))]))).stored == 1
    finally:
        await close(stores)


def test_the_server_mode_contradicting_the_flag_is_a_start_up_error(redis_cluster: LocalCluster) -> None:
    check_server_mode(redis_cluster.url, True, 0.5)  # agrees: nothing
    one_node = f"redis://127.0.0.1:{redis_cluster.ports[0]}/0"
    with pytest.raises(StoreMisconfigured, match=f"{one_node}: TANDEM_REDIS_CLUSTER=false"):
        check_server_mode(one_node, False, 0.5)
