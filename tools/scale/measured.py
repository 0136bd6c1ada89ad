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


def _reduced(title: str, section: dict[str, Any]) -> list[str]:
    body = {k: v for k, v in section.items() if k not in ("command", "date", "reduced")}
    return [
        f"### {title} (reduced: {section.get('reduced', 'see json')}; not the issue's protocol)",
        "",
        f"{section['date']}, `{section['command']}`:",
        "",
        "```json",
        json.dumps(body, indent=1),
        "```",
    ]


def markdown(report: dict[str, Any]) -> list[str]:
    """The measurement sections of scale.md, in ``SECTIONS`` order, for those the report holds."""
    renderers = {
        "bundle_distribution": _bundles,
        "milvus_down": _milvus_down,
        "redis_cluster": _redis_cluster,
        "ddp": lambda s: _reduced("DDP training", s),
        "replicas": lambda s: _reduced("Replicas", s),
        "index": lambda s: _reduced("Index at scale", s),
    }
    lines: list[str] = []
    for name in SECTIONS:
        if name in report:
            lines += ["", *renderers[name](report[name])]
    missing = [name for name in SECTIONS if name not in report]
    if missing:
        lines += ["", "Not measured yet: " + ", ".join(f"`{name}`" for name in missing) + "."]
    return lines
