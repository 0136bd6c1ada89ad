"""Latency floor of each serving stage on this machine -> docs/results/bench-cpu.{md,json,png}.

    make bench-stages [BENCH_ARGS='--skip-1m --repeats 200']    (default --out: var/results/bench-cpu)

Stages: encoder forward (quick config, batch 1 and 32), ANN search (exact vs IVF/HNSW at 10K items, exact
vs IVF at 1M; the HNSW-at-1M sweep is docs/results/index-synthetic-1m.md), ranker forward (quick config,
200 candidates). Models use their quick configurations with random weights: latency does not depend on
the weights. Everything runs on 1 thread (torch and faiss), the way one serving worker runs. A stage whose
package is not installed is reported as "not available", never estimated.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tqdm import tqdm

from cli.options import add_data_dir_option
from models.bundle.write import history_sample
from models.data.schema import Dataset
from models.index import IndexBuildConfig, build_index, set_faiss_threads
from models.index.synthetic_vectors import clustered_item_vectors, user_like_queries
from models.reporting.files import DEFAULT_RESULTS_DIR, write_report
from models.reporting.provenance import command_line, machine_info
from models.types import RequestContext

logger = logging.getLogger(__name__)
Timed = Callable[[], object]


def time_calls(call: Timed, repeats: int, warmup: int = 3) -> np.ndarray:
    """Wall time of ``repeats`` calls in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    timings = np.empty(repeats)
    for run in range(repeats):
        started = time.perf_counter()
        call()
        timings[run] = (time.perf_counter() - started) * 1e3
    return timings


def summary(timings: np.ndarray) -> dict[str, Any]:
    return {
        "status": "ok",
        "repeats": int(timings.size),
        "p50_ms": round(float(np.percentile(timings, 50)), 4),
        "p90_ms": round(float(np.percentile(timings, 90)), 4),
        "p99_ms": round(float(np.percentile(timings, 99)), 4),
        "mean_ms": round(float(timings.mean()), 4),
        "timings_ms": [round(float(t), 4) for t in timings],
    }


def not_available(error: ImportError) -> dict[str, Any]:
    return {"status": "not available", "reason": f"{type(error).__name__}: {error}"}


def _requests(dataset: Dataset, count: int) -> tuple[list[Any], list[RequestContext]]:
    sample = history_sample(dataset, max_users=count)
    histories = [history for history, _ in sample]
    contexts = [
        RequestContext(timestamp=t + 1, scene=int(h.scene[-1]), device=int(h.device[-1])) for h, t in sample
    ]
    return histories, contexts


