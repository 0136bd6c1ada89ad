"""Ranker report files: ranking-<dataset>.{json,md,png} in the results directory the caller gives."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from models.reporting.files import write_report as write_report_files

DESCRIPTIONS = {
    "retrieval_order": "the retriever's own order of the same candidates (baseline)",
    "onepiece": "full ranker: anchors, C groups, K reasoning steps, progressive tasks",
    "no_anchors": "without preference-anchor groups",
    "no_reasoning": "K = 0 (all task heads on the backbone output)",
    "single_task": "trained on the first funnel task only",
    "group_size_1": "C = 1 (every candidate scored alone, M-FALCON mode)",
    "onepiece_with_rank": "full ranker trained on retrieved candidates only, retrieval rank as a feature",
}


def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def markdown(report: dict[str, Any], command: str) -> str:
    models = report["models"]
    metrics = list(next(iter(models.values())).keys())
    base = models["retrieval_order"]["NDCG@10"]
    lines = [
        f"# Ranking results: {report['dataset']}",
        "",
        f"Command: `{command}`",
        "",
        f"Test requests: {report['counts']['test_requests']} (with a target among the "
        f"{report['counts']['eval_candidates']} candidates: "
        f"{report['counts']['test_requests_with_target_in_candidates']}, the rows NDCG/HR/MRR average over); "
        f"training requests: {report['counts']['train_requests']}. Candidates: the frozen co-occurrence "
        "retriever's top-N after a global time split (last 10% of events = test).",
        "",
        "| model | " + " | ".join(metrics) + " | NDCG@10 vs retrieval | train s |",
        "|---|" + "---|" * (len(metrics) + 2),
    ]
    for name, values in models.items():
        lift = "" if name == "retrieval_order" else f"{100 * (values['NDCG@10'] / base - 1):+.1f}%"
        seconds = report["training"].get(name, {}).get("seconds")
        cells = " | ".join(_fmt(values[m]) for m in metrics)
        lines.append(f"| {name} | {cells} | {lift} | {'' if seconds is None else f'{seconds:.0f}'} |")
    lines += ["", "Models:", ""] + [f"- `{n}`: {DESCRIPTIONS.get(n, n)}" for n in models]
    lines += ["", "Config: `" + json.dumps(report["config"], sort_keys=True) + "`", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["models"])
    ndcg = [report["models"][n]["NDCG@10"] for n in names]
    first_task = next(k for k in report["models"]["retrieval_order"] if k.startswith("GAUC"))
    gauc = [report["models"][n][first_task] for n in names]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, values, title in ((axes[0], ndcg, "NDCG@10"), (axes[1], gauc, first_task)):
        axis.bar(range(len(names)), values, color=["grey"] + ["tab:blue"] * (len(names) - 1))
        axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
        axis.set_title(f"{report['dataset']}: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path, command: str) -> dict[str, Path]:
    """Writes out_dir/ranking-<dataset>.{json,md,png}; returns the paths by kind."""
    return write_report_files(
        out_dir / f"ranking-{report['dataset']}",
        report,
        markdown(report, command),
        lambda png: plot(report, png),
        sort_keys=True,
    )
