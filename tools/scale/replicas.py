"""``replicas``: stateless API replicas over one Redis Cluster, one replica against two.

A local 3-master cluster (tests/app/redis_cluster.py) with ``TANDEM_REDIS_CLUSTER=true``; two replicas
(``tandem serve --workers 1`` each, own port, the default bundle unless ``--bundle``). The cache path: the
first ``--users`` users get one recommend each through replica A first, so their vectors are in the cluster
for both. Then ``--rounds`` alternating rounds (1-2, 2-1, 1-2, ...), each a ``--seconds`` wrk run of 16
connections: all on A (rps_1), or 8 on A and 8 on B at once, one wrk each, summed (rps_2). Reported: the
median of the rounds of each, and their ratio (target >= 1.5: two replicas on two cores shared with wrk).

Then the cross-replica check, for ``--checks`` users: B's answer, its first item clicked through A, and B's
next answer with ``exclude_seen: true`` must not hold it (the history both read lives in the cluster).

    python -m tools.scale.replicas [--bundle PATH] [--rounds 3] [--seconds 10] [--checks 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.app.redis_cluster import local_cluster
from tools.bench.floors import numeric_range
from tools.bench.service import LoadPoint, Workload, run_wrk, visit_every_user
from tools.scale.common import DATA_DIR, Api, bundle_or_default, write_measurement

NAME = "replicas"
CONNECTIONS = 16


def replica_env(bundle: Path, redis_url: str) -> dict[str, str]:
    """One replica's settings: the bundle, the cluster, the cache path measured as the bench does."""
    return {
        "TANDEM_BUNDLE_PATH": str(bundle),
        "TANDEM_REDIS_URL": redis_url,
        "TANDEM_REDIS_CLUSTER": "true",
        "TANDEM_KEY_PREFIX": "replicas",
        "TANDEM_WARM_VECTORS": "false",
        "TANDEM_DRAIN_SECONDS": "0",
        "TANDEM_MAX_IN_FLIGHT": "1024",
    }


def split_connections(replicas: int, total: int = CONNECTIONS) -> list[int]:
    """``total`` connections over ``replicas`` wrk runs, as even as possible."""
    return [total // replicas + (1 if n < total % replicas else 0) for n in range(replicas)]


def concurrent_rps(urls: list[str], workload: Workload, seconds: float) -> tuple[float, list[LoadPoint]]:
    """One wrk per url at once (``split_connections``), -> (summed requests per second, the points)."""
    points: list[LoadPoint | None] = [None] * len(urls)
    counts = split_connections(len(urls))

    def one(n: int) -> None:
        points[n] = run_wrk(urls[n], workload, counts[n], seconds)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [point for point in points if point is not None]
    if len(done) != len(urls):
        raise RuntimeError("a wrk run gave no result")
    return round(sum(point.rps for point in done), 1), done


def round_order(rounds: int) -> list[list[int]]:
    """Replica counts in run order, alternating which goes first: [[1, 2], [2, 1], [1, 2], ...]."""
    return [[1, 2] if n % 2 == 0 else [2, 1] for n in range(rounds)]


def cross_replica_checks(a: str, b: str, users: list[str], timestamp: int) -> dict[str, Any]:
    """For each user: B's first item, clicked through A, must be absent from B's next answer."""
    violations, checks = 0, 0
    with httpx.Client(timeout=10) as client:
        for user in users:
            ask = {"user_id": user, "k": 10, "options": {"exclude_seen": True}}
            first = client.post(f"{b}/v1/recommend", json=ask)
            if first.status_code != 200:
                raise RuntimeError(f"recommend through B: {first.status_code} {first.text[:300]}")
            items = [row["item_id"] for row in first.json()["items"]]
            if not items:
                continue
            event = {"user_id": user, "item_id": items[0], "action": "click", "timestamp": timestamp}
            stored = client.post(f"{a}/v1/events", json={"events": [event]})
            if stored.status_code != 202:
                raise RuntimeError(f"event refused through A: {stored.status_code} {stored.text[:200]}")
            after = client.post(f"{b}/v1/recommend", json=ask)
            if after.status_code != 200:
                raise RuntimeError(f"recommend through B: {after.status_code} {after.text[:300]}")
            checks += 1
            violations += items[0] in [row["item_id"] for row in after.json()["items"]]
    return {"cross_replica_checks": checks, "cross_replica_violations": violations}


def measure(bundle: Path, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from models.bundle.load import Bundle

    loaded = Bundle.load(bundle)
    first, last = numeric_range(list(loaded.user_index))
    workload = Workload("recommend", first, min(last, first + args.users - 1))
    timestamp = int(time.time())
    with local_cluster(root / "cluster") as cluster:
        env = replica_env(bundle, cluster.url)
        apis = [Api(name, root / name, env).start() for name in ("replica-a", "replica-b")]
        try:
            visit_every_user(apis[0].url, workload)
            runs: dict[int, list[float]] = {1: [], 2: []}
            points: list[dict[str, Any]] = []
            for order in [] if args.checks_only else round_order(args.rounds):
                for count in order:
                    rps, loads = concurrent_rps([api.url for api in apis[:count]], workload, args.seconds)
                    runs[count].append(rps)
                    points.append({"replicas": count, "rps": rps, "p99_ms": [p.p99_ms for p in loads]})
            users = [str(user) for user in range(workload.first, workload.first + args.checks)]
            checked = cross_replica_checks(apis[0].url, apis[1].url, users, timestamp)
        finally:
            for api in apis:
                api.stop()
    rps_1, rps_2 = (statistics.median(runs[n]) if runs[n] else 0.0 for n in (1, 2))
    return {
        "rps_1": rps_1,
        "rps_2": rps_2,
        "ratio": round(rps_2 / rps_1, 3) if rps_1 else None,
        "met": bool(rps_1) and rps_2 >= 1.5 * rps_1 and checked["cross_replica_violations"] == 0,
        **checked,
        "rounds": points,
        "bundle": str(bundle),
        "setup": f"2 x tandem serve --workers 1, 3-master Redis Cluster, {CONNECTIONS} connections, "
        f"{args.seconds:g} s per run, {args.users} cache-path users",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scale.replicas", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the default bundle (built)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--checks", type=int, default=50)
    parser.add_argument("--checks-only", action="store_true", help="skip the throughput rounds")
    args = parser.parse_args(argv)
    bundle = bundle_or_default(args.bundle, args.data_dir)
    with tempfile.TemporaryDirectory(prefix="tandem-replicas-") as root:
        section = measure(bundle, args, Path(root))
    command = "python -m tools.scale.replicas " + " ".join(sys.argv[1:] if argv is None else argv)
    write_measurement(NAME, section, command.strip())
    return 0 if section["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
