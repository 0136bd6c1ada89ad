"""Redis Cluster mode without a cluster: the start-up errors (db other than 0, the flag against a server
without cluster support), no node answering (degraded, not an error), and the cluster's failures as
``StoreUnavailable`` (the client's calls mocked to raise each), so routes degrade instead of 500-ing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis import exceptions as redis_errors

from app.core.config import Settings
from app.core.failures import StoreMisconfigured
from app.startup import open_stores
from app.stores.base import Stores, StoreUnavailable, keyed
from app.stores.redis_cluster import check_server_mode, cluster_nodes, cluster_stores, redacted
from tests.app.conftest import free_port
from tests.app.stores.test_base import event

pytestmark = pytest.mark.anyio

CLUSTER_FAILURES = [
    redis_errors.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis_errors.TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis_errors.SlotNotCoveredError('Slot "866" is not covered by the cluster.'),
    redis_errors.ClusterError("TTL exhausted."),
    redis_errors.RedisClusterException("Redis Cluster cannot be connected. Please provide at least one node"),
    RuntimeError("unable to perform operation on <TCPTransport closed=True>; the handler is closed"),
]


def test_startup_nodes_are_parsed_and_a_db_other_than_0_names_the_url() -> None:
    nodes, options = cluster_nodes("redis://app:secret@h1:7000,h2:7001,redis://h3")
    assert nodes == [("h1", 7000), ("h2", 7001), ("h3", 6379)]
    assert options == {"username": "app", "password": "secret", "ssl": False}
    url = "redis://app:secret@h1:7000/2,h2:7001"
    with pytest.raises(StoreMisconfigured, match=r"redis://app:\*\*\*@h1:7000/2,h2:7001: .* db 2") as error:
        cluster_nodes(url)
    assert "secret" not in str(error.value) and redacted("redis://h1:1") == "redis://h1:1"
    with pytest.raises(StoreMisconfigured, match=r"h1:7000,h2:7001/3: .* db 3"):
        open_stores(Settings(redis_url="redis://h1:7000,h2:7001/3", redis_cluster=True))


def test_the_cluster_flag_needs_a_url() -> None:
    with pytest.raises(ValueError, match="redis_cluster needs redis_url"):
        Settings(redis_cluster=True)


@pytest.mark.redis
def test_the_flag_against_a_server_without_cluster_support_names_the_url(redis_url: str) -> None:
    check_server_mode(redis_url, False, 0.5)  # agrees: nothing
    nodes = redis_url.rsplit("/", 1)[0] + "/0"
    with pytest.raises(StoreMisconfigured, match=f"{nodes}: TANDEM_REDIS_CLUSTER=true .*cluster_enabled:0"):
        open_stores(Settings(redis_url=nodes, redis_cluster=True))


async def test_no_node_answering_at_start_is_degraded_not_an_error() -> None:
    url = f"redis://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    stores = open_stores(
        Settings(redis_url=url, redis_cluster=True, redis_connect_timeout_s=0.1, redis_socket_timeout_s=0.1)
    )
    started = time.perf_counter()
    try:
        assert stores.kind == "redis-cluster"
        with pytest.raises(StoreUnavailable, match="get_state"):
            await stores.users.get_state("a")
        with pytest.raises(StoreUnavailable):
            await stores.events.append_events(keyed([("a", event("i1", 1))]))
        with pytest.raises(StoreUnavailable, match="ping"):
            await stores.connection.ping()
    finally:
        await stores.connection.close()
    assert time.perf_counter() - started < 8


@pytest.fixture
async def unreachable() -> AsyncIterator[Stores]:
    stores = cluster_stores(f"redis://127.0.0.1:{free_port()}", connect_timeout_s=0.1, stream_shards=2)
    try:
        yield stores
    finally:
        await stores.connection.close()


class FailingPipeline:
    """A pipeline that queues anything and fails on ``execute``."""

    def __init__(self, failure: Exception):
        self.failure = failure

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self

    async def execute(self) -> Any:
        raise self.failure


@pytest.mark.parametrize("failure", CLUSTER_FAILURES, ids=lambda failure: failure.__class__.__name__)
async def test_cluster_failures_are_store_unavailable(
    unreachable: Stores, failure: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise failure

    client = unreachable.connection.client  # type: ignore[attr-defined]
    monkeypatch.setattr(client, "execute_command", fail)
    monkeypatch.setattr(client, "pipeline", lambda *args, **kwargs: FailingPipeline(failure))
    calls = {
        "desired_bundle": lambda: unreachable.registry.desired_bundle(),
        "get_state": lambda: unreachable.users.get_state("a"),
        "get_histories": lambda: unreachable.users.get_histories(["a", "b"]),
        "put_vectors": lambda: unreachable.users.put_vectors({}, 60),
        "append_backlog": lambda: unreachable.events.append_events(keyed([("a", event("i1", 1))])),
        "read_new": lambda: unreachable.events.read_new("w", count=10, block_ms=10),
        "ensure_group": lambda: unreachable.events.ensure_group(),
        "ping": lambda: unreachable.connection.ping(),
    }
    for operation, call in calls.items():
        with pytest.raises(StoreUnavailable, match=f"redis {operation} failed: {failure.__class__.__name__}"):
            await call()


async def test_a_cross_slot_bug_is_not_mistaken_for_an_outage(
    unreachable: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fail(*args: Any, **kwargs: Any) -> Any:
        raise redis_errors.CrossSlotTransactionError(
            "All keys involved in a cluster transaction must map to the same slot"
        )

    monkeypatch.setattr(unreachable.connection.client, "execute_command", fail)  # type: ignore[attr-defined]
    with pytest.raises(redis_errors.CrossSlotTransactionError):
        await unreachable.registry.desired_bundle()
