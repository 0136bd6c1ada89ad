"""The floors of one bundle: each serving stage alone, in this process, one thread, the bundle's own models
(encoder batch 1, ANN search, the served candidate generator, the ranker, a store read, the answer's JSON),
and the HTTP floor: the bare FastAPI app (tools.bench.bare_app) under uvicorn, measured with wrk.

``floor_sums`` adds the stages a cache-path and an online request run; ``tools.bench.performance`` sets the
service's measured p50 against them.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tools.bench.run_all import time_calls
from tools.bench.service import Workload, bare_command, run_wrk, start_process, stop_process, wait_ready


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

    from models.bundle.load import Bundle
    from models.index import set_faiss_threads
    from models.types import RequestContext

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
        "user_ids": numeric_range(list(bundle.user_index)),
        "item_ids": numeric_range(list(bundle.item_index)),
    }
    with torch.inference_mode():
        vectors = encoder.encode([h for h, _ in requests], [c for _, c in requests])

        def encode() -> object:
            history, context = requests[next(rows) % len(requests)]
            return encoder.encode([history], [context])

        def search() -> object:
            row = next(rows) % len(requests)
            return index.search(vectors[row : row + 1], candidates, exclude=[set(requests[row][0].item)])

        stages, served = _candidate_stage(bundle, requests, vectors, candidates, repeats)
        floors["encoder_ms"] = _p50(time_calls(encode, repeats))
        floors["ann_ms"] = _p50(time_calls(search, repeats))
        # every candidate source (ANN included), de-duplicated and merged: the stage the ranker reads
        floors["candidates_ms"] = stages["retrieve"]
        # the ranker's stages as the served call runs them (a GBDT: features of the merged head, then the
        # trees), timed with the ranker on even where the gate refused it
        floors["features_ms"] = stages.get("features", 0.0)
        floors["ranker_ms"] = stages.get("rank", 0.0) if ranker is not None else 0.0
    # a bundle whose ranker lost its gate serves the merged order: its requests never run the ranker
    floors["ranker_served"] = bool(served.use_ranker and ranker is not None)
    floors["ranker_kind"] = bundle.manifest.serving.ranker_kind
    floors["json_ms"] = _p50(time_calls(_answer_json(20), repeats))
    read = _store_read(redis_url)
    floors["store_read_ms"] = _p50(time_calls(read, repeats)) if read is not None else 0.0
    floors["ann_candidates"] = candidates
    floors["ranker_candidates"] = candidates
    return floors


class _StageTimes:
    """A ``StageTimer`` that keeps every stage's durations, ms."""

    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {}

    def record(self, stage: str, started: float) -> None:
        self.ms.setdefault(stage, []).append((time.perf_counter() - started) * 1e3)


def _candidate_stage(
    bundle: Any, requests: list[tuple[Any, Any]], vectors: np.ndarray, candidates: int, repeats: int
) -> tuple[dict[str, float], Any]:
    """(p50 ms of each stage of ``ServedPipeline.recommend``, the service's one served call: ``retrieve``
    = every candidate source and the merge, under the service's seen-items rule; ``features`` and ``rank``
    = the bundle's ranker, run here even where the gate refused it; ``rules``. The served pipeline, which
    says whether the ranker runs for the service.)"""
    from models.candidates.rules import ServingRules
    from models.candidates.served import ServedPipeline
    from models.candidates.sources import CandidateRequest

    served = bundle.served_pipeline(candidates)
    pipeline = ServedPipeline(served.generator, bundle.ranker, True)
    prepared = [
        CandidateRequest(history, context, vectors[row]) for row, (history, context) in enumerate(requests)
    ]
    rules = ServingRules(k=10, exclude_seen=True)
    for row in range(3):  # warm-up, untimed
        pipeline.recommend(prepared[row % len(prepared)], rules)
    times = _StageTimes()
    for row in range(repeats):
        pipeline.recommend(prepared[row % len(prepared)], rules, times)
    return {stage: _p50(np.asarray(ms)) for stage, ms in times.ms.items()}, served


def numeric_range(raw_ids: list[str]) -> tuple[int, int]:
    """first..last of the raw ids that are integers (the wrk script sends integers)."""
    numeric = sorted(int(value) for value in raw_ids if str(value).isdigit())
    if not numeric:
        raise ValueError("the bench needs integer raw ids")
    return numeric[0], numeric[-1]


def floor_sums(floors: dict[str, Any]) -> tuple[float, float]:
    """(cache path, online path) sums of the stage floors a request runs, ms: HTTP, store read, candidates
    (the ANN search and the other sources with their merge), the ranker only where the bundle serves it
    (``ranker_served``: its features and its forward), the answer's JSON; the online path adds the
    encoder."""
    stages = ("http_ms", "store_read_ms", "candidates_ms", "json_ms")
    ranker = (
        floors["ranker_ms"] + floors.get("features_ms", 0.0) if floors.get("ranker_served", True) else 0.0
    )
    cache = sum(floors[k] for k in stages) + ranker
    return round(cache, 3), round(cache + floors["encoder_ms"], 3)


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
