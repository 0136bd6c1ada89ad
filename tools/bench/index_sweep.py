"""Recall/latency sweep of exact, IVF and HNSW indexes on clustered synthetic item vectors.

    make bench-index    # 1M items, d=64 -> docs/results/index-synthetic-1m.* (default --out: var/results/)

Holdout queries (user-like: means of 3 random items plus noise) are disjoint from the ones each build tunes
on, so the recall reported here is what the tuned setting gives on queries it has not seen. Single-query
latency runs with 1 faiss thread (how serving calls it); batch latency with ``--threads``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from tqdm import tqdm

from models.index import IndexBuildConfig, build_index
from models.index.synthetic_vectors import clustered_item_vectors, user_like_queries
from models.index.tuning import exact_top_k, sweep
from models.reporting.files import DEFAULT_RESULTS_DIR, write_report
from models.reporting.provenance import command_line, machine_info

GOAL_RECALL = 0.95


def _pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (part.split(":") for part in text.split(",") if part)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000, help="real items (the table adds rows 0/1)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--spread", type=float, default=0.35, help="noise norm around a cluster centre")
    parser.add_argument("--queries", type=int, default=500, help="holdout queries for recall")
    parser.add_argument("--k", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2, help="faiss threads for builds and batched search")
    parser.add_argument("--ivf-nlist", default="1024,2048,4096", help="comma-separated nlist values")
    parser.add_argument("--hnsw", default="16:40,32:80", help="comma-separated M:efConstruction pairs")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_RESULTS_DIR / "index-synthetic-1m",
        help="report path without suffix (make bench-index: docs/results/index-synthetic-1m)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    num_rows = args.items + 2
    vectors = clustered_item_vectors(
        num_rows, args.dim, num_clusters=args.clusters, spread=args.spread, seed=0
    )
    queries = user_like_queries(vectors, args.queries, seed=1234)  # the builds tune on seed-1 queries
    started = time.perf_counter()
    truth = exact_top_k(vectors, queries, args.k)
    exact_seconds = time.perf_counter() - started
    configs: list[tuple[str, str, IndexBuildConfig]] = [("flat", "exact", IndexBuildConfig(recall_k=args.k))]
    for nlist in (int(v) for v in args.ivf_nlist.split(",") if v):
        configs.append(("ivf", f"IVF nlist={nlist}", IndexBuildConfig(recall_k=args.k, ivf_nlist=nlist)))
    for m, ef_construction in _pairs(args.hnsw):
        config = IndexBuildConfig(recall_k=args.k, hnsw_m=m, hnsw_ef_construction=ef_construction)
        configs.append(("hnsw", f"HNSW M={m} efC={ef_construction}", config))
    results = []
    for kind, label, config in tqdm(configs, desc="index configs", unit="index"):
        config.build_threads = args.threads
        index = build_index(vectors, kind, config=config)
        values = [point["value"] for point in index.metadata["sweep"]]
        holdout = sweep(index, queries, truth, args.k, values, batch_threads=args.threads)
        results.append(
            {
                "kind": kind,
                "label": label,
                "build_params": index.metadata["build_params"],
                "build_seconds": index.metadata["build_seconds"],
                "tuned": index.metadata["chosen"],
                "tuned_target_met": index.metadata["recall"]["target_met"],
                "holdout": [point.as_dict() for point in holdout],
                "holdout_at_tuned": next(
                    p.as_dict() for p in holdout if p.value == index.metadata["chosen"]["value"]
                ),
            }
        )
        del index
    return {
        "command": command_line(),
        "machine": machine_info(),
        "data": {
            "items": args.items,
            "dim": args.dim,
            "clusters": args.clusters,
            "spread": args.spread,
            "holdout_queries": args.queries,
            "query_kind": "normalised mean of 3 random item vectors plus noise (user-like)",
        },
        "k": args.k,
        "goal_recall": GOAL_RECALL,
        "threads": {"single_query": 1, "batch_and_build": args.threads},
        "exact_ground_truth_seconds": round(exact_seconds, 2),
        "auto_rule": f"flat up to {IndexBuildConfig().flat_max_items:,} real items, else IVF",
        "results": results,
    }


def _markdown(report: dict[str, Any]) -> str:
    data = report["data"]
    lines = [
        f"# Index sweep: {data['items']:,} synthetic items, d={data['dim']}",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"faiss {report['machine']['faiss']}, commit {report['machine']['commit']}  ",
        f"Data: {data['clusters']} gaussian clusters on the unit sphere (noise norm {data['spread']}); "
        f"{data['holdout_queries']} holdout queries, {data['query_kind']}.  ",
        f"Recall@{report['k']} against exact search; single-query latency with 1 faiss thread, batch latency "
        f"per query with {report['threads']['batch_and_build']} threads.",
        "",
        "## At the setting each build chose (target 0.96 on its own tuning queries)",
        "",
        f"| index | build s | knob | recall@{report['k']} (holdout) | p50 ms | p99 ms | batch ms/query |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in report["results"]:
        point = result["holdout_at_tuned"]
        knob = "-" if point["param"] == "exact" else f"{point['param']}={point['value']}"
        lines.append(
            f"| {result['label']} | {result['build_seconds']:.1f} | {knob} | {point['recall_at_k']:.4f} | "
            f"{point['single_query_ms_p50']:.3f} | {point['single_query_ms_p99']:.3f} | "
            f"{point['batch_query_ms']:.3f} |"
        )
    lines += ["", "## Full sweeps (holdout queries)", ""]
    for result in report["results"]:
        if result["kind"] == "flat":
            continue
        lines += [
            f"### {result['label']}",
            "",
            "| knob | recall | p50 ms | p99 ms | batch ms/query |",
            "|---|---|---|---|---|",
        ]
        for point in result["holdout"]:
            lines.append(
                f"| {point['param']}={point['value']} | {point['recall_at_k']:.4f} | "
                f"{point['single_query_ms_p50']:.3f} | {point['single_query_ms_p99']:.3f} | "
                f"{point['batch_query_ms']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for result in report["results"]:
        latency = [p["single_query_ms_p50"] for p in result["holdout"]]
        recall = [p["recall_at_k"] for p in result["holdout"]]
        style = "*" if result["kind"] == "flat" else "o-"
        axis.plot(
            latency, recall, style, label=result["label"], markersize=9 if result["kind"] == "flat" else 4
        )
    axis.axhline(report["goal_recall"], color="grey", linestyle="--", linewidth=1, label="goal 0.95")
    axis.set_xscale("log")
    axis.set_xlabel("single-query latency p50, ms (1 thread, log scale)")
    axis.set_ylabel(f"recall@{report['k']} vs exact")
    axis.set_title(f"{report['data']['items']:,} items, d={report['data']['dim']}")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    text = _markdown(report)
    write_report(args.out, report, text, lambda png: _plot(report, png))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
