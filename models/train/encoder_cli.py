"""Encoder training over several processes: ``torchrun --nproc-per-node N -m models.train.encoder_cli``.

    torchrun --nproc-per-node 2 -m models.train.encoder_cli --dataset ml-1m --preset quick \\
        --epochs 8 --threads 2 --out var/models/ml-1m-session_encoder-ddp.pt

The same training as ``tandem train encoder`` (split, validation cases, preset), data-parallel
(``models.train.distributed``): ``--batch-size`` is the global batch, each of N ranks takes batch / N rows;
``--threads`` is shared among the ranks. Rank 0 writes the checkpoint (a plain state dict, loadable by
``tandem serve`` / ``bundle build --encoder``), the curves and a JSON summary (``replicas_identical``:
whether every rank ended with the same weights). Run with plain ``python -m`` it trains in one process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from models.data.datasets import DEFAULT_CACHE_DIR, open_dataset
from models.data.splits import protocol_split
from models.encoder.serving import save_user_encoder
from models.train.distributed import DistContext, replicas_identical
from models.train.fit import fit_encoder, next_item_cases, subsample
from models.train.plots import plot_training_curves
from models.train.presets import preset


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m models.train.encoder_cli", description=__doc__)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument("--model", default="session_encoder")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--split", choices=("leave-last-out", "time"), default="leave-last-out")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="the global batch (all ranks)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads shared by the ranks")
    parser.add_argument(
        "--patience", type=int, default=None, help="early stopping (0: never stop early; default: preset)"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="wall-clock cap (0: none; default: preset)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--valid-users", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    context = DistContext.from_environment()
    try:
        model_config, train = preset(args.preset, args.model)
        changes = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "patience": args.patience,
            "max_minutes": args.max_minutes,
        }
        train = replace(
            train,
            **{k: v for k, v in changes.items() if v is not None},
            seed=args.seed,
            threads=args.threads,
        )
        dataset = open_dataset(args.dataset, args.data_dir, args.cache_dir)
        protocol = "leave-last-out" if args.split == "leave-last-out" else "next-session"
        split = protocol_split(dataset.events, protocol, dataset.event_split)
        train_events = dataset.events.take(split.train)
        cases = next_item_cases(dataset, train_events, dataset.events.take(split.valid))
        valid = subsample(cases, args.valid_users, args.seed)  # every rank: the same decisions follow
        started = time.perf_counter()
        result = fit_encoder(dataset, train_events, model_config, train, valid, context=context)
        seconds = time.perf_counter() - started
        identical = replicas_identical(result.model, context) if context.active else True
        if context.leader:
            state = result.state
            best = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
            extra = {
                "epoch": state.best_epoch,
                "metrics": best,
                "history": state.history,
                "world": context.world,
            }
            save_user_encoder(result.model, args.out, result.item_category, extra=extra)
            plot_training_curves(
                {args.model: state.history}, args.out.with_name(args.out.name + ".curves.png")
            )
            summary = {
                "checkpoint": str(args.out),
                "world": context.world,
                "epochs": state.epoch,
                "best_epoch": state.best_epoch,
                "stopped_by": state.stopped_by,
                "metrics": best,
                "epoch_seconds": [r.get("epoch_seconds") for r in state.history],
                "train_seconds": round(seconds, 1),
                "replicas_identical": identical,
            }
            args.out.with_name(args.out.name + ".json").write_text(json.dumps(summary, indent=1) + "\n")
            print(json.dumps(summary, indent=2))
        return 0 if identical else 1
    finally:
        context.close()


if __name__ == "__main__":
    sys.exit(main())
