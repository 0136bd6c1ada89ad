"""Latency of the ranker's serving path: ``make bench-ranker [BENCH_ARGS='--checkpoint PATH']``.

Median wall time of ``score`` for one request of N candidates on one CPU thread (target <= 5 ms for 200),
and of ``score_batch`` for several requests. Without a checkpoint a randomly initialised model of the
chosen preset is timed (latency does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from models.data.schema import RATING_FUNNEL
from models.ranker.anchors import AnchorSources
from models.ranker.config import FeatureSizes, preset
from models.ranker.model import OnePieceRanker
from models.ranker.retrieval import CooccurrenceTable
from models.ranker.serving import TorchCandidateRanker, load_ranker
from models.types import RequestContext, UserHistory


def random_ranker(preset_name: str, num_items: int = 4_000, seed: int = 0) -> TorchCandidateRanker:
    config, _ = preset(preset_name)
    torch.manual_seed(seed)
    sizes = FeatureSizes(
        num_items=num_items, num_categories=20, user_feature_sizes=(("age", 9), ("gender", 4))
    )
    model = OnePieceRanker(config, sizes, torch.randint(2, 20, (num_items,)))
    rng = np.random.default_rng(seed)
    table = CooccurrenceTable(
        rng.integers(2, num_items, size=(num_items, 50)),
        rng.random((num_items, 50)).astype(np.float32),
        np.ones(num_items, np.float32),
    )
    return TorchCandidateRanker(
        model, AnchorSources(table, np.arange(2, 12)), RATING_FUNNEL, f"random-{preset_name}"
    )


def random_request(
    num_items: int, length: int, rng: np.random.Generator
) -> tuple[UserHistory, RequestContext]:
    history = UserHistory(
        item=rng.integers(2, num_items, size=length),
        action=np.full(length, 6),
        value=rng.integers(1, 6, size=length).astype(np.float32),
        timestamp=np.arange(length) * 60,
        scene=np.ones(length, np.int64),
        device=np.ones(length, np.int64),
        user_features={"age": 3, "gender": 2},
    )
    return history, RequestContext(timestamp=length * 60 + 3600, anchors=rng.integers(2, num_items, size=3))


def median_ms(function: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ranker = load_ranker(args.checkpoint) if args.checkpoint else random_ranker(args.preset)
    num_items = ranker.model.sizes.num_items
    rng = np.random.default_rng(0)
    requests = [random_request(num_items, 100, rng) for _ in range(args.batch)]
    candidates = [rng.choice(np.arange(2, num_items), size=args.candidates, replace=False) for _ in requests]
    single = median_ms(lambda: ranker.score(requests[0][0], requests[0][1], candidates[0]), args.repeats)
    batched = median_ms(
        lambda: ranker.score_batch([r[0] for r in requests], [r[1] for r in requests], candidates),
        max(args.repeats // 5, 5),
    )
    result = {
        "model": ranker.version,
        "config": {
            k: getattr(ranker.model.config, k)
            for k in ("d_model", "num_layers", "group_size", "reasoning_steps")
        },
        "threads": 1,
        "candidates": args.candidates,
        "single_request_median_ms": round(single, 3),
        "batch_requests": args.batch,
        "batch_median_ms": round(batched, 3),
        "batch_per_request_ms": round(batched / args.batch, 3),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
