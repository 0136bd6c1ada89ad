"""The report of one ``make bench`` run: headline numbers, markdown tables and the load-sweep figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def headline(result: dict[str, Any]) -> dict[str, Any]:
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


def markdown(report: dict[str, Any]) -> str:
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
        head = headline(result)
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
    keys = (
        "http_ms",
        "store_read_ms",
        "ann_ms",
        "candidates_ms",
        "features_ms",
        "ranker_ms",
        "json_ms",
        "encoder_ms",
    )
    lines += ["| bundle | " + " | ".join(keys) + " | ranker served |", "|---|" + "---|" * (len(keys) + 1)]
    for name, result in report["bundles"].items():
        floors = result["floors"]
        served = floors.get("ranker_served", True)
        lines.append(
            f"| {name} | "
            + " | ".join(f"{floors.get(k, 0.0):.3f}" for k in keys)
            + f" | {floors.get('ranker_kind') or ''} {'yes' if served else 'no (not in the floor sum)'} |"
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


def plot(report: dict[str, Any], path: Path) -> None:
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
