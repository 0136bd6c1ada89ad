"""The measurements of ``make scale-measure`` in docs/results/scale.{json,md}: each measurement module
writes ``var/scale/<name>.json``; ``merge`` puts them into the report under their names, keeping the
previous report's measurements that were not run again; ``markdown`` renders them with their targets,
saying which are met and which are missed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SECTIONS = ("bundle_distribution", "milvus_down", "redis_cluster", "ddp", "replicas", "index")
SCENARIO_COLUMNS = (
    "requests",
    "failed",
    "events_accepted",
    "events_stored",
    "events_duplicated",
    "events_lost",
    "users_with_events",
    "users_with_fresh_vectors",
)


def merge(report: dict[str, Any], previous: dict[str, Any], measured_dir: Path) -> dict[str, Any]:
    """``report`` with every section of ``previous`` it lacks, then every ``measured_dir/<section>.json``."""
    out = dict(report)
    for name in SECTIONS:
        if name in previous and name not in out:
            out[name] = previous[name]
    for name in SECTIONS:
        path = measured_dir / f"{name}.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out


def scenario_met(row: dict[str, Any]) -> bool:
    """The fault suite's targets: no failed request, every accepted event stored once, every vector fresh."""
    return (
        row.get("failed") == 0
        and row.get("events_accepted", 0) > 0
        and row.get("events_stored") == row.get("events_accepted")
        and row.get("events_duplicated") == 0
        and row.get("events_lost") == 0
        and row.get("users_with_fresh_vectors") == row.get("users_with_events")
    )


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def _bundles(section: dict[str, Any]) -> list[str]:
    met = bool(section["converged"] and section["tampered_refused"])
    refused = ", ".join(f"{case}: {row['status']}" for case, row in section["refused"].items())
    return [
        f"### Bundles for replicas ({verdict(met)})",
        "",
        f"{section['date']}, `{section['command']}`: {section['replicas']} replicas (`tandem serve "
        f"--workers 1`, own var dirs), {section['setup']}. converged: **{section['converged']}**"
        f" (both report "
        f"{section['new_model_version']}, each fetched its own copy); tampered_refused: "
        f"**{section['tampered_refused']}** ({refused}; both kept serving {section['old_model_version']}).",
    ]


def _milvus_down(section: dict[str, Any]) -> list[str]:
    met = section["failed"] == 0 and section["ann_unavailable"] > 0
    return [
        f"### Milvus down mid-load ({verdict(met)})",
        "",
        f"{section['date']}, `{section['command']}`: {section['setup']}. requests {section['requests']}, "
        f"failed **{section['failed']}**, ann_unavailable **{section['ann_unavailable']}** "
        f'(`tandem_stage_failures_total{{stage="ann"}}`); {section.get("recovered_note", "")}',
    ]


def _redis_cluster(section: dict[str, Any]) -> list[str]:
    rows = section["scenarios"]
    lines = [
        "### Redis Cluster under load",
        "",
        f"{section['date']}, `{section['command']}`: {section['setup']}.",
        "",
        "| scenario | " + " | ".join(SCENARIO_COLUMNS) + " | target |",
        "|---|" + "---|" * (len(SCENARIO_COLUMNS) + 1),
    ]
    for name, row in rows.items():
        cells = " | ".join(str(row.get(column, "")) for column in SCENARIO_COLUMNS)
        lines.append(f"| {name} ({row.get('fault', 'no fault')}) | {cells} | {verdict(scenario_met(row))} |")
    return lines


def _ddp(section: dict[str, Any]) -> list[str]:
    met = bool(section["met"] and section["replicas_identical"])
    return [
        f"### DDP encoder training ({verdict(met)})",
        "",
        f"{section['date']}, `{section['command']}`: ML-1M, `quick` preset, 8 epochs without early stop, "
        f"seeds 0-2, {section['setup']} (`torchrun`, {section['backend']}).",
        "",
        "| mode | best validation NDCG@10 per seed | mean | s per epoch |",
        "|---|---|---|---|",
        f"| 1 process | {section['single_ndcg10']} | {_mean(section['single_ndcg10'])} | "
        f"{section['single_epoch_s']} |",
        f"| {section['world_size']} ranks | {section['ddp_ndcg10']} | {_mean(section['ddp_ndcg10'])} | "
        f"{section['ddp_epoch_s']} |",
        "",
        f"Mean difference {section['mean_difference']:+.4f}, allowed ±{section['tolerance']} "
        f"(max(0.005, 2 x the single runs' stdev)); replicas identical after training: "
        f"{section['replicas_identical']}.",
    ]


def _mean(values: list[float]) -> str:
    return f"{sum(values) / max(len(values), 1):.4f}"


def _replicas(section: dict[str, Any]) -> list[str]:
    ratio = section.get("ratio")
    return [
        f"### Replicas ({verdict(bool(section['met']))})",
        "",
        f"{section['date']}, `{section['command']}`: {section['setup']}; median of the alternating rounds.",
        "",
        f"rps_1 **{section['rps_1']}**, rps_2 **{section['rps_2']}** (x{ratio}, target >= 1.5); "
        f"cross-replica checks {section['cross_replica_checks']}, violations "
        f"**{section['cross_replica_violations']}** (an item clicked through one replica in the other's "
        "next answer with `exclude_seen: true`).",
        "",
        "Rounds: "
        + "; ".join(
            f"{r['replicas']} replica(s) {r['rps']} req/s (p99 {r['p99_ms']} ms)" for r in section["rounds"]
        ),
    ]


def _round(row: dict[str, Any]) -> str:
    return f"{row['replicas']} replica(s) {row['rps']} req/s (p99 {row['p99_ms']} ms)"


def _index(section: dict[str, Any]) -> list[str]:
    columns: tuple[str, ...] = ("items", "faiss_kind", "faiss_recall_at_200", "milvus_recall_at_200")
    columns += ("faiss_p50_ms", "milvus_p50_ms", "milvus_publish_s")
    lines = [
        f"### Index at scale ({verdict(bool(section['met']))})",
        "",
        f"{section['date']}, `{section['command']}`: {section['setup']}; Milvus indexed like the faiss "
        "index; target: Milvus recall >= 0.99 x faiss.",
        "",
        "| catalogue | " + " | ".join(columns) + " | milvus index | target |",
        "|---|" + "---|" * (len(columns) + 2),
    ]
    for name in ("ml-1m", "synthetic-1m"):
        row = section[name]
        cells = " | ".join(str(row[column]) for column in columns)
        index = row["milvus_index"]
        lines.append(
            f"| {name} | {cells} | {index['index_type']} {index['search']} | {verdict(row['met'])} |"
        )
    return lines


def markdown(report: dict[str, Any]) -> list[str]:
    """The measurement sections of scale.md, in ``SECTIONS`` order, for those the report holds."""
    renderers = {
        "bundle_distribution": _bundles,
        "milvus_down": _milvus_down,
        "redis_cluster": _redis_cluster,
        "ddp": _ddp,
        "replicas": _replicas,
        "index": _index,
    }
    lines: list[str] = []
    for name in SECTIONS:
        if name in report:
            lines += ["", *renderers[name](report[name])]
    missing = [name for name in SECTIONS if name not in report]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(f"`{name}`" for name in missing) + "."]
    return lines
