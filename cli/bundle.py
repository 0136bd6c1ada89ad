"""``tandem bundle build``: assemble an artifact bundle from a dataset and trained checkpoints.

    tandem bundle build --dataset ml-1m --encoder var/models/ml-1m-session_encoder.pt --ranker var/models/r.pt
    tandem bundle build --default          # what `make serve` does on first run: train quick models if needed
    tandem bundle build --train --dataset myshop   # the same served pipeline on a prepared dataset of yours

Without ``--encoder`` the bundle is baseline-only (popularity + co-occurrence). Prints the bundle path and
the manifest's versions, serving path and index recall.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cli.options import add_data_dir_option
from models.bundle.load import Bundle
from models.bundle.write import data_fingerprint, from_checkpoints, write_bundle
from models.index import IndexBuildConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default=None,
        help="a shipped dataset or a prepared dataset's --name (default: ml-1m if present, else synthetic)",
    )
    add_data_dir_option(parser)
    parser.add_argument("--cache-dir", type=Path, default=Path("var/data"), help="prepared-dataset cache")
    parser.add_argument("--encoder", type=Path, default=None, help="encoder checkpoint (config + state_dict)")
    parser.add_argument("--ranker", type=Path, default=None, help="ranker checkpoint")
    parser.add_argument("--index-kind", choices=("auto", "flat", "ivf", "hnsw"), default="auto")
    parser.add_argument("--target-recall", type=float, default=IndexBuildConfig.target_recall)
    parser.add_argument("--metrics", type=Path, default=None, help="JSON file of offline metrics to record")
    parser.add_argument(
        "--out", type=Path, default=None, help="bundle directory (default var/bundles/<name>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    parser.add_argument(
        "--default", action="store_true", help="ensure the default bundle under --root (trains quick models)"
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help="train the served pipeline (encoder, candidate sources, merge, ranker) at the quick budget on "
        "--dataset and bundle it under --root/bundles/<name>-...: --default for any dataset",
    )
    parser.add_argument(
        "--root", type=Path, default=Path("var"), help="with --default/--train: where bundles live"
    )


def _read_metrics(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise SystemExit(f"{path}: metrics file not found") from error
    except json.JSONDecodeError as error:
        raise SystemExit(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(metrics, dict):
        raise SystemExit(f"{path}: expected a JSON object of metrics")
    return metrics


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        path = _build(args)
    except ValueError as error:  # DataError included: an unprepared dataset, a log that cannot be split
        print(f"error: {error}", file=sys.stderr)
        return 2
    manifest = Bundle.load(path).manifest
    summary = {
        "bundle": str(path),
        "dataset": manifest.dataset,
        "model_version": manifest.model_version,
        "index_version": manifest.index_version,
        "serving_path": manifest.served_path,
        "index": manifest.index,
    }
    print(json.dumps(summary, indent=2))
    print(f"serve it: tandem serve --bundle {path}")
    return 0


def _build(args: argparse.Namespace) -> Path:
    from models.data.datasets import default_dataset, open_dataset

    if args.default or args.train:
        from models.bundle.default import ensure_default_bundle

        if args.train and not args.dataset:
            raise ValueError("--train needs --dataset (the shipped default dataset: --default)")
        given = open_dataset(args.dataset, args.data_dir, args.cache_dir) if args.dataset else None
        return ensure_default_bundle(args.data_dir, root=args.root, dataset=given)
    dataset = (
        open_dataset(args.dataset, args.data_dir, args.cache_dir)
        if args.dataset
        else default_dataset(args.data_dir, args.cache_dir)
    )
    out = args.out or Path("var/bundles") / f"{dataset.name}-{data_fingerprint(dataset)[:12]}-custom"
    pipeline = from_checkpoints(
        dataset,
        args.encoder,
        args.ranker,
        index_kind=args.index_kind,
        index_config=IndexBuildConfig(target_recall=args.target_recall),
    )
    return write_bundle(
        pipeline,
        dataset,
        out,
        offline=_read_metrics(args.metrics),
        training={"command": "tandem bundle build", "encoder": str(args.encoder), "ranker": str(args.ranker)},
        overwrite=args.overwrite,
    )
