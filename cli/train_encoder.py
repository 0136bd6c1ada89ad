"""``tandem train encoder``: train the session encoder or a causal baseline on a prepared dataset.

    tandem train encoder --dataset ml-1m --model session_encoder [--preset quick] [--out var/models/x.pt]
    tandem train encoder ... --resume var/models/x.pt.resume.pt          # continue an interrupted run
    tandem train encoder ... --init-from var/bundle --since 2003-01-01   # incremental: newer events only

Writes the serving checkpoint ``--out`` (best weights, config, item categories, metrics), a resumable
``<out>.resume.pt`` after every epoch, and ``<out>.curves.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from cli.options import add_data_dir_option
from models.checkpoints import load_checkpoint
from models.data.datasets import DATASET_NAMES, open_dataset
from models.data.splits import protocol_split
from models.encoder.config import ENCODER_KINDS
from models.encoder.serving import save_user_encoder
from models.train.fit import fit_encoder, next_item_cases, subsample
from models.train.losses import LOGQ_MODES
from models.train.plots import plot_training_curves
from models.train.presets import PRESETS, preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="ml-1m", help=f"{', '.join(DATASET_NAMES)} or a prepared dataset's --name"
    )
    add_data_dir_option(parser)
    parser.add_argument("--cache-dir", default="var/data", help="where prepared datasets are cached")
    parser.add_argument("--model", choices=ENCODER_KINDS, default="session_encoder")
    parser.add_argument("--preset", choices=PRESETS, default="default")
    parser.add_argument("--split", choices=("leave-last-out", "time"), default="leave-last-out")
    parser.add_argument(
        "--out", type=Path, default=None, help="checkpoint (default var/models/<ds>-<model>.pt)"
    )
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", "--lr", type=float, default=None)
    parser.add_argument("--logq", choices=LOGQ_MODES, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop after the epoch past this")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--valid-users", type=int, default=1000, help="validation sample size")
    parser.add_argument("--resume", type=Path, default=None, help="a <out>.resume.pt to continue")
    parser.add_argument("--init-from", type=Path, default=None, help="checkpoint or bundle to start from")
    parser.add_argument("--since", default=None, help="incremental: supervise targets at/after this date")
    parser.add_argument("--no-progress", action="store_true")


def parse_since(text: str | None) -> int:
    if not text:
        return 0
    if text.isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())
    except ValueError as error:
        raise SystemExit(f"--since: expected unix seconds or an ISO date, got {text!r}") from error


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    model_config, train = preset(args.preset, args.model)
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "logq": args.logq,
        "max_minutes": args.max_minutes,
        "patience": args.patience,
    }
    train = replace(
        train,
        **{k: v for k, v in overrides.items() if v is not None},
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
        min_target_ts=parse_since(args.since),
    )
    out = args.out or Path("var/models") / f"{args.dataset}-{args.model}.pt"
    try:
        dataset = open_dataset(args.dataset, args.data_dir, args.cache_dir)
    except ValueError as error:  # DataError included: an unprepared or badly named dataset
        print(f"error: {error}", file=sys.stderr)
        return 2
    protocol = "leave-last-out" if args.split == "leave-last-out" else "next-session"
    split = protocol_split(dataset.events, protocol, dataset.event_split)  # a supplied split column wins
    train_events = dataset.events.take(split.train)
    valid_cases = subsample(
        next_item_cases(dataset, train_events, dataset.events.take(split.valid)), args.valid_users, args.seed
    )
    resume = load_checkpoint(args.resume) if args.resume else None
    started = time.perf_counter()
    result = fit_encoder(
        dataset,
        train_events,
        model_config,
        train,
        valid_cases,
        init_from=args.init_from,
        checkpoint_path=out.with_name(out.name + ".resume.pt"),
        resume=resume,
    )
    seconds = time.perf_counter() - started
    best = next((r for r in result.state.history if r["epoch"] == result.state.best_epoch), {})
    save_user_encoder(
        result.model,
        out,
        result.item_category,
        extra={
            "epoch": result.state.best_epoch,
            "metrics": best,
            "history": result.state.history,
            "train_config": vars(train) if hasattr(train, "__dict__") else {},
            "dataset": dataset.name,
            "train_seconds": seconds,
        },
    )
    plot_training_curves({args.model: result.state.history}, out.with_name(out.name + ".curves.png"))
    print(
        json.dumps(
            {
                "checkpoint": str(out),
                "best_epoch": result.state.best_epoch,
                "metrics": best,
                "train_seconds": round(seconds, 1),
            },
            indent=2,
        )
    )
    return 0
