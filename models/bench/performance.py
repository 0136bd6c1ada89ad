"""One benchmark run: stage floors in-process, then the whole service over HTTP -> docs/results/performance.*

    python -m models.bench.performance [--bundle PATH] [--bundle-1m PATH] [--workers 2] [--seconds 5]

For each bundle (the default one, and a 1M-item one when given):

1. floors, in this process, 1 thread, the bundle's own models: encoder batch 1, ANN search for the
   candidate count (``--candidates``, 200), the served candidate generator (every source and the merge),
   the ranker over those candidates (the service is started with
   the same count, so it reranks as many), one store read (Redis HGETALL), the answer's JSON; and the
   HTTP floor: a FastAPI app with the same request shape and a fixed answer (models.bench.bare_app) under
   uvicorn, measured with wrk at 1 connection;
2. the service (``tandem serve`` with ``--workers``, Redis when more than one) in its own process and wrk
   in a third: the cache-hit path (users whose vector is cached, after a warm-up pass) and the online
   path (vectors expire after 1 s, so every request runs the encoder), each a capacity sweep
   (models.bench.service.capacity), a paced run at half capacity, the unloaded p50, RSS per process;
   similar items at 1 connection.

``p50_ms.cache`` is the unloaded (1 connection) p50 of the cache path; ``floor_sum_ms.cache`` = HTTP +
store read + candidates (ANN and the other sources, merged) + ranker + JSON floors; their ratio is the
overhead the service adds to its stages. ``ann_ms`` alone is reported beside them.
The machine is shared: compare ratios within one run, not numbers across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from models.bench.run_all import time_calls
from models.bench.service import (
    Workload,
    bare_command,
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
from models.cli_options import add_data_dir_option
from models.reporting.files import write_report
from models.reporting.provenance import command_line, machine_info

logger = logging.getLogger(__name__)
REDIS_URL = "redis://127.0.0.1:6379/14"


def _p50(timings: np.ndarray) -> float:
    return round(float(np.percentile(timings, 50)), 4)


def _answer_json(count: int) -> Callable[[], bytes]:
    import orjson

    answer = {
        "items": [
            {"item_id": str(i), "rank": i, "score": -1.5 + i / 100, "source": "ranker", "title": "t" * 24}
            | {"category": "Drama"}
            for i in range(1, count + 1)
        ],
        "meta": {"request_id": "0" * 32, "model_version": "m", "index_version": "i", "served_by": "cache"},
        "warnings": [],
    }
    return lambda: orjson.dumps(answer)


def _store_read(redis_url: str | None) -> Callable[[], object] | None:
    if redis_url is None:
        return None
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        client.ping()
    except redis.RedisError:
        return None
    return lambda: client.hgetall("tandem-bench-floor:absent")


def stage_floors(
    bundle_path: Path, repeats: int, redis_url: str | None, candidates: int, ranker_backend: str = "auto"
) -> dict[str, Any]:
    """p50 ms of each stage with the bundle's own models, one thread, in this process. The ranker scores what
    the ANN returns for ``candidates``, the candidate count the service is started with, through the same
    ``ranker_backend`` the service uses."""
    import torch

    from models.bundle import Bundle
    from models.index import set_faiss_threads
    from models.inference import RequestContext

    torch.set_num_threads(1)
    set_faiss_threads(1)
    bundle = Bundle.load(bundle_path, ranker_backend=ranker_backend)
    encoder, index, ranker = bundle.encoder, bundle.index, bundle.ranker
    if encoder is None or index is None:
        raise ValueError(f"{bundle_path}: the service benchmark needs a bundle with an encoder and an index")
    requests = [
        (history, RequestContext(timestamp=int(history.timestamp[-1]) + 1))
        for _, history in itertools.islice(bundle.recent_histories(), 32)
        if len(history)
    ]
    rows = iter(range(10**9))
    floors: dict[str, Any] = {
        "num_items": int(bundle.catalogue.num_items),
        "user_ids": _numeric_range(list(bundle.user_index)),
        "item_ids": _numeric_range(list(bundle.item_index)),
    }
    with torch.inference_mode():
        vectors = encoder.encode([h for h, _ in requests], [c for _, c in requests])

        def encode() -> object:
            history, context = requests[next(rows) % len(requests)]
            return encoder.encode([history], [context])

        def search() -> object:
            row = next(rows) % len(requests)
            return index.search(vectors[row : row + 1], candidates, exclude=[set(requests[row][0].item)])

        pools = [index.search(vectors[r : r + 1], candidates)[0][0] for r in range(len(requests))]

        def rank() -> object:
            row = next(rows) % len(requests)
            assert ranker is not None
            return ranker.score(requests[row][0], requests[row][1], pools[row])

        generate, served = _candidate_stage(bundle, requests, vectors, candidates)
        floors["encoder_ms"] = _p50(time_calls(encode, repeats))
        floors["ann_ms"] = _p50(time_calls(search, repeats))
        # every candidate source (ANN included), de-duplicated and merged: the stage the ranker reads
        floors["candidates_ms"] = _p50(time_calls(generate, repeats))
        floors["ranker_ms"] = _p50(time_calls(rank, repeats)) if ranker is not None else 0.0
    # a bundle whose ranker lost its gate serves the merged order: its requests never run the ranker
    floors["ranker_served"] = bool(served.use_ranker and ranker is not None)
    floors["json_ms"] = _p50(time_calls(_answer_json(20), repeats))
    read = _store_read(redis_url)
    floors["store_read_ms"] = _p50(time_calls(read, repeats)) if read is not None else 0.0
    floors["ann_candidates"] = candidates
    floors["ranker_candidates"] = candidates
    return floors


def _candidate_stage(
    bundle: Any, requests: list[tuple[Any, Any]], vectors: np.ndarray, candidates: int
) -> tuple[Callable[[], object], Any]:
    """(one call of the bundle's served candidate generator (sources + merge), as the service builds it;
    the service's ``ServedPipeline``, which says whether the ranker runs)."""
    from models.candidates.from_bundle import bundle_sources, serving_pipeline
    from models.candidates.sources import CandidateRequest

    scorer = getattr(bundle.cooccurrence, "scorer", None)
    popularity = np.asarray(bundle.popularity, dtype=np.float32)
    transitions = getattr(bundle.cooccurrence, "transitions", None)
    sources = bundle_sources(
        bundle.index, scorer, popularity, np.asarray(bundle.catalogue.category), transitions
    )
    serving = dict(bundle.manifest.get("config") or {}).get("serving")
    pipeline = serving_pipeline(serving, sources, bundle.ranker, candidates)
    generator = pipeline.generator
    prepared = [
        CandidateRequest(history, context, vectors[row], np.unique(history.item).astype(np.int64))
        for row, (history, context) in enumerate(requests)
    ]
    rows = iter(range(10**9))
    return (lambda: generator.generate(prepared[next(rows) % len(prepared)])), pipeline


def http_floor(port: int, seconds: float, log_dir: Path) -> dict[str, Any]:
    """The bare FastAPI app (same request shape, fixed answer) at 1 connection and at capacity."""
    url = f"http://127.0.0.1:{port}"
    process = start_process(bare_command(port), {}, log_dir / "bare_app.log")
    try:
        wait_ready(url, process, 60)
        one = run_wrk(url, Workload(), 1, seconds)
        many = run_wrk(url, Workload(), 16, seconds)
    finally:
        stop_process(process)
    return {
        "p50_ms": one.p50_ms,
        "p99_ms": one.p99_ms,
        "rps_1_connection": one.rps,
        "rps_16_connections": many.rps,
    }


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


def _numeric_range(raw_ids: list[str]) -> tuple[int, int]:
    """first..last of the raw ids that are integers (the wrk script sends integers)."""
    numeric = sorted(int(value) for value in raw_ids if str(value).isdigit())
    if not numeric:
        raise ValueError("the bench needs integer raw ids")
    return numeric[0], numeric[-1]


def bench_bundle(name: str, bundle: Path, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    logger.info("bundle %s: stage floors", name)
    redis_url = REDIS_URL if args.workers > 1 else None
    floors = stage_floors(bundle, args.repeats, redis_url, args.candidates, args.ranker_backend)
    floors["http_ms"] = args.http_floor["p50_ms"]
    floors["sum_cache_ms"], floors["sum_online_ms"] = floor_sums(floors)
    logger.info("bundle %s: service over HTTP", name)
    paths = service_paths(bundle, args, floors["user_ids"], floors["item_ids"], log_dir)
    return {"bundle": str(bundle), "floors": floors, **paths}


def floor_sums(floors: dict[str, Any]) -> tuple[float, float]:
    """(cache path, online path) sums of the stage floors a request runs, ms: HTTP, store read, candidates
    (the ANN search and the other sources with their merge), the ranker only where the bundle serves it
    (``ranker_served``), the answer's JSON; the online path adds the encoder."""
    stages = ("http_ms", "store_read_ms", "candidates_ms", "json_ms")
    ranker = floors["ranker_ms"] if floors.get("ranker_served", True) else 0.0
    cache = sum(floors[k] for k in stages) + ranker
    return round(cache, 3), round(cache + floors["encoder_ms"], 3)


def _headline(result: dict[str, Any]) -> dict[str, Any]:
    floors = result["floors"]
    cache_p50 = result["cache"]["unloaded"]["p50_ms"]
    return {
        "capacity_rps": {
            "cache": result["cache"]["capacity_rps"],
            "online": result["online"]["capacity_rps"],
        },
        "p50_ms": {
            "cache": cache_p50,
            "online": result["online"]["unloaded"]["p50_ms"],
            "similar": result["similar"]["unloaded"]["p50_ms"],
        },
        "floor_sum_ms": {"cache": floors["sum_cache_ms"], "online": floors["sum_online_ms"]},
        "p50_over_floor_sum": {"cache": round(cache_p50 / floors["sum_cache_ms"], 2)},
    }


def _markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Serving performance: stage floors and the whole service over HTTP",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, commit "
        f"{machine['commit']}, load average at start {machine['load_average_1m']} (shared machine: compare "
        "ratios within this run).  ",
        f"Service: `tandem serve --workers {report['workers']}`"
        + (" + Redis" if report["workers"] > 1 else "")
        + f", wrk 1 thread in its own process, {report['seconds']} s per load point, capacity = highest "
        f"throughput with p99 <= {report['budget_ms']} ms and no errors.",
        "",
        "| bundle | items | floor sum cache ms | cache p50 ms (1 conn) | ratio | cache capacity rps "
        "| half-load p50/p99 ms | online p50 ms | online capacity rps | similar p50 ms | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in report["bundles"].items():
        head = _headline(result)
        half = result["cache"].get("half_load") or {}
        rss = result.get("rss_mib", {})
        lines.append(
            f"| {name} | {result['floors']['num_items']:,} | {head['floor_sum_ms']['cache']:.2f} "
            f"| {head['p50_ms']['cache']:.2f} | {head['p50_over_floor_sum']['cache']:.2f} "
            f"| {head['capacity_rps']['cache']:.0f} "
            f"| {half.get('p50_ms', float('nan')):.2f} / {half.get('p99_ms', float('nan')):.2f} "
            f"| {head['p50_ms']['online']:.2f} | {head['capacity_rps']['online']:.0f} "
            f"| {head['p50_ms']['similar']:.2f} | {' + '.join(f'{v:.0f}' for v in rss.values())} |"
        )
    lines += ["", "Stage floors (p50 ms, 1 thread, in-process; HTTP = bare FastAPI app at 1 connection):", ""]
    keys = ("http_ms", "store_read_ms", "ann_ms", "candidates_ms", "ranker_ms", "json_ms", "encoder_ms")
    lines += ["| bundle | " + " | ".join(keys) + " | ranker served |", "|---|" + "---|" * (len(keys) + 1)]
    for name, result in report["bundles"].items():
        floors = result["floors"]
        served = floors.get("ranker_served", True)
        lines.append(
            f"| {name} | "
            + " | ".join(f"{floors[k]:.3f}" for k in keys)
            + f" | {'yes' if served else 'no (not in the floor sum)'} |"
        )
    lines += ["", "Load points (connections: rps, p50/p99 ms):", ""]
    for name, result in report["bundles"].items():
        for path in ("cache", "online"):
            points = ", ".join(
                f"{p['connections']}: {p['rps']:.0f} rps {p['p50_ms']:.1f}/{p['p99_ms']:.1f}"
                + (f" ({p['errors']} errors)" if p["errors"] else "")
                for p in result[path]["sweep"]
            )
            share = ", ".join(f"{k} {v:.0%}" for k, v in result[path].get("served_by", {}).items())
            lines.append(f"- {name} {path} ({share}): {points}")
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    """Per bundle, against wrk's connections: throughput (top) and p50 / p99 latency (bottom). The sweeps
    are not monotone in throughput (which worker accepts the connections varies), so connections, the
    load that was set, is the x axis."""
    names = list(report["bundles"])
    figure, axes = plt.subplots(2, len(names), figsize=(6 * len(names), 6.5), squeeze=False, sharex="col")
    for column, name in enumerate(names):
        result = report["bundles"][name]
        top, bottom = axes[0][column], axes[1][column]
        for route, colour in (("cache", "tab:blue"), ("online", "tab:orange")):
            sweep = result[route]["sweep"]
            connections = [p["connections"] for p in sweep]
            top.plot(connections, [p["rps"] for p in sweep], "o-", color=colour, label=route)
            bottom.plot(connections, [p["p50_ms"] for p in sweep], "o-", color=colour, label=f"{route} p50")
            bottom.plot(connections, [p["p99_ms"] for p in sweep], "s--", color=colour, label=f"{route} p99")
        bottom.axhline(report["budget_ms"], color="grey", linewidth=1, label="p99 budget")
        bottom.axhline(
            result["floors"]["sum_cache_ms"], color="black", linestyle=":", label="floor sum (cache)"
        )
        top.set_ylabel("throughput (requests/s)")
        top.set_ylim(bottom=0)
        top.set_title(f"{name}: load sweep (wrk, {report['workers']} workers)", fontsize=9)
        top.legend(fontsize=7)
        bottom.set_yscale("log")
        bottom.set_xscale("log", base=2)
        ticks = sorted({p["connections"] for route in ("cache", "online") for p in result[route]["sweep"]})
        bottom.set_xticks(ticks, [str(t) for t in ticks])
        bottom.set_xlabel("wrk connections")
        bottom.set_ylabel("latency ms (log)")
        bottom.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def default_bundle_path(data_dir: Path | None) -> Path:
    from models.pipeline import ensure_default_bundle

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
        help="the 1M-item bundle (built by models.bench.synthetic_bundle when missing, a few minutes)",
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
    parser.add_argument("--out", type=Path, default=Path("docs/results/performance"))
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
            from models.bench.synthetic_bundle import build_synthetic_bundle

            logger.info("building the 1M-item bundle at %s", args.bundle_1m)
            build_synthetic_bundle(args.bundle_1m)
        bundles["synthetic_1m"] = args.bundle_1m
    logger.info("HTTP floor (bare FastAPI app)")
    args.http_floor = http_floor(args.port, args.seconds, log_dir)
    report["http_floor"] = args.http_floor
    report["bundles"] = {name: bench_bundle(name, path, args, log_dir) for name, path in bundles.items()}
    report.update(_headline(report["bundles"]["default"]))
    text = _markdown(report)
    write_report(args.out, report, text, lambda png: _plot(report, png))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
