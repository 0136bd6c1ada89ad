"""``tandem data prepare``: raw dataset -> typed event table (Parquet + manifest), with a summary."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli.options import add_data_dir_option
from models.data.builder import SessionConfig
from models.data.datasets import (
    DATASET_NAMES,
    DEFAULT_CACHE_DIR,
    PrepareOptions,
    check_dataset_name,
    prepare_dataset,
)
from models.data.defaults import defaults_for
from models.data.errors import DataError
from models.data.loaders.generic import parse_mapping
from models.data.loaders.synthetic import SyntheticConfig
from models.data.sessions import DEFAULT_MAX_SESSION_ITEMS
from models.data.summary import format_summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=DATASET_NAMES, required=True)
    add_data_dir_option(parser)
    parser.add_argument("--input", type=Path, default=None, help="a specific input file or folder")
    parser.add_argument(
        "--name",
        default=None,
        help="your name for the prepared dataset (default: --dataset): its cache folder, its report and "
        "bundle names; later commands take it as --dataset NAME",
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="prepared datasets")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <cache-dir>/<name>)")
    parser.add_argument("--session-gap-minutes", type=float, default=30.0)
    parser.add_argument("--max-session-items", type=int, default=DEFAULT_MAX_SESSION_ITEMS)
    parser.add_argument("--skip-bad-rows", action="store_true", help="count and skip malformed rows")
    parser.add_argument("--force", action="store_true", help="prepare again even if the output is current")
    generic = parser.add_argument_group("csv / parquet")
    generic.add_argument(
        "--map",
        default="",
        help="field=column,...: user, item, timestamp (required; default: columns of those names), action, "
        "value, scene, device, category, title, split (train/valid/test per event)",
    )
    generic.add_argument("--sep", default=",")
    generic.add_argument(
        "--timestamp-unit",
        choices=("s", "ms", "us"),
        default="s",
        help="unit of the timestamp column; decimals are accepted and floored to whole seconds",
    )
    synthetic = parser.add_argument_group("synthetic")
    defaults = SyntheticConfig()
    synthetic.add_argument("--users", type=int, default=defaults.num_users)
    synthetic.add_argument("--items", type=int, default=defaults.num_items)
    synthetic.add_argument("--events", type=int, default=defaults.num_events)
    synthetic.add_argument("--clusters", type=int, default=defaults.num_clusters)
    synthetic.add_argument("--scenes", type=int, default=defaults.num_scenes)
    synthetic.add_argument("--devices", type=int, default=defaults.num_devices)
    synthetic.add_argument("--seed", type=int, default=defaults.seed)


def options_from_args(args: argparse.Namespace) -> PrepareOptions:
    return PrepareOptions(
        sessions=SessionConfig(round(args.session_gap_minutes * 60), args.max_session_items),
        skip_bad_rows=args.skip_bad_rows,
        input_path=args.input,
        mapping=parse_mapping(args.map) if args.dataset == "csv" else {},
        sep=args.sep,
        timestamp_unit=args.timestamp_unit,
        synthetic=SyntheticConfig(
            num_users=args.users,
            num_items=args.items,
            num_events=args.events,
            num_clusters=args.clusters,
            num_scenes=args.scenes,
            num_devices=args.devices,
            seed=args.seed,
        ),
        progress=True,
        name=None if args.name is None else check_dataset_name(args.name, args.dataset),
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
        out = args.out or args.cache_dir / (options.name or args.dataset)
        if args.force and (out / "manifest.json").is_file():
            (out / "manifest.json").unlink()
        started = time.perf_counter()
        dataset, reused = prepare_dataset(args.dataset, args.data_dir, out, options)
    except (DataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    print(format_summary(dataset))
    state = "reused (inputs unchanged)" if reused else f"prepared in {seconds:.1f} s"
    print(f"output    {out} ({state})")
    print("defaults the later commands take from the data's shape (each can be set with a flag):")
    print("\n".join(f"  {line}" for line in defaults_for(dataset.events).lines()))
    return 0
