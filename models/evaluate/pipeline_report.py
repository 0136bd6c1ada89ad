"""The served-pipeline report (``tandem eval --stage pipeline``): per dataset, seeds of the recipe replayed
on the test, one row per source, the merged order, the ranker and what is served, with the targets' verdicts,
bootstrap intervals and the choices each seed made."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from models.bootstrap import RatioInterval, paired_ratio_interval
from models.data.schema import Dataset
from models.evaluate.ceiling import synthetic_ceiling_lists
from models.evaluate.ranker_report import (
    ablation_markdown,
    ablation_table,
    feature_set_notes,
    ranker_intervals,
    ranker_notes,
    ranker_targets,
)
from models.evaluate.replay import run_seed
from models.evaluate.report import EvalReport
from models.evaluate.target_reach import target_reach
from models.protocols import EvalTask
from models.recipe.lists import PIPELINE_METRICS, list_metrics
from models.recipe.periods import PipelinePeriods, pipeline_periods
from models.recipe.settings import RecipeSettings

SERVED_OVER_BEST_SOURCE = 1.10  # the target: served NDCG@10 / the best single source's


def require_test_requests(dataset: Dataset, protocol: str, periods: PipelinePeriods) -> None:
    """A replay with no test request has nothing to score: a clear error, not an empty report."""
    if len(periods.test) == 0:
        raise ValueError(f"{dataset.name}: no test requests under {protocol}")


def evaluate_pipeline(
    dataset: Dataset,
    protocol: str,
    seeds: list[int],
    settings: RecipeSettings,
    command: str,
    exclude_seen: bool | None = None,
    notes: Callable[[int, int], list[str]] | None = None,
) -> EvalReport:
    """``exclude_seen`` None: the protocol's rule. ``notes(test requests, ranker-period requests)``: the
    caller's warnings and choices, kept first in the report's notes."""
    periods = pipeline_periods(
        dataset, protocol, settings.ranker_events, exclude_seen, settings.ranker_windows
    )
    head = [] if notes is None else notes(len(periods.test), len(periods.ranker))
    require_test_requests(dataset, protocol, periods)
    report = EvalReport(
        command,
        dataset.name,
        protocol,
        PIPELINE_METRICS,
        users=len(periods.test),
        seeds=seeds,
        title="Served pipeline",
    )
    report.notes += head
    decisions: list[dict[str, Any]] = []
    per_request: dict[str, list[np.ndarray]] = {}
    for seed in seeds:
        started = time.perf_counter()
        outcome = run_seed(dataset, periods, seed, settings)
        elapsed = time.perf_counter() - started
        for name, values in outcome.per_request.items():
            per_request.setdefault(name, []).append(values)
        for name, metrics in outcome.metrics.items():
            report.kinds[name] = outcome.kinds[name]
            training = outcome.encoder_training if name in ("ann", "pipeline") else None
            report.add(name, metrics, outcome.seconds.get("encoder", 0.0) if name == "ann" else 0.0, training)
        decisions.append(
            {
                "seed": seed,
                "ranker_served": outcome.ranker_served,
                "ranker_kind": outcome.trained.ranker_kind,
                "gbdt": outcome.trained.training.get("gbdt", {}),
                "valid": outcome.valid,
                "test": outcome.metrics,  # this seed's rows on the test (the report's rows average them)
                "merge": outcome.merge.to_dict(),
                "encoder_variants": (outcome.encoder_training or {}).get("variants", []),
                "recent": outcome.recent_tried,
                "ranker_epochs": outcome.ranker_log,
                "seconds": {**outcome.seconds, "total": round(elapsed, 1)},
                "skipped": outcome.notes,
            }
        )
    ceiling = _ceiling_row(dataset, protocol, periods.test, settings.total, len(seeds), report)
    reach = target_reach(periods.test, periods.refit_events(dataset), dataset.num_items)
    share = reach.in_history
    report.extra = {
        "protocol_periods": {
            "fit_events": int(periods.fit.sum()),
            "ranker_requests": len(periods.ranker),
            "test_requests": len(periods.test),
        },
        "test_targets_in_history": share,
        "test_target_reach": reach.to_dict(),
        "settings": {k: v for k, v in vars(settings).items() if k != "progress"},
        "decisions": decisions,
    }
    served = sum(d["ranker_served"] for d in decisions)
    tuned_on = {
        "all": f"ranker-period requests, at most {settings.merge_tuning_requests}",
        "valid": f"ranker's validation requests, at most {settings.merge_tuning_requests}",
    }.get(settings.merge_tuning, settings.merge_tuning)
    best_source = max(
        (n for n, k in report.kinds.items() if k == "source"), key=lambda n: report.means()[n]["NDCG@10"]
    )
    intervals = {**_intervals(per_request, best_source), **ranker_intervals(per_request)}
    report.extra["intervals"] = {name: interval.to_dict() for name, interval in intervals.items()}
    rankers = ranker_targets(dataset.name, report.means(), decisions)
    ablation = ablation_table(decisions)
    report.extra["ranker_targets"] = rankers
    report.extra["ablation"] = ablation
    report.notes += [
        f"Share of test targets already in the user's history: {share:.3f}; new items linked to the "
        f"history through another user: {reach.new_linked:.3f}; new, known, unlinked: {reach.new_known:.3f}; "
        f"never in the log the test's sources are fitted on: {reach.unknown:.3f}.",
        f"Pipeline NDCG@10 / best single source ({best_source}): "
        f"{intervals['pipeline_over_best_source'].text()}.",
        *(
            [f"Ranker over merged / merged, NDCG@10: {intervals['ranker_over_merged'].text()}."]
            if "ranker_over_merged" in intervals
            else []
        ),
        f"The ranker was served in {served} of {len(decisions)} seeds (it must beat the merged order on the "
        "validation users; otherwise the bundle serves the merged order).",
        f"Merge per seed (rank or score fusion and its weights, tuned on NDCG@10 of the {tuned_on}): "
        + "; ".join(
            f"seed {d['seed']}: {d['merge'].get('fusion', 'rrf')} "
            f"{dict(zip(d['merge']['sources'], d['merge']['weights'], strict=True))}"
            for d in decisions
        )
        + ".",
        *_variant_notes(decisions),
        *_recent_notes(decisions),
        f"Mean seconds per seed: {np.mean([d['seconds']['total'] for d in decisions]):.0f}.",
    ]
    targets = target_checks(report.means(), intervals["pipeline_over_best_source"], best_source)
    report.extra["targets"] = targets
    report.notes += target_notes(targets)
    report.notes += ranker_notes(rankers, intervals)
    report.notes += feature_set_notes(decisions)
    top_gain: dict[str, float] = next(
        (d["gbdt"]["top_gain"] for d in decisions if d["gbdt"].get("top_gain")), {}
    )
    report.notes += ablation_markdown(ablation, top_gain)
    if ceiling is not None:
        report.notes.append(_ceiling_note(ceiling, report.means(), best_source))
    skipped = dict.fromkeys(note for d in decisions for note in d["skipped"])
    report.notes += [f"Skipped: {note}." for note in skipped]
    return report


def target_checks(
    means: dict[str, dict[str, float]], over_best: RatioInterval, best_source: str
) -> dict[str, dict[str, Any]]:
    """The pipeline's two quality targets against this report's means (NDCG@10): the served pipeline at
    least ``SERVED_OVER_BEST_SOURCE`` x the best single source, and never below its own merged order.
    -> name -> {target, value, met, ...} (``report.extra["targets"]``)."""
    served, merged = means["pipeline"]["NDCG@10"], means["merged"]["NDCG@10"]
    over_merged = served / merged if merged > 0 else 1.0
    return {
        "served_over_best_source": {
            "target": SERVED_OVER_BEST_SOURCE,
            "value": over_best.ratio,
            "low": over_best.low,
            "high": over_best.high,
            "best_source": best_source,
            "needed_NDCG@10": SERVED_OVER_BEST_SOURCE * means[best_source]["NDCG@10"],
            "met": over_best.ratio >= SERVED_OVER_BEST_SOURCE,
        },
        "served_over_merged": {"target": 1.0, "value": over_merged, "met": served >= merged},
    }


def target_notes(targets: dict[str, dict[str, Any]]) -> list[str]:
    """The report's lines on its targets: met, or missed by how much, and where the attempts are written."""
    best, merged = targets["served_over_best_source"], targets["served_over_merged"]
    lines = [
        f"Target: served >= {best['target']:.2f} x the best single source ({best['best_source']}): "
        + (
            f"met ({best['value']:.3f})."
            if best["met"]
            else f"missed by {best['target'] - best['value']:.3f} ({best['value']:.3f}; it needs NDCG@10 "
            f"{best['needed_NDCG@10']:.4f})."
        ),
        "Target: the served pipeline never below its merged order: "
        + (
            f"met ({merged['value']:.3f})."
            if merged["met"]
            else f"missed by {1 - merged['value']:.3f} (served / merged {merged['value']:.3f})."
        ),
    ]
    if not (best["met"] and merged["met"]):
        lines.append(
            "What was tried against the misses, round by round, with its numbers: docs/pipeline.md "
            "(sources, merges and their fusion bound, ranker settings, the gate, the encoder's settings)."
        )
    return lines


