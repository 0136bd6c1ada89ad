"""Offline experiment: does a LambdaMART reranker beat the merged order of simple sources? (leave-last-out)

Per dataset (``run_experiment``):

1. requests at offsets 0 (test: each user's last event), 1..V (validation) and V+1..V+K (training), each
   offset with its own refit of the sources and the feature state (``models.candidates.training_requests``);
2. the merge: reciprocal-rank fusion of ``cooccurrence``, ``transitions`` and ``popular`` (each source's top
   M, the merged top M), its weights tuned by coordinate ascent on the validation requests' NDCG@10 (or
   equal weights); this tuned merged order is the baseline;
3. LightGBM LambdaMART (``models.ranker.gbdt``) on the training requests' full candidate lists, early
   stopped on the validation requests, for every feature set of the ablation (all features, no context
   features, no side information, source scores and ranks only) and every seed (LightGBM's bagging and
   feature sampling);
4. NDCG@10 on every test request (a target outside the candidates scores 0): merged order against the
   reranked order, with a 90% paired bootstrap interval of the ratio, and the top features by gain.

Training requests whose target is not among the candidates carry no LambdaMART gradient and are dropped
(their lists are built, then skipped); validation keeps the same rule, the test keeps every request.

Run: ``.venv/bin/python -m models.ranker.experiment ml-100k [seeds] [ablation seeds] [report.json]``, or
from Python ``print(format_report(run_experiment(ExperimentConfig("ml-100k"))))``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.candidates.feature_state import StaticInfo
from models.candidates.features import ABLATIONS, DEFAULT_SOURCES, ablation_columns
from models.candidates.merge import MergeConfig, merge_lists
from models.candidates.sources import SourceList
from models.candidates.training_requests import (
    OffsetFit,
    Request,
    RequestSet,
    fit_offset,
    offset_requests,
    request_set,
    source_lists,
)
from models.data.datasets import DEFAULT_CACHE_DIR, load_dataset
from models.data.schema import Dataset
from models.ranker.gbdt import GbdtConfig, train_gbdt

WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass(frozen=True)
class ExperimentConfig:
    dataset: str = "ml-100k"
    data_dir: str | None = None
    cache_dir: str = str(DEFAULT_CACHE_DIR)
    sources: tuple[str, ...] = DEFAULT_SOURCES
    candidates: int = 100  # M: each source's quota and the merged list's length
    valid_offsets: int = 2  # V: offsets 1..V are validation requests (merge tuning, early stopping)
    train_offsets: int = 10  # K: offsets V+1..V+K are training requests
    max_history: int = 200
    tune_merge: bool = True
    seeds: tuple[int, ...] = (0,)
    ablation_seeds: int | None = (
        None  # the ablations other than "all" use the first this-many seeds (None: all)
    )
    ablations: tuple[str, ...] = tuple(ABLATIONS)
    gbdt: GbdtConfig = field(default_factory=GbdtConfig)


def ndcg_at(scores: np.ndarray, requests: RequestSet, k: int = 10) -> np.ndarray:
    """scores [R] over the rows of ``requests`` -> [Q] NDCG@k of the target (one relevant item; 0 when the
    target is not among the candidates). Ties keep the merged order."""
    owner = np.repeat(np.arange(len(requests)), requests.sizes)
    target_row = np.full(len(requests), -1, dtype=np.int64)
    hit = np.flatnonzero(requests.label > 0)
    target_row[owner[hit]] = hit
    found = target_row >= 0
    at = np.where(found, target_row, 0)[owner]
    ahead = (scores > scores[at]) | ((scores == scores[at]) & (requests.position < requests.position[at]))
    rank = np.bincount(owner, ahead.astype(np.float64), minlength=len(requests))  # 0-based
    return np.where(found & (rank < k), 1.0 / np.log2(rank + 2.0), 0.0)


def merged_ndcg(requests: RequestSet, k: int = 10) -> np.ndarray:
    return ndcg_at(-requests.position.astype(np.float64), requests, k)


def _list_ndcg(lists: Sequence[Sequence[SourceList]], targets: np.ndarray, config: MergeConfig) -> float:
    total = 0.0
    for request_lists, target in zip(lists, targets.tolist(), strict=True):
        rank = np.flatnonzero(merge_lists(request_lists, config).items[:10] == target)
        total += 1.0 / np.log2(rank[0] + 2.0) if rank.size else 0.0
    return total / max(len(targets), 1)


def tune_rrf_weights(
    lists: Sequence[Sequence[SourceList]], targets: np.ndarray, config: MergeConfig, passes: int = 2
) -> tuple[MergeConfig, float]:
    """Coordinate ascent of the RRF weights over ``WEIGHT_GRID`` on NDCG@10 of ``targets`` [Q]; ties keep
    the current weight. -> (the tuned config, its NDCG@10)."""
    best = _list_ndcg(lists, targets, config)
    for _ in range(passes):
        for s in range(len(config.sources)):
            for weight in WEIGHT_GRID:
                weights = tuple(weight if i == s else w for i, w in enumerate(config.weights))
                if weights == config.weights or sum(weights) <= 0:
                    continue
                trial = replace(config, weights=weights)
                score = _list_ndcg(lists, targets, trial)
                if score > best + 1e-12:
                    best, config = score, trial
    return config, best


@dataclass
class _Columns:
    """A RequestSet seen through a subset of its feature columns (``RankingData``)."""

    base: RequestSet
    columns: np.ndarray

    @property
    def features(self) -> np.ndarray:
        return self.base.features[:, self.columns]

    @property
    def label(self) -> np.ndarray:
        return self.base.label

    @property
    def group(self) -> np.ndarray:
        return self.base.group


def build_request_sets(
    dataset: Dataset, config: ExperimentConfig
) -> tuple[dict[int, RequestSet], MergeConfig, dict[str, Any]]:
    """Request sets by offset: test (0), validation (1..V) and training (V+1..V+K); the merge (tuned on the
    validation requests); timings and merge information."""
    static = StaticInfo.from_dataset(dataset)
    m = config.candidates
    merge = MergeConfig(config.sources, (m,) * len(config.sources), (1.0,) * len(config.sources), total=m)
    info: dict[str, Any] = {"fit_seconds": 0.0, "features_seconds": 0.0}
    held: dict[int, tuple[OffsetFit, list[Request], list[list[SourceList]]]] = {}
    for offset in range(1, config.valid_offsets + 1):
        started = time.perf_counter()
        fit = fit_offset(dataset, static, offset)
        requests = offset_requests(dataset, offset, config.max_history)
        info["fit_seconds"] += time.perf_counter() - started
        held[offset] = (fit, requests, source_lists(fit, requests, merge))
    started = time.perf_counter()
    lists = [one for _, _, request_lists in held.values() for one in request_lists]
    targets = np.array([r.target for _, requests, _ in held.values() for r in requests], dtype=np.int64)
    info["equal_weights_valid_ndcg"] = _list_ndcg(lists, targets, merge)
    if config.tune_merge:
        merge, info["tuned_valid_ndcg"] = tune_rrf_weights(lists, targets, merge)
    info["merge_weights"] = dict(zip(merge.sources, merge.weights, strict=True))
    info["tuning_seconds"] = time.perf_counter() - started
    sets: dict[int, RequestSet] = {}
    started = time.perf_counter()
    for offset, (fit, requests, request_lists) in held.items():
        sets[offset] = request_set(fit, requests, merge, request_lists)
    info["features_seconds"] += time.perf_counter() - started
    first_training = config.valid_offsets + 1
    for offset in [0, *range(first_training, first_training + config.train_offsets)]:
        started = time.perf_counter()
        fit = fit_offset(dataset, static, offset)
        requests = offset_requests(dataset, offset, config.max_history)
        info["fit_seconds"] += time.perf_counter() - started
        started = time.perf_counter()
        built = request_set(fit, requests, merge)
        info["features_seconds"] += time.perf_counter() - started
        sets[offset] = built if offset == 0 else built.select(built.found)
    return sets, merge, info


def paired_ratio_interval(
    a: np.ndarray, b: np.ndarray, level: float = 0.9, draws: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of mean(a) / mean(b) over requests resampled in pairs."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a), size=(draws, len(a)))
    ratios = a[picks].mean(axis=1) / np.maximum(b[picks].mean(axis=1), 1e-12)
    low, high = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def run_experiment(
    config: ExperimentConfig, model_dir: Path | None = None, dataset: Dataset | None = None
) -> dict[str, Any]:
    """The whole experiment on one dataset -> a JSON-able report (``format_report`` prints it). With
    ``model_dir``, each seed's all-features model is saved there as text (``<dataset>-seed<k>.txt``);
    ``dataset``: an already loaded one (default: ``load_dataset(config.dataset, ...)``)."""
    if dataset is None:
        dataset = load_dataset(config.dataset, config.data_dir, config.cache_dir)
    sets, _, info = build_request_sets(dataset, config)
    test = sets[0]
    valid = RequestSet.concat([sets[k] for k in range(1, config.valid_offsets + 1)])
    train = RequestSet.concat([sets[k] for k in sorted(sets) if k > config.valid_offsets])
    names = test.names
    merged = merged_ndcg(test)
    report: dict[str, Any] = {
        "config": {**asdict(config), "gbdt": asdict(config.gbdt)},
        "dataset": dataset.name,
        "test_requests": len(test),
        "test_recall": float(test.found.mean()),
        "valid_requests": len(valid),
        "train_requests": len(train),
        "train_rows": len(train.label),
        "merged_ndcg10": float(merged.mean()),
        **info,
        "ablations": {},
    }
    for ablation in config.ablations:
        columns = ablation_columns(config.sources, ablation)
        chosen = [names[i] for i in columns]
        runs = []
        seeds = config.seeds if ablation == "all" else config.seeds[: config.ablation_seeds]
        for seed in seeds:
            started = time.perf_counter()
            ranker, train_info = train_gbdt(
                _Columns(train, columns), _Columns(valid, columns), chosen, replace(config.gbdt, seed=seed)
            )
            seconds = time.perf_counter() - started
            scores = ranker.score(test.features[:, columns]).astype(np.float64)
            ndcg = ndcg_at(scores, test)
            low, high = paired_ratio_interval(ndcg, merged, seed=seed)
            run: dict[str, Any] = {
                "seed": seed,
                "ndcg10": float(ndcg.mean()),
                "ratio": float(ndcg.mean() / max(merged.mean(), 1e-12)),
                "ratio_interval90": [low, high],
                "best_iteration": train_info.best_iteration,
                "valid_ndcg10_lightgbm": train_info.best_valid_ndcg,
                "train_seconds": seconds,
                "sha256": ranker.sha256,
            }
            if ablation == "all":
                run["top_gain"] = list(ranker.gain_shares(15).items())
                if model_dir is not None:
                    model_dir.mkdir(parents=True, exist_ok=True)
                    ranker.save(model_dir / f"{dataset.name}-seed{seed}.txt")
            runs.append(run)
        values = np.array([r["ndcg10"] for r in runs])
        report["ablations"][ablation] = {
            "features": len(columns),
            "ndcg10_mean": float(values.mean()),
            "ndcg10_std": float(values.std()),
            "ratio_mean": float(values.mean() / max(merged.mean(), 1e-12)),
            "runs": runs,
        }
    return report


def format_report(report: dict[str, Any]) -> str:
    """Markdown summary of ``run_experiment``'s report."""
    seeds = report["config"]["seeds"]
    lines = [
        f"{report['dataset']}: {report['test_requests']} test requests (target among the candidates: "
        f"{report['test_recall']:.1%}), {report['train_requests']} training requests ({report['train_rows']} "
        f"rows), {report['valid_requests']} validation; merge weights {report['merge_weights']}; "
        f"seeds {seeds}; fits {report['fit_seconds']:.0f} s, lists + features "
        f"{report['features_seconds']:.0f} s",
        "",
        "| order | features | NDCG@10 (mean ± std over seeds) | / merged | 90% interval (seed 0) | rounds |",
        "|---|---|---|---|---|---|",
        f"| merged (RRF, tuned) | - | {report['merged_ndcg10']:.4f} | 1.000 | - | - |",
    ]
    for name, result in report["ablations"].items():
        first = result["runs"][0]
        low, high = first["ratio_interval90"]
        rounds = "/".join(str(r["best_iteration"]) for r in result["runs"])
        lines.append(
            f"| GBDT {name} | {result['features']} "
            f"| {result['ndcg10_mean']:.4f} ± {result['ndcg10_std']:.4f} "
            f"| {result['ratio_mean']:.3f} | {low:.3f}-{high:.3f} | {rounds} |"
        )
    if "all" in report["ablations"]:
        top = report["ablations"]["all"]["runs"][0]["top_gain"]
        lines += [
            "",
            "Top features by gain (all features, seed 0): " + ", ".join(f"{n} {g:.3f}" for n, g in top),
        ]
        seconds = [r["train_seconds"] for r in report["ablations"]["all"]["runs"]]
        lines.append(f"Training time (all features): {', '.join(f'{s:.0f} s' for s in seconds)}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
    """argv: [dataset [seeds [ablation seeds [report.json]]]]; 2 LightGBM threads."""
    name = argv[0] if argv else "ml-100k"
    seeds = tuple(range(int(argv[1]))) if len(argv) > 1 else (0,)
    ablation_seeds = int(argv[2]) if len(argv) > 2 else None
    config = ExperimentConfig(
        name, seeds=seeds, ablation_seeds=ablation_seeds, gbdt=GbdtConfig(num_threads=2)
    )
    report = run_experiment(config)
    if len(argv) > 3:
        Path(argv[3]).write_text(json.dumps(report, indent=1) + "\n")
    print(format_report(report))


if __name__ == "__main__":
    main(sys.argv[1:])
