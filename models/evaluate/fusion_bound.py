"""How far can a score fusion of the candidate sources go? (``tandem eval --stage fusion``)

For each seed of the served-pipeline replay (``models.evaluate.replay.run_seed`` with
``keep_candidates``), every candidate in the union of the source lists is scored by every source, and
the fused score sum_s w_s * standardised(score_s), the merge's own score fusion
(``models.candidates.merge.standardised``), is ranked for every weight vector of a grid. Per seed:

- ``tuned``: the merge the replay chose on the validation users, scored on the test;
- ``grid_valid_best``: the grid point best on the validation users, scored on the test;
- ``grid_test_best``: the grid point best **on the test**: an upper bound that no choice made without the
  test can reach, for what reweighting these sources could give; compared with the best single source.

If even the bound is below a target, the sources have to find better candidates; no merge can close it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.candidates.merge import standardised
from models.evaluate.replay import CandidateUnions
from models.protocols import EvalTask
from models.recipe.lists import list_values

GRID_VALUES = (0.0, 0.25, 1.0, 4.0)
TOP_K = 10


@dataclass
class FusionPoint:
    weights: tuple[float, ...]
    valid: float  # NDCG@10 on the validation users
    test: float  # NDCG@10 on every test request


def weight_grid(num_sources: int, values: Sequence[float] = GRID_VALUES) -> list[tuple[float, ...]]:
    """Every weight vector over ``values`` except all-zero, one per direction (a multiple of another
    vector ranks the same: (1, 1) and (4, 4) -> only the first kept). [V^S - 1 at most] tuples."""
    seen: set[tuple[float, ...]] = set()
    grid = []
    for weights in itertools.product(values, repeat=num_sources):
        top = max(weights)
        if top <= 0:
            continue
        direction = tuple(round(w / top, 9) for w in weights)
        if direction not in seen:
            seen.add(direction)
            grid.append(tuple(float(w) for w in weights))
    return grid


def fused_top(items: np.ndarray, standard: np.ndarray, weights: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """items [C], standardised scores [C, S] (``standardised``), weights [S] -> the k items of highest
    fused score (ties: the lower id)."""
    fused = standard @ weights
    return items[np.lexsort((items, -fused))[:k]]


def standardise_all(unions: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each request's (items [C], scores [C, S]) -> (items, standardised scores): done once per request."""
    return [(items, standardised(scores)) for items, scores in unions]


def fusion_ndcg(
    unions: Sequence[tuple[np.ndarray, np.ndarray]], task: EvalTask, rows: np.ndarray, weights: np.ndarray
) -> float:
    """Mean NDCG@10 over ``rows`` of ``task`` of the fused lists; unions[j] (items, standardised scores)
    belongs to rows[j]."""
    lists = [np.zeros(0, np.int64)] * len(task)
    for row, (items, standard) in zip(rows.tolist(), unions, strict=True):
        lists[row] = fused_top(items, standard, weights)
    return float(np.nanmean(list_values(lists, task, rows)["NDCG@10"]))


def fusion_points(
    candidates: CandidateUnions,
    valid_task: EvalTask,
    test_task: EvalTask,
    grid: Sequence[tuple[float, ...]],
) -> tuple[FusionPoint, list[FusionPoint]]:
    """-> (the tuned merge's point, one point per grid vector). The tuned point is only meaningful for
    score fusion; for rank fusion its weights are scored as score-fusion weights and labelled so."""
    test_rows = np.arange(len(test_task))
    valid_rows = np.asarray(candidates.valid_rows, dtype=np.int64)
    valid, test = standardise_all(candidates.valid), standardise_all(candidates.test)

    def point(weights: Sequence[float]) -> FusionPoint:
        w = np.asarray(weights, dtype=np.float64)
        return FusionPoint(
            tuple(float(x) for x in weights),
            fusion_ndcg(valid, valid_task, valid_rows, w),
            fusion_ndcg(test, test_task, test_rows, w),
        )

    return point(candidates.merge.weights), [point(weights) for weights in grid]


