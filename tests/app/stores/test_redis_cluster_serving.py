"""The serving integration tests of one Redis, run on the 3-master Redis Cluster: the app (recommend,
events) and a vector worker with ``TANDEM_REDIS_CLUSTER=true`` and four stream shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.api.test_routes_events import (  # noqa: F401 (collected here, on the cluster)
    test_a_retried_request_is_stored_once_and_reports_its_duplicates,
    test_unknown_user_becomes_known_through_events,
)
from tests.app.conftest import make_settings, running_app
from tests.app.redis_cluster import LocalCluster, local_cluster
from tests.app.services.test_worker import (  # noqa: F401
    test_crash_between_read_and_ack_is_recovered_idempotently,
    test_events_worker_fresher_vector_changed_recommendations,
)

pytestmark = [pytest.mark.anyio, pytest.mark.scale]


@pytest.fixture(autouse=True)
def cluster_mode(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``make_settings`` reads the rest of the settings from the environment."""
    monkeypatch.setenv("TANDEM_REDIS_CLUSTER", "true")
    monkeypatch.setenv("TANDEM_STREAM_SHARDS", "4")
    yield


@pytest.fixture
def redis_url(redis_cluster: LocalCluster) -> str:
    return redis_cluster.url


async def test_the_app_serves_from_the_cluster_and_a_dead_master_degrades_never_500(
    bundle_v1: Path, key_prefix: str, tmp_path: Path
) -> None:
    from tests.app.api.test_routes_events import events_for

    with local_cluster(tmp_path) as cluster:
        settings = make_settings(bundle_v1, redis_url=cluster.url, key_prefix=key_prefix)
        assert settings.redis_cluster
        async with running_app(settings) as (app, client):
            assert "redis-cluster:ok" in (await client.get("/readyz")).text
            users = [f"u{n}" for n in range(12)]
            for user in users:
                accepted = await client.post("/v1/events", json=events_for(user, ["i20", "i21"]))
                assert accepted.status_code == 202
            stores = app.state.services.stores
            await stores.connection.ping()
            dead_port = cluster.ports[0]
            node_of = stores.connection.client.get_node_from_key
            # an event needs its user's slot and its user's stream shard's slot
            on_dead = [
                user
                for user in users
                if dead_port
                in {
                    node_of(stores.connection.user_key(user, "h")).port,
                    node_of(stores.events.stream_of(user)).port,
                }
            ]
            assert on_dead and len(on_dead) < len(users)
            cluster.processes[0].kill()  # kill -9 of a master, no replica: its slots are gone
            cluster.processes[0].wait(timeout=10)
            for user in users:
                answer = await client.post("/v1/recommend", json={"user_id": user, "k": 5})
                assert answer.status_code == 200  # from the bundle's history when the store cannot answer
                sent = await client.post("/v1/events", json=events_for(user, ["i22"], start=1_750_000_100))
                assert sent.status_code == (503 if user in on_dead else 202), (user, sent.text)