def _variant_notes(decisions: list[dict[str, Any]]) -> list[str]:
    """One line on which encoder variant each seed kept and what each scored on validation (none when a
    single variant was trained)."""
    if not any(len(d["encoder_variants"]) > 1 for d in decisions):
        return []
    return _kept_choices_line(
        decisions,
        "encoder_variants",
        "Encoder variants per seed (validation NDCG@10 on ranker-period targets): ",
        lambda row: (
            f"{json.dumps(row['overrides']) if row['overrides'] else 'preset'} {row['valid_NDCG@10']:.4f}"
        ),
    )


def _recent_notes(decisions: list[dict[str, Any]]) -> list[str]:
    """One line on the recent-items scoring each seed kept on the ranker period (none without the source)."""
    if not any(d["recent"] for d in decisions):
        return []
    return _kept_choices_line(
        decisions,
        "recent",
        "Recent-items scoring per seed (its own list's NDCG@10 on the ranker period): ",
        lambda row: (
            f"decay {row['decay']}{' + actions' if row['action_weights'] else ''} {row['NDCG@10']:.4f}"
        ),
    )


def _kept_choices_line(
    decisions: list[dict[str, Any]], key: str, head: str, label: Callable[[dict[str, Any]], str]
) -> list[str]:
    """One line: per seed, every choice under ``decisions[][key]`` as ``label`` writes it, and which one
    (1-based) carries the ``kept`` mark."""
    parts = []
    for d in decisions:
        tried = d[key]
        kept = next(i for i, row in enumerate(tried) if row["kept"])
        parts.append(f"seed {d['seed']}: {', '.join(label(row) for row in tried)} -> kept {kept + 1}")
    return [head + "; ".join(parts) + "."]


