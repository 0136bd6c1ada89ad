"""``redis_cluster``: the fault suite's load and oracle (tests/faults) on a 3-master Redis Cluster.

The fault suite's stack (``tandem serve --workers 2``, one ``tandem worker``), pointed at a local cluster
(tests/app/redis_cluster.py: 3 masters, no replicas, AOF ``appendfsync always``,
``cluster-require-full-coverage no``) with ``TANDEM_REDIS_CLUSTER=true``; its traffic (recommends for the
bundle's users, event batches of fresh users retried until a 202) and its oracle (every accepted event's
idempotency key in its user's dedupe set, sequence numbers, fresh vectors) read through a cluster client.

- ``baseline``: 6 s of traffic, no fault;
- ``node_killed``: after 2 s a master is killed with ``kill -9``, restarted from its AOF 4 s later (same
  port, nodes file and data directory), 5 s more traffic;
- ``slot_migrated``: after 2 s every slot of the first master that holds an active user's keys is moved to
  the second master, one slot at a time, while the traffic goes on (``CLUSTER SETSLOT IMPORTING /
  MIGRATING``, ``MIGRATE`` of its keys in batches, ``SETSLOT NODE`` on every master: what ``redis-cli
  --cluster reshard`` does, for chosen slots), 4 s more traffic.

Targets (the fault suite's): failed 0, stored = accepted, lost 0, duplicated 0, every vector fresh.

    python -m tools.scale.redis_cluster [baseline] [node_killed] [slot_migrated] [--keep]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import redis

from tests.app.redis_cluster import HOST, LocalCluster, local_cluster
from tests.faults.harness import (
    Ledger,
    RedisServer,
    Stack,
    Traffic,
    catalogue_ids,
    run_for,
    settle_and_count,
    wait_until,
)
from tools.scale.common import small_bundles, write_measurement
from tools.scale.measured import scenario_met

NAME = "redis_cluster"
SHARDS = 4
SCENARIOS = ("baseline", "node_killed", "slot_migrated")


class ClusterRedis(RedisServer):
    """The fault stack's Redis, as a local 3-master cluster: ``url`` lists every node, ``client()`` is a
    cluster client; ``kill_master``/``restart_master`` kill -9 one node and start it again."""

    def __init__(self, workdir: Path):
        super().__init__(workdir)
        self.context: AbstractContextManager[LocalCluster] | None = None
        self.cluster: LocalCluster | None = None

    @property
    def url(self) -> str:
        assert self.cluster is not None
        return self.cluster.url

    def client(self) -> Any:
        assert self.cluster is not None
        return redis.RedisCluster(host=HOST, port=self.cluster.ports[0], socket_timeout=5)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.context = local_cluster(self.workdir)
        self.cluster = self.context.__enter__()

    def stop(self) -> None:
        if self.context is not None:
            self.context.__exit__(None, None, None)
            self.context = None

    def kill_master(self, n: int) -> list[str]:
        assert self.cluster is not None
        process = self.cluster.processes[n]
        command = [str(arg) for arg in process.args]  # type: ignore[union-attr]
        process.kill()
        process.wait(timeout=10)
        return command

    def restart_master(self, n: int, command: list[str]) -> None:
        """Starts the node again with its own nodes file and AOF; waits until every node says ok."""
        cluster = self.cluster
        assert cluster is not None
        cluster.processes[n] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = cluster.ports[n]
        assert wait_until(lambda: cluster.cli(port, "ping").strip() == "PONG", 30), "node did not restart"
        ok = "cluster_state:ok"
        assert wait_until(lambda: all(ok in cluster.cli(p, "cluster", "info") for p in cluster.ports), 30)


class ClusterStack(Stack):
    """The fault suite's stack on ``ClusterRedis``; the backlog is every stream shard's."""

    def __post_init__(self) -> None:
        self.redis = ClusterRedis(self.workdir / "redis")
        self.env_overrides = {
            "TANDEM_REDIS_CLUSTER": "true",
            "TANDEM_STREAM_SHARDS": str(SHARDS),
            **self.env_overrides,
        }

    def backlog_drained(self) -> bool:
        client = self.redis.client()
        for n in range(SHARDS):
            for group in client.xinfo_groups(f"{self.prefix}:events:{{{n}}}"):
                if int(group["pending"]) or int(group.get("lag") or 0):
                    return False
        return True


def move_slot(cluster: LocalCluster, slot: int, source: int, target: int) -> int:
    """Moves ``slot`` from master ``source`` to master ``target`` (indexes in ``cluster.ports``) with its
    keys; returns how many keys moved."""
    src, dst = cluster.ports[source], cluster.ports[target]
    src_id, dst_id = (cluster.cli(port, "cluster", "myid").strip() for port in (src, dst))
    cluster.cli(dst, "cluster", "setslot", str(slot), "importing", src_id)
    cluster.cli(src, "cluster", "setslot", str(slot), "migrating", dst_id)
    moved = 0
    while keys := cluster.cli(src, "cluster", "getkeysinslot", str(slot), "100").split():
        answer = cluster.cli(src, "migrate", HOST, str(dst), "", "0", "5000", "KEYS", *keys)
        if "OK" not in answer and "NOKEY" not in answer:
            raise RuntimeError(f"MIGRATE of slot {slot} failed: {answer}")
        moved += len(keys)
    for port in cluster.ports:
        cluster.cli(port, "cluster", "setslot", str(slot), "node", dst_id)
    return moved


def users_on(stack: ClusterStack, users: list[str], port: int) -> int:
    """How many of ``users`` have their keys on the node at ``port``."""
    client: Any = stack.redis.client()
    return sum(client.get_node_from_key(f"{stack.prefix}:u:{{{user}}}:h").port == port for user in users)


def migrate_active_slots(stack: ClusterStack, users: list[str]) -> dict[str, Any]:
    redis_nodes = stack.redis
    assert isinstance(redis_nodes, ClusterRedis) and redis_nodes.cluster is not None
    cluster = redis_nodes.cluster
    client: Any = redis_nodes.client()
    source = cluster.ports[0]
    keys = [f"{stack.prefix}:u:{{{user}}}:h" for user in users]
    on_source = [key for key in keys if client.get_node_from_key(key).port == source]
    slots = sorted({client.keyslot(key) for key in on_source})
    started = time.monotonic()
    moved = sum(move_slot(cluster, slot, 0, 1) for slot in slots)
    return {
        "slots_moved": len(slots),
        "keys_moved": moved,
        "users_moved": len(on_source),
        "migration_s": round(time.monotonic() - started, 1),
        "fault": "active users' slots moved from one master to another mid-load",
    }


def scenario(stack: ClusterStack, tag: str, fault: str | None) -> dict[str, Any]:
    items, known = catalogue_ids(stack.bundle)
    ledger = Ledger()
    traffic = Traffic(stack.base_url, ledger, tag=tag, items=items, known_users=known).start()
    row: dict[str, Any] = {}
    if fault == "slot_migrated":
        time.sleep(2)
        row = migrate_active_slots(stack, traffic.users())
        time.sleep(4)
    elif fault == "node_killed":
        redis_nodes = stack.redis
        assert isinstance(redis_nodes, ClusterRedis) and redis_nodes.cluster is not None
        time.sleep(2)
        command = redis_nodes.kill_master(0)
        time.sleep(4)
        started = time.monotonic()
        redis_nodes.restart_master(0, command)
        row["cluster_ok_after_restart_s"] = round(time.monotonic() - started, 1)
        time.sleep(5)
        row["nodes_killed"] = 1
        row["fault"] = "kill -9 of a master, 4 s down, restarted from its AOF"
        row["users_on_killed_master"] = users_on(stack, traffic.users(), redis_nodes.cluster.ports[0])
    else:
        for _ in run_for(6):
            pass
    traffic.stop()
    counted = settle_and_count(stack, ledger, traffic.users(), settle_s=60)
    counted["target_met"] = scenario_met(counted)
    return {**counted, **row}


def measure(root: Path, names: tuple[str, ...] = SCENARIOS) -> dict[str, Any]:
    bundle, _ = small_bundles(root / "bundles")
    scenarios = {}
    for name in names:
        stack = ClusterStack(root / name, bundle)
        try:
            stack.start()
            scenarios[name] = scenario(stack, name, None if name == "baseline" else name)
        finally:
            stack.stop()
    return {
        "scenarios": scenarios,
        "nodes_killed": scenarios.get("node_killed", {}).get("nodes_killed", 0),
        "slots_moved": scenarios.get("slot_migrated", {}).get("slots_moved", 0),
        "setup": "the fault suite's stack (tandem serve --workers 2, one tandem worker, tiny bundle) on a "
        f"local 3-master Redis Cluster (no replicas, AOF fsync always), TANDEM_STREAM_SHARDS={SHARDS}; "
        "2 recommend threads, 2 event senders x 10 fresh users (batches of 4, retried until 202)",
    }


def main(argv: list[str]) -> int:
    root = Path(tempfile.mkdtemp(prefix="scale-redis-cluster-"))
    keep = "--keep" in argv
    names = tuple(name for name in argv if name in SCENARIOS) or SCENARIOS
    try:
        result = measure(root, names)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if keep:
        print(f"kept {root}")
    write_measurement(NAME, result, " ".join(["python -m tools.scale.redis_cluster", *argv]))
    return 0 if all(row["target_met"] for row in result["scenarios"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
