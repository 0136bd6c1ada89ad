"""Command-line options that several ``tandem`` commands (and the tools) share.

Commands are the one layer that reads the environment: library functions take the data directory as an
argument and fall back to ``models.data.datasets.DEFAULT_DATA_DIR`` when given None.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from models.data.defaults import ShapeDefaults, defaults_for
from models.data.schema import Dataset
from models.evaluate.period_checks import period_warnings, skipped_users_note
from models.recipe.settings import RecipeSettings
from models.scorer import EncoderBudget
from models.train.eval_adapter import parse_overrides

PIPELINE_DEFAULTS = RecipeSettings.full()  # the pipeline flags' defaults, so the CLI and the library agree

DATA_DIR_ENV = "TANDEM_DATA_DIR"


def env_data_dir() -> Path | None:
    """$TANDEM_DATA_DIR as a path, None when unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "")
    return Path(value) if value else None


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: the raw data root; default $TANDEM_DATA_DIR, else ../shared/data."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env_data_dir(),
        help=f"raw data root (default: ${DATA_DIR_ENV}, else ../shared/data)",
    )


def encoder_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--encoder-overrides, with --items-per-request as ``max_items_per_session`` when given."""
    overrides = parse_overrides(args.encoder_overrides)
    if args.items_per_request is not None:
        if args.items_per_request < 1:
            raise ValueError(f"--items-per-request must be >= 1, got {args.items_per_request}")
        overrides["max_items_per_session"] = args.items_per_request
    return overrides


def encoder_variants(args: argparse.Namespace) -> tuple[dict[str, Any], ...]:
    """--encoder-variants: a JSON list of JSON objects (None: the pipeline's default variants)."""
    if args.encoder_variants is None:
        return PIPELINE_DEFAULTS.encoder_variants
    values: Any = json.loads(args.encoder_variants)
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise ValueError("--encoder-variants must be a JSON list of objects, e.g. '[{\"temperature\": 0.1}]'")
    return tuple(values)


def encoder_budget(args: argparse.Namespace) -> EncoderBudget:
    return EncoderBudget(
        preset=args.encoder_preset or "default",
        epochs=args.encoder_epochs,
        max_minutes=args.encoder_minutes,
        overrides=encoder_overrides(args),
        continue_epochs=args.continue_epochs,
        **({} if args.encoder_valid_users is None else {"valid_users": args.encoder_valid_users}),
    )


def chosen_defaults(dataset: Dataset, args: argparse.Namespace) -> ShapeDefaults:
    """The data's shape defaults, with the ones set by flags replaced; printed with their reasons."""
    choices = (
        defaults_for(dataset.events)
        .overridden("protocol", args.protocol, "--protocol")
        .overridden("exclude_seen", args.exclude_seen, "--exclude-seen")
        .overridden("items_per_request", args.items_per_request, "--items-per-request")
    )
    print(f"{dataset.name}: " + "\n  ".join(choices.lines()))
    return choices


def protocol_notes(
    dataset: Dataset, choices: ShapeDefaults, test_requests: int, valid_requests: int
) -> list[str]:
    """Printed warnings (stderr) and the report notes that keep them, with the choices made."""
    warnings = period_warnings(choices.protocol.value, test_requests, valid_requests, choices.shape)
    for warning in warnings:
        print(f"warning: {dataset.name}: {warning}", file=sys.stderr)
    skipped = skipped_users_note(choices.shape)
    if skipped is not None:
        print(f"{dataset.name}: {skipped}")
    return (
        [f"Warning: {w}" for w in warnings]
        + ([skipped] if skipped else [])
        + ["Defaults: " + "; ".join(choices.lines()) + "."]
    )


def parse_seeds(text: str) -> list[int]:
    """ "3" -> [0, 1, 2]; "0,5,7" (a list, or one seed with a comma: "4,") -> those seeds."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        seeds = list(range(int(parts[0]))) if len(parts) == 1 and "," not in text else [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: a count (3 -> seeds 0,1,2) or a comma list (0,5,7)") from None
    if not seeds:
        raise ValueError(f"--seeds {text!r} names no seed: give a count >= 1 (1 -> seed 0) or a list (0,5,7)")
    return seeds