def bench_encoder(dataset: Dataset, repeats: int) -> dict[str, Any]:
    try:
        from models.encoder.model import RetrievalEncoder
        from models.encoder.serving import TorchUserEncoder
        from models.train.data import encoder_config_for, item_categories
        from models.train.presets import preset
    except ImportError as error:
        return {"batch_1": not_available(error), "batch_32": not_available(error)}
    import torch

    torch.manual_seed(0)
    config = encoder_config_for(dataset, preset("quick", "session_encoder")[0])
    model = RetrievalEncoder(config)
    categories = item_categories(dataset)
    model.set_item_category(categories)
    encoder = TorchUserEncoder(model, categories, "bench-random")
    histories, contexts = _requests(dataset, 64)
    results: dict[str, Any] = {}
    for batch in (1, 32):
        # Cycle through 32 different users so batch 1 is not one user's history length.
        starts = itertools.cycle(range(0, 32, batch))
        chosen = histories[:32], contexts[:32]

        def encode(starts: Any = starts, size: int = batch) -> object:
            start = next(starts)
            return encoder.encode(histories[start : start + size], contexts[start : start + size])

        results[f"batch_{batch}"] = summary(time_calls(encode, repeats // max(1, batch // 8)))
        results[f"batch_{batch}"]["config"] = {
            "preset": "quick",
            "kind": config.kind,
            "max_tokens": config.max_tokens,
            "history_events_mean": round(float(np.mean([len(h) for h in chosen[0]])), 1),
            "threads": 1,
        }
    return results


def bench_ranker(dataset: Dataset, repeats: int, candidates: int = 200) -> dict[str, Any]:
    try:
        import torch

        from models.ranker.config import preset
        from models.ranker.model import OnePieceRanker
        from models.ranker.serving import TorchCandidateRanker
        from models.ranker.train import feature_sizes, fit_anchor_sources
    except ImportError as error:
        return {"candidates_200": not_available(error)}
    torch.manual_seed(0)
    config, _ = preset("quick")
    sizes = feature_sizes(dataset)
    category = torch.as_tensor(dataset.catalogue.category, dtype=torch.long)
    sources = fit_anchor_sources(dataset.events, dataset.events, dataset.num_items, config)
    ranker = TorchCandidateRanker(
        OnePieceRanker(config, sizes, category), sources, dataset.funnel, "bench-random"
    )
    histories, contexts = _requests(dataset, 16)
    rng = np.random.default_rng(0)
    pool = rng.choice(np.arange(2, dataset.num_items), size=(len(histories), candidates))
    calls = iter(range(10**9))

    def score_one() -> object:
        row = next(calls) % len(histories)
        return ranker.score(histories[row], contexts[row], pool[row])

    result = summary(time_calls(score_one, repeats))
    result["config"] = {"preset": "quick", "group_size": config.group_size, "layers": config.num_layers}
    return {f"candidates_{candidates}": result}


def bench_ann(num_items: int, repeats: int, kinds: tuple[str, ...], k: int = 200) -> dict[str, Any]:
    vectors = clustered_item_vectors(num_items + 2, 64, seed=0)
    queries = user_like_queries(vectors, repeats, seed=99)
    exclude = [set(range(2, 52))]  # a realistic seen-items set rides along on every query
    results: dict[str, Any] = {}
    for kind in kinds:
        index = build_index(vectors, kind, config=IndexBuildConfig(recall_k=k))
        set_faiss_threads(1)

        rows = itertools.cycle(range(queries.shape[0]))

        def search_one(index: Any = index, rows: Any = rows) -> object:
            row = next(rows)
            return index.search(queries[row : row + 1], k, exclude=exclude)

        results[kind] = summary(time_calls(search_one, repeats))
        chosen = index.metadata["chosen"]
        results[kind]["knob"] = {chosen["param"]: chosen["value"], f"recall@{k}": chosen["recall_at_k"]}
        results[kind]["build_seconds"] = index.metadata["build_seconds"]
        del index
    return results


def _markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        "# Serving stage latency floor (CPU)",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"torch {machine['torch']}, faiss {machine['faiss']}, commit {machine['commit']}, "
        f"load average at start {machine['load_average_1m']} "
        "(shared machine: other processes add noise, mostly to p99)  ",
        f"Dataset for encoder/ranker inputs: {report['dataset']}; threads: 1 (torch and faiss).",
        "",
        "| stage | case | p50 ms | p90 ms | p99 ms | notes |",
        "|---|---|---|---|---|---|",
    ]
    for stage, cases in report["stages"].items():
        for case, result in cases.items():
            if not isinstance(result, dict) or "status" not in result:
                continue
            if result["status"] != "ok":
                lines.append(f"| {stage} | {case} | - | - | - | {result['status']}: {result['reason']} |")
                continue
            notes = json.dumps(result.get("knob") or result.get("config") or {}, sort_keys=True)
            lines.append(
                f"| {stage} | {case} | {result['p50_ms']:.3f} | {result['p90_ms']:.3f} "
                f"| {result['p99_ms']:.3f} | {notes.replace('|', '/')} |"
            )
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    panels = [
        (f"{stage} / {case}", result["timings_ms"])
        for stage, cases in report["stages"].items()
        for case, result in cases.items()
        if isinstance(result, dict) and result.get("status") == "ok"
    ]
    columns = 3
    rows = max(1, (len(panels) + columns - 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for axis, (title, timings) in zip(axes.flat, panels, strict=False):
        upper = np.percentile(timings, 99.5)
        axis.hist(np.clip(timings, None, upper), bins=40)
        axis.axvline(np.percentile(timings, 50), color="black", linewidth=1)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("ms (p50 line; clipped at p99.5)", fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_data_dir_option(parser)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--skip-1m", action="store_true", help="skip the 1M-item ANN case (~1 minute)")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS_DIR / "bench-cpu",
        help="report path without suffix (make bench-stages: docs/results/bench-cpu)",
    )
    args = parser.parse_args(argv)
    import torch

    from models.data.datasets import default_dataset

    torch.set_num_threads(1)
    set_faiss_threads(1)
    report: dict[str, Any] = {"command": command_line(), "machine": machine_info(), "stages": {}}
    dataset = default_dataset(args.data_dir)
    report["dataset"] = f"{dataset.name} ({dataset.num_items - 2:,} items, {len(dataset.events):,} events)"
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("encoder", lambda: bench_encoder(dataset, args.repeats)),
        ("ann_10k", lambda: bench_ann(10_000, args.repeats, ("flat", "ivf", "hnsw"))),
        ("ranker", lambda: bench_ranker(dataset, args.repeats)),
    ]
    if not args.skip_1m:
        steps.append(("ann_1m", lambda: bench_ann(1_000_000, args.repeats, ("flat", "ivf"))))
    for name, step in tqdm(steps, desc="bench stages", unit="stage"):
        report["stages"][name] = step()
    text = _markdown(report)
    write_report(args.out, report, text, lambda png: _plot(report, png), indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
