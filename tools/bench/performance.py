"""One benchmark run: stage floors in-process, then the whole service over HTTP -> <out>.{md,json,png}

    make bench [BENCH_ARGS='--bundle PATH --bundle-1m PATH --workers 2 --seconds 5']

For each bundle (the default one, and a 1M-item one when given):

1. floors (tools.bench.floors), in this process, 1 thread, the bundle's own models: encoder batch 1, ANN
   search for the candidate count (``--candidates``, 200), the served candidate generator (every source
   and the merge), the ranker over those candidates (the service is started with the same count, so it
   reranks as many), one store read (Redis HGETALL), the answer's JSON; and the HTTP floor: a FastAPI
   app with the same request shape and a fixed answer (tools.bench.bare_app) under uvicorn, measured with
   wrk at 1 connection;
2. the service (``tandem serve`` with ``--workers``, Redis when more than one) in its own process and wrk
   in a third: the cache-hit path (users whose vector is cached, after a warm-up pass) and the online
   path (vectors expire after 1 s, so every request runs the encoder), each a capacity sweep
   (tools.bench.service.capacity), a paced run at half capacity, the unloaded p50, RSS per process;
   similar items at 1 connection.

``p50_ms.cache`` is the unloaded (1 connection) p50 of the cache path; ``floor_sum_ms.cache`` = HTTP +
store read + candidates (ANN and the other sources, merged) + ranker + JSON floors; their ratio is the
overhead the service adds to its stages. ``ann_ms`` alone is reported beside them.
The machine is shared: compare ratios within one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.options import add_data_dir_option
from models.reporting.files import DEFAULT_RESULTS_DIR, write_report
from models.reporting.provenance import command_line, machine_info
from tools.bench.floors import floor_sums, http_floor, stage_floors
from tools.bench.performance_report import headline, markdown, plot
from tools.bench.service import (
    Workload,
    capacity,
    rss_mib,
    run_wrk,
    serve_command,
    served_by_counts,
    start_process,
    stop_process,
    visit_every_user,
    wait_ready,
)

logger = logging.getLogger(__name__)
REDIS_URL = "redis://127.0.0.1:6379/14"


@contextlib.contextmanager
def running_service(
    bundle: Path, port: int, workers: int, env: dict[str, str], log_path: Path
) -> Iterator[tuple[str, int]]:
    process = start_process(serve_command(bundle, port, workers), env, log_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, 600)
        yield url, process.pid
    finally:
        stop_process(process)


def _service_env(
    workers: int, prefix: str, vector_ttl_s: int | None, candidates: int, ranker_backend: str = "auto"
) -> dict[str, str]:
    env = {
        "TANDEM_CANDIDATE_COUNT": str(candidates),
        "TANDEM_RANKER_BACKEND": ranker_backend,
        "TANDEM_WARM_VECTORS": "false",  # the cache path warms its own users; the online path must miss
        "TANDEM_LOG_LEVEL": "WARNING",
        "TANDEM_DRAIN_SECONDS": "0",
        "TANDEM_KEY_PREFIX": prefix,
        "TANDEM_MAX_IN_FLIGHT": "1024",
    }
    if workers > 1:
        env["TANDEM_REDIS_URL"] = REDIS_URL
    if vector_ttl_s is not None:
        env["TANDEM_VECTOR_TTL_S"] = str(vector_ttl_s)
    return env


def _served_share(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    total = sum(delta.values()) or 1.0
    return {key: round(value / total, 4) for key, value in delta.items() if value}


def service_paths(
    bundle: Path, args: argparse.Namespace, users: tuple[int, int], items: tuple[int, int], log_dir: Path
) -> dict[str, Any]:
    """Cache path, online path and similar items of one bundle over HTTP."""
    out: dict[str, Any] = {}
    prefix = f"tandem-bench-{uuid.uuid4().hex[:8]}"
    cache_users = Workload("recommend", users[0], min(users[1], users[0] + args.cache_users - 1))
    try:
        with running_service(
            bundle,
            args.port,
            args.workers,
            _service_env(args.workers, prefix, None, args.candidates, args.ranker_backend),
            log_dir / "cache.log",
        ) as (url, pid):
            visit_every_user(url, cache_users)  # every user's vector cached before measuring
            before = served_by_counts(url)
            unloaded = run_wrk(url, cache_users, 1, args.seconds)
            sweep = capacity(url, cache_users, args.budget_ms, seconds=args.seconds)
            out["cache"] = {"unloaded": vars(unloaded), **sweep.to_dict()}
            out["cache"]["served_by"] = _served_share(before, served_by_counts(url))
            similar = run_wrk(url, Workload("similar", items[0], items[1], 10), 1, args.seconds)
            out["similar"] = {"unloaded": vars(similar)}
            out["rss_mib"] = rss_mib(pid)
        with running_service(
            bundle,
            args.port,
            args.workers,
            _service_env(args.workers, prefix + "o", 1, args.candidates, args.ranker_backend),
            log_dir / "online.log",
        ) as (url, _):
            online_users = Workload("recommend", users[0], users[1])
            run_wrk(url, online_users, 2, 2)  # warm-up
            before = served_by_counts(url)
            unloaded = run_wrk(url, online_users, 1, args.seconds)
            sweep = capacity(url, online_users, args.budget_ms, seconds=args.seconds)
            out["online"] = {"unloaded": vars(unloaded), **sweep.to_dict()}
            out["online"]["served_by"] = _served_share(before, served_by_counts(url))
    finally:
        _clean_redis(prefix)
    return out


def _clean_redis(prefix: str) -> None:
    """Deletes every key the runs wrote under their prefixes (bench DB only)."""
    import redis

    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=2.0, socket_connect_timeout=1.0)
        for pattern in (f"{prefix}:*", f"{prefix}o:*"):
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                client.delete(*batch[start : start + 1000])


def bench_bundle(name: str, bundle: Path, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    logger.info("bundle %s: stage floors", name)
    redis_url = REDIS_URL if args.workers > 1 else None
    floors = stage_floors(bundle, args.repeats, redis_url, args.candidates, args.ranker_backend)
    floors["http_ms"] = args.http_floor["p50_ms"]
    floors["sum_cache_ms"], floors["sum_online_ms"] = floor_sums(floors)
    logger.info("bundle %s: service over HTTP", name)
    paths = service_paths(bundle, args, floors["user_ids"], floors["item_ids"], log_dir)
    return {"bundle": str(bundle), "floors": floors, **paths}


def default_bundle_path(data_dir: Path | None) -> Path:
    from models.bundle.default import ensure_default_bundle

    return Path(ensure_default_bundle(data_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="default: the default bundle (built if needed)"
    )
    parser.add_argument(
        "--bundle-1m",
        type=Path,
        default=Path("var/bundles/synthetic-1m"),
        help="the 1M-item bundle (built by tools.bench.synthetic_bundle when missing, a few minutes)",
    )
    parser.add_argument("--skip-1m", action="store_true", help="only the default bundle")
    parser.add_argument(
        "--ranker-backend",
        default="auto",
        choices=("auto", "onnxruntime", "torchscript", "eager"),
        help="TANDEM_RANKER_BACKEND of the service, and the ranker floor's",
    )
    add_data_dir_option(parser)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8391)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load point")
    parser.add_argument("--repeats", type=int, default=200, help="calls per in-process floor")
    parser.add_argument("--budget-ms", type=float, default=100.0, help="p99 budget of the capacity sweep")
    parser.add_argument(
        "--candidates", type=int, default=200, help="ANN candidates, all reranked (TANDEM_CANDIDATE_COUNT)"
    )
    parser.add_argument("--cache-users", type=int, default=200, help="users cycled on the cache path")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS_DIR / "performance",
        help="report path without suffix (make bench: docs/results/performance)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log_dir = Path("var/bench-logs")
    report: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_info(),
        "workers": args.workers,
        "seconds": args.seconds,
        "budget_ms": args.budget_ms,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    bundles = {"default": args.bundle or default_bundle_path(args.data_dir)}
    if not args.skip_1m:
        if not (args.bundle_1m / "manifest.json").is_file():
            from tools.bench.synthetic_bundle import build_synthetic_bundle

            logger.info("building the 1M-item bundle at %s", args.bundle_1m)
            build_synthetic_bundle(args.bundle_1m)
        bundles["synthetic_1m"] = args.bundle_1m
    logger.info("HTTP floor (bare FastAPI app)")
    args.http_floor = http_floor(args.port, args.seconds, log_dir)
    report["http_floor"] = args.http_floor
    report["bundles"] = {name: bench_bundle(name, path, args, log_dir) for name, path in bundles.items()}
    report.update(headline(report["bundles"]["default"]))
    text = markdown(report)
    write_report(args.out, report, text, lambda png: plot(report, png))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
