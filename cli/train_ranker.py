"""``tandem train ranker``: train the ranker on a dataset and save a serving checkpoint; ``--evaluate``
also writes the ranking report with ablations (as ``tandem eval --stage ranker`` does through
``models.ranker.dataset_report``)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from cli.options import add_data_dir_option
from models.data.datasets import DATASET_NAMES, DEFAULT_CACHE_DIR, open_dataset
from models.ranker.config import PRESETS, preset
from models.ranker.evaluate import VARIANTS, encode_sources, evaluate_ranker, fit_variant, prepare_experiment
from models.ranker.report import write_report
from models.ranker.serving import save_ranker
from models.reporting.files import DEFAULT_RESULTS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset", default="ml-1m", help=f"{', '.join(DATASET_NAMES)} or a prepared dataset's --name"
    )
    add_data_dir_option(parser)
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS))
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-train-requests", type=int, default=None)
    parser.add_argument("--requests-per-user", type=int, default=None)
    parser.add_argument("--group-size", type=int, default=None, help="C (1 = independent scoring)")
    parser.add_argument("--steps", type=int, default=None, help="K reasoning steps (0 = off)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="checkpoint path (default var/ranker/<dataset>.pt)")
    parser.add_argument(
        "--evaluate", action="store_true", help="write <results-dir>/ranking-<dataset>.{json,md,png}"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, with --evaluate")
    parser.add_argument("--eval-candidates", type=int, default=200)
    parser.add_argument(
        "--results-dir",
        default=str(DEFAULT_RESULTS_DIR),
        help=f"where --evaluate writes its report (default {DEFAULT_RESULTS_DIR})",
    )


def configs_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    overrides = {}
    if args.group_size is not None:
        overrides["group_size"] = args.group_size
    if args.steps is not None:
        overrides["reasoning_steps"] = args.steps
    model_config, train_config = preset(args.preset, **overrides)
    changes = {
        "epochs": args.epochs,
        "max_train_requests": args.max_train_requests,
        "max_requests_per_user": args.requests_per_user,
        "threads": args.threads,
    }
    return model_config, replace(train_config, **{k: v for k, v in changes.items() if v is not None})


def run_ranker_evaluation(args: argparse.Namespace) -> dict[str, Path]:
    """Trains every variant, writes JSON/markdown/PNG and returns their paths."""
    model_config, train_config = configs_from_args(args)
    torch.set_num_threads(train_config.threads)
    dataset = open_dataset(args.dataset, args.data_dir, args.cache_dir)
    variants = [v for v in args.variants.split(",") if v]
    report = evaluate_ranker(
        dataset, model_config, train_config, variants, eval_candidates=args.eval_candidates
    )
    command = "tandem train ranker " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "tandem train ranker"
    return write_report(report, Path(args.results_dir), command)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ValueError as error:  # DataError included: an unprepared dataset, a log the ranker cannot use
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.evaluate:
        for kind, path in run_ranker_evaluation(args).items():
            print(f"{kind}: {path}")
        return 0
    model_config, train_config = configs_from_args(args)
    torch.set_num_threads(train_config.threads)
    dataset = open_dataset(args.dataset, args.data_dir, args.cache_dir)
    experiment, _ = prepare_experiment(dataset, model_config, train_config)
    model, log = fit_variant(experiment, model_config, train_config)
    out = Path(args.out or f"var/ranker/{args.dataset}.pt")
    save_ranker(
        out, model, encode_sources(experiment, model_config), dataset.funnel, f"ranker-{args.dataset}"
    )
    for row in log:
        print(f"epoch {row['epoch']:.0f}: loss {row['train_loss']:.4f} ({row['epoch_seconds']:.1f} s)")
    print(f"saved {out}")
    return 0
