"""The Redis Cluster fixture (tests marked ``scale``): 3 masters started once per session, torn down after."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.app.redis_cluster import LocalCluster, local_cluster, redis_binaries


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    if not redis_binaries():
        message = "redis-server / redis-cli not found (apt-get install -y redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with local_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster
