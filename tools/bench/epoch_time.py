"""Seconds per session-encoder epoch, and the validation curve they buy (issue 10, item 5).

Trains the session encoder's ``quick`` preset (leave-last-out split, validation on up to 500 held-out
users; the earlier first-run encoder's set-up) for a fixed number of epochs, without early stopping, and
prints one line per epoch: wall seconds, CPU seconds (this process; steadier than wall time on a shared
machine), cumulative CPU seconds and validation NDCG@10. ``--overrides`` takes the same JSON object as
``tandem eval --encoder-overrides``; ``--json`` appends the run to a file.

    make bench-epochs BENCH_ARGS="--dataset ml-1m --epochs 6 --threads 1 \
        --overrides '{\"fold_context\": false}' --label 'two tokens per rating'"
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from cli.options import add_data_dir_option
from models.data.datasets import open_dataset
from models.data.splits import leave_last_out
from models.train.eval_adapter import apply_overrides, parse_overrides
from models.train.fit import fit_encoder, next_item_cases, subsample
from models.train.presets import preset

VALID_USERS = 500  # held-out users scored per epoch
BUDGETS_S = (30, 60, 90, 120)  # training CPU seconds at which runs are compared


def measure(
    dataset_name: str, epochs: int, threads: int, overrides: dict[str, Any], data_dir: Path | None = None
) -> dict[str, Any]:
    """Train ``epochs`` epochs of the quick session encoder; the per-epoch record and the resolved config.
    ``data_dir``: the raw data root (None: ../shared/data)."""
    dataset = open_dataset(dataset_name, data_dir)
    model_config, train = preset("quick", "session_encoder")
    train = replace(train, epochs=epochs, patience=0, max_minutes=0.0, threads=threads, progress=False)
    model_config, train = apply_overrides(model_config, train, overrides)
    split = leave_last_out(dataset.events)
    train_events = dataset.events.take(split.train)
    valid = next_item_cases(dataset, train_events, dataset.events.take(split.valid))
    started, cpu_started = time.perf_counter(), time.process_time()
    result = fit_encoder(dataset, train_events, model_config, train, subsample(valid, VALID_USERS, 0))
    rows = []
    cumulative = 0.0
    for record in result.state.history:
        cumulative += record["epoch_cpu_seconds"]
        rows.append(
            {
                "epoch": int(record["epoch"]),
                "wall_s": round(record["epoch_seconds"], 2),
                "cpu_s": round(record["epoch_cpu_seconds"], 2),
                "cumulative_cpu_s": round(cumulative, 1),
                "train_loss": round(record["train_loss"], 4),
                "val_NDCG@10": round(record.get("val_NDCG@10", 0.0), 4),
            }
        )
    config = result.model.config
    return {
        "dataset": dataset_name,
        "overrides": overrides,
        "threads": threads,
        "layout": {
            "fold_context": getattr(config, "fold_context", False),
            "max_tokens": config.max_tokens,
            "max_items_per_session": config.max_items_per_session,
        },
        "batch_size": train.batch_size,
        "learning_rate": train.learning_rate,
        "epochs": rows,
        "total_wall_s": round(time.perf_counter() - started, 1),
        "total_cpu_s": round(time.process_time() - cpu_started, 1),
    }


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def best_within(run: dict[str, Any], budget_s: float) -> float | None:
    """Best validation NDCG@10 among the epochs that ended within ``budget_s`` training CPU seconds; None
    when the run stopped while another epoch would still have fitted (as ``--max-minutes`` decides)."""
    rows = run["epochs"]
    if not rows or rows[-1]["cumulative_cpu_s"] + rows[-1]["cpu_s"] <= budget_s:
        return None
    scores = [row["val_NDCG@10"] for row in rows if row["cumulative_cpu_s"] <= budget_s]
    return max(scores) if scores else None


def markdown(runs: list[dict[str, Any]]) -> str:
    """One row per run: median seconds per epoch (CPU, wall), and the best validation NDCG@10 reached
    within each training-CPU budget of ``BUDGETS_S``."""
    head = "| run | tokens | batch | CPU s/epoch | wall s/epoch | epochs | "
    head += " | ".join(f"best NDCG@10 in {b} s" for b in BUDGETS_S) + " |"
    lines = [head, "|" + "---|" * (6 + len(BUDGETS_S))]
    for run in runs:
        rows = run["epochs"]
        cells = [
            run.get("label", ""),
            f"{run['layout']['max_tokens']}{' folded' if run['layout']['fold_context'] else ''}",
            str(run["batch_size"]),
            f"{median([r['cpu_s'] for r in rows]):.2f}",
            f"{median([r['wall_s'] for r in rows]):.2f}",
            str(len(rows)),
        ]
        for budget in BUDGETS_S:
            best = best_within(run, budget)
            cells.append("–" if best is None else f"{best:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-1m")
    add_data_dir_option(parser)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--overrides", default="", help="JSON object of EncoderConfig/TrainConfig fields")
    parser.add_argument("--label", default="")
    parser.add_argument("--json", type=Path, default=None, help="append the run to this JSON list")
    parser.add_argument(
        "--table", action="store_true", help="print the markdown table of the runs in --json and exit"
    )
    args = parser.parse_args(argv)
    if args.table:
        if args.json is None or not args.json.exists():
            parser.error("--table needs an existing --json file")
        print(markdown(json.loads(args.json.read_text())), end="")
        return
    run = measure(args.dataset, args.epochs, args.threads, parse_overrides(args.overrides), args.data_dir)
    run["label"] = args.label
    for row in run["epochs"]:
        print(json.dumps(row))
    print(json.dumps({k: v for k, v in run.items() if k != "epochs"}))
    if args.json is not None:
        runs = json.loads(args.json.read_text()) if args.json.exists() else []
        runs.append(run)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
