"""``ddp``: the session encoder trained in one process (2 threads) and data-parallel in two (``torchrun
--nproc-per-node 2``, gloo, 1 thread each), same data, preset and seeds.

ML-1M, the ``quick`` preset, a fixed budget of 8 epochs (no early stop, no wall-clock cap), seeds 0-2;
for every seed the single run then the DDP run, one after the other. Reported: the best validation
NDCG@10 of each run (lists in seed order), the mean seconds per epoch of each mode, and whether the DDP
replicas ended with identical weights. Target: |mean DDP - mean single| <= max(0.005, 2 x stdev single).
Epoch time has no target (two processes share the machine's two cores).

    python -m tools.scale.ddp [--seeds 0 1 2] [--epochs 8] [--dataset ml-1m]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.scale.common import DATA_DIR, MEASURED, ROOT, write_measurement

NAME = "ddp"
WORLD = 2
THREADS = 2  # one process x 2 threads against 2 processes x 1 thread (--threads is shared by the ranks)


def training_command(mode: str, seed: int, args: argparse.Namespace, out: Path) -> list[str]:
    """The command of one run: ``single`` (plain ``python -m``) or ``ddp`` (torchrun, ``WORLD`` ranks)."""
    launcher = [sys.executable]
    if mode == "ddp":
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={WORLD}"]
    return [
        *launcher,
        "-m",
        "models.train.encoder_cli",
        "--dataset",
        args.dataset,
        "--data-dir",
        str(args.data_dir),
        "--preset",
        "quick",
        "--epochs",
        str(args.epochs),
        "--patience",
        "0",
        "--max-minutes",
        "0",
        "--threads",
        str(THREADS),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]


def run_once(mode: str, seed: int, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    """Trains once and returns the run's summary (``models.train.encoder_cli``'s JSON next to the weights)."""
    out = out_dir / f"{mode}-seed{seed}.pt"
    subprocess.run(training_command(mode, seed, args, out), cwd=ROOT, check=True)
    return dict(json.loads(out.with_name(out.name + ".json").read_text()))


def summarise(single: list[dict[str, Any]], ddp: list[dict[str, Any]]) -> dict[str, Any]:
    """The section of scale.json from the runs' summaries (each: ``metrics``, ``epoch_seconds``, ...)."""

    def best(runs: list[dict[str, Any]]) -> list[float]:
        return [round(float(run["metrics"]["val_NDCG@10"]), 4) for run in runs]

    def epoch_s(runs: list[dict[str, Any]]) -> float:
        return round(statistics.mean(s for run in runs for s in run["epoch_seconds"]), 2)

    single_ndcg, ddp_ndcg = best(single), best(ddp)
    spread = statistics.stdev(single_ndcg) if len(single_ndcg) > 1 else 0.0
    tolerance = max(0.005, 2 * spread)
    difference = statistics.mean(ddp_ndcg) - statistics.mean(single_ndcg)
    return {
        "world_size": WORLD,
        "backend": "gloo",
        "single_ndcg10": single_ndcg,
        "ddp_ndcg10": ddp_ndcg,
        "single_epoch_s": epoch_s(single),
        "ddp_epoch_s": epoch_s(ddp),
        "mean_difference": round(difference, 4),
        "tolerance": round(tolerance, 4),
        "met": abs(difference) <= tolerance,
        "replicas_identical": all(run.get("replicas_identical", False) for run in ddp),
        "epochs": [run["epochs"] for run in single + ddp],
        "setup": f"1 process x {THREADS} threads vs {WORLD} x {THREADS // WORLD}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scale.ddp", description=__doc__)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args(argv)
    out_dir = MEASURED / "ddp"
    out_dir.mkdir(parents=True, exist_ok=True)
    single, ddp = [], []
    for seed in args.seeds:
        single.append(run_once("single", seed, args, out_dir))
        ddp.append(run_once("ddp", seed, args, out_dir))
    section = summarise(single, ddp)
    command = "python -m tools.scale.ddp " + " ".join(sys.argv[1:] if argv is None else argv)
    write_measurement(NAME, section, command.strip())
    return 0 if section["met"] and section["replicas_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