def _ceiling_row(
    dataset: Dataset, protocol: str, task: EvalTask, total: int, num_seeds: int, report: EvalReport
) -> float | None:
    """Adds the ``ceiling`` row (synthetic data under next-session only: the generator's own probabilities,
    the same for every seed) and returns its NDCG@10; None (no row) otherwise."""
    try:
        lists = synthetic_ceiling_lists(dataset, task, total) if protocol == "next-session" else None
    except ValueError as exc:
        report.notes.append(f"No ceiling row: {exc}.")
        return None
    if lists is None:
        return None
    metrics = list_metrics(lists, task)
    report.kinds["ceiling"] = "ceiling"
    for _ in range(num_seeds):
        report.add("ceiling", metrics, 0.0)
    return metrics["NDCG@10"]


def _ceiling_note(ceiling: float, means: dict[str, dict[str, float]], best_source: str) -> str:
    share = {name: means[name]["NDCG@10"] / ceiling for name in ("pipeline", best_source)}
    return (
        f"Ceiling (the generator's own view probabilities given the last session's intent, "
        f"models/evaluate/ceiling.py): NDCG@10 {ceiling:.4f}. The served pipeline reaches "
        f"{share['pipeline']:.1%} of it, the best source ({best_source}) {share[best_source]:.1%}; "
        f"1.10 x the best source would be {1.1 * share[best_source]:.1%} of the ceiling."
    )


def _intervals(per_request: dict[str, list[np.ndarray]], best_source: str) -> dict[str, RatioInterval]:
    """Paired bootstrap intervals of NDCG@10 ratios over test requests (seeds averaged per request):
    the served pipeline against the best single source, the ranker's order against the merged order.
    ``report.extra["intervals"]`` keys: pipeline_over_best_source, ranker_over_merged (when trained)."""
    out = {
        "pipeline_over_best_source": paired_ratio_interval(
            np.stack(per_request["pipeline"]), np.stack(per_request[best_source])
        )
    }
    if len(per_request.get("ranker_over_merged", [])) == len(per_request["merged"]):
        out["ranker_over_merged"] = paired_ratio_interval(
            np.stack(per_request["ranker_over_merged"]), np.stack(per_request["merged"])
        )
    return out