def seed_summary(
    seed: int,
    candidates: CandidateUnions,
    valid_task: EvalTask,
    test_task: EvalTask,
    test_metrics: dict[str, dict[str, float]],
    grid: Sequence[tuple[float, ...]],
) -> dict[str, Any]:
    """One seed's tuned / grid-valid-best / grid-test-best points and the best single source's test
    NDCG@10 (from the replay's own rows)."""
    tuned, points = fusion_points(candidates, valid_task, test_task, grid)
    by_valid = max(points, key=lambda p: p.valid)
    by_test = max(points, key=lambda p: p.test)
    singles = {name: test_metrics[name]["NDCG@10"] for name in candidates.sources if name in test_metrics}
    best_source = max(singles, key=lambda name: singles[name])
    return {
        "seed": seed,
        "sources": list(candidates.sources),
        "fusion": candidates.merge.fusion,
        "best_source": best_source,
        "best_source_test": singles[best_source],
        "tuned": vars(tuned),
        "grid_valid_best": vars(by_valid),
        "grid_test_best": vars(by_test),
        "grid_points": len(points),
        "valid_spread_top8": _spread([p.valid for p in points], 8),
    }


def _spread(values: list[float], top: int) -> float:
    best = sorted(values, reverse=True)[:top]
    return float(best[0] - best[-1]) if best else 0.0


def markdown(dataset: str, command: str, commit: str, seeds: list[dict[str, Any]]) -> str:
    lines = [
        f"# Fusion bound: {dataset}",
        "",
        f"Command: `{command}`  ",
        f"Commit: {commit}; grid: weights in {list(GRID_VALUES)} per source, one point per direction",
        "",
        "NDCG@10 on the validation users / on the test; ratio = test / the best single source's test.",
        "",
        "| seed | best source (test) | tuned merge | grid, best on validation | grid, best on test (bound) |",
        "|---|---|---|---|---|",
    ]
    for s in seeds:
        base = s["best_source_test"]

        def cell(point: dict[str, Any], base: float = base) -> str:
            ratio = point["test"] / base if base > 0 else float("nan")
            weights = ", ".join(f"{w:g}" for w in point["weights"])
            return f"{point['valid']:.4f} / {point['test']:.4f} ({ratio:.3f}; w {weights})"

        tuned_label = "" if s["fusion"] == "score" else " (rank-fusion weights as score weights)"
        lines.append(
            f"| {s['seed']} | {s['best_source']} {base:.4f} | {cell(s['tuned'])}{tuned_label} | "
            f"{cell(s['grid_valid_best'])} | {cell(s['grid_test_best'])} |"
        )
    lines += [
        "",
        "Weights are in source order: " + ", ".join(seeds[0]["sources"]) + "." if seeds else "",
        "The last column chose its weights on the test: no choice made without the test reaches it.",
        "",
    ]
    return "\n".join(lines)


def write_fusion_report(
    out: Path, dataset: str, command: str, commit: str, seeds: list[dict[str, Any]]
) -> dict:
    from models.reporting.files import write_report

    def plot(path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        labels = ["tuned", "grid_valid_best", "grid_test_best"]
        for offset, s in enumerate(seeds):
            ratios = [s[label]["test"] / s["best_source_test"] for label in labels]
            ax.bar(np.arange(3) + offset * 0.25, ratios, width=0.25, label=f"seed {s['seed']}")
        ax.axhline(1.10, color="grey", linestyle="--", linewidth=1, label="1.10 x best source")
        ax.set_xticks(np.arange(3) + 0.25, ["tuned merge", "grid: best on valid", "grid: best on test"])
        ax.set_ylabel("test NDCG@10 / best single source")
        ax.set_ylim(0.9, max(1.2, *(s["grid_test_best"]["test"] / s["best_source_test"] for s in seeds)))
        ax.set_title(f"Fusion bound, {dataset}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)

    data = {
        "dataset": dataset,
        "command": command,
        "commit": commit,
        "grid": list(GRID_VALUES),
        "seeds": seeds,
    }
    return write_report(out, data, markdown(dataset, command, commit, seeds), plot)
