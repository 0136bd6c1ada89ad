"""``tandem eval``: fit registered models on a split, score them under one protocol, write reports."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from cli.eval_pipeline import run_bundle_replay, run_fusion_stage, run_pipeline_stage
from cli.options import (
    PIPELINE_DEFAULTS,
    add_data_dir_option,
    chosen_defaults,
    encoder_budget,
    parse_seeds,
    protocol_notes,
)
from models.data.datasets import DATASET_NAMES, DEFAULT_CACHE_DIR, has_ml1m, open_dataset, resolve_data_dir
from models.data.defaults import defaults_for
from models.data.errors import DataError
from models.data.schema import Dataset
from models.data.shape import measure_shape
from models.data.splits import protocol_split
from models.evaluate.period_checks import RANKER_TIME_CUT, period_warnings
from models.evaluate.registry import MODELS, available_models, get_factory
from models.evaluate.report import EvalReport
from models.protocols import (
    PROTOCOLS,
    REPORTED_METRICS,
    evaluate,
    leave_last_out_task,
    next_session_task,
)
from models.ranker.config import CONTRASTIVE_SCOPES
from models.reporting.files import DEFAULT_RESULTS_DIR, report_paths
from models.scorer import FitInput

DEFAULT_OUT_DIR = DEFAULT_RESULTS_DIR  # var/results: a run's reports stay out of the checkout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", default=[], help=f"repeatable; registered: {sorted(MODELS)}"
    )
    parser.add_argument(
        "--stage",
        choices=("retrieval", "ranker", "pipeline", "fusion"),
        default="retrieval",
        help="ranker: train the ranker variants and compare with the retrieval order (ranking-<dataset>.*); "
        "pipeline: replay what /v1/recommend serves, every candidate source and the merge as rows "
        "(pipeline-<dataset>.*); fusion: the same replay, then how far any score fusion of its sources "
        "goes on the test, an upper bound (fusion-<dataset>.*)",
    )
    parser.add_argument(
        "--encoder-minutes",
        type=float,
        default=None,
        help="wall-clock safety cap per trained model and seed, reported when it stops a model (the budget "
        f"is --encoder-epochs; pipeline default {PIPELINE_DEFAULTS.encoder_max_minutes:g}, 0 = none)",
    )
    parser.add_argument(
        "--encoder-preset", default=None, help="tiny | quick | default (retrieval: default; pipeline: quick)"
    )
    parser.add_argument(
        "--encoder-epochs",
        type=int,
        default=None,
        help="epoch budget per trained model (pipeline: per encoder variant, default "
        f"{PIPELINE_DEFAULTS.encoder_epochs}, 0 = no encoder)",
    )
    parser.add_argument(
        "--encoder-overrides",
        default="",
        help="JSON of EncoderConfig/TrainConfig fields (retrieval and pipeline stages), e.g. "
        "'{\"max_items_per_session\": 4}'",
    )
    parser.add_argument(
        "--encoder-variants",
        default=None,
        help="pipeline: JSON list of encoder settings tried besides the preset (each over "
        "--encoder-overrides, each with the full budget); the one best on the ranker-period targets is kept. "
        f"Default {json.dumps(list(PIPELINE_DEFAULTS.encoder_variants))}; '[]' trains the preset only",
    )
    parser.add_argument(
        "--ranker-epochs", type=int, default=PIPELINE_DEFAULTS.ranker_epochs, help="pipeline: ranker epochs"
    )
    parser.add_argument(
        "--sources",
        default="",
        help="pipeline: comma-separated candidate sources to merge (of ann, cooccurrence, transitions, "
        "category, recent, popular; default: every one the data feeds), e.g. for an ablation",
    )
    parser.add_argument(
        "--merge-fusion",
        choices=("auto", "rrf", "score"),
        default=PIPELINE_DEFAULTS.merge_fusion,
        help="pipeline: how the source lists merge: rank fusion (rrf), weighted standardised scores (score), "
        "or auto (tune both on validation, keep the better; default)",
    )
    parser.add_argument(
        "--merge-tuning",
        choices=("all", "valid"),
        default=PIPELINE_DEFAULTS.merge_tuning,
        help="pipeline: the ranker-period requests the merge weights are tuned on: all of them (default) "
        "or only the ranker's validation users",
    )
    parser.add_argument(
        "--merge-tuning-requests",
        type=int,
        default=PIPELINE_DEFAULTS.merge_tuning_requests,
        help="pipeline: at most this many of them, drawn at random (default %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=PIPELINE_DEFAULTS.threads, help="pipeline: torch threads"
    )
    parser.add_argument(
        "--variant-processes",
        type=int,
        default=PIPELINE_DEFAULTS.variant_processes,
        help="pipeline: processes training the encoder variants side by side (same models, less wall time)",
    )
    parser.add_argument(
        "--refit-before-test",
        action=argparse.BooleanOptionalAction,
        default=PIPELINE_DEFAULTS.refit_before_test,
        help="pipeline: before the test, refit the sources on the fit + ranker periods and continue the "
        "encoder on them (default: yes; what was chosen on the ranker period stays)",
    )
    parser.add_argument(
        "--continue-epochs",
        type=int,
        default=PIPELINE_DEFAULTS.continue_epochs,
        help="encoder epochs on the validation period too, after validation chose the epoch, before the "
        "test (pipeline: on fit + ranker periods, with --refit-before-test; retrieval: on train + valid)",
    )
    parser.add_argument(
        "--encoder-valid-users",
        type=int,
        default=None,
        help="held-out validation users whose targets pick a neural retriever's epoch (retrieval; pipeline: "
        "the session encoder's, on ranker-period targets; default 1000 for retrieval, about +-0.01 NDCG@10 "
        "of noise between epochs on ML-1M, and 5000 for the pipeline)",
    )
    parser.add_argument(
        "--ranker-match-features",
        action=argparse.BooleanOptionalAction,
        default=PIPELINE_DEFAULTS.ranker_match_features,
        help="pipeline: the ranker reads how each candidate (and its category) matches the history "
        "(models/ranker/match.py; default: yes)",
    )
    parser.add_argument(
        "--ranker-candidate-features",
        action=argparse.BooleanOptionalAction,
        default=PIPELINE_DEFAULTS.ranker_candidate_features,
        help="pipeline: the transformer's candidate tokens read the GBDT's per-candidate features and it "
        "reorders the merged top 100 (default: no)",
    )
    parser.add_argument(
        "--ranker-contrastive-scope",
        choices=CONTRASTIVE_SCOPES,
        default=PIPELINE_DEFAULTS.ranker_contrastive_scope,
        help="pipeline: the transformer's contrastive softmax spans each candidate group (the paper's) or "
        f"every candidate of a training request (default: {PIPELINE_DEFAULTS.ranker_contrastive_scope})",
    )
    parser.add_argument(
        "--ranker-train-candidates",
        type=int,
        default=PIPELINE_DEFAULTS.ranker_train_candidates,
        help="pipeline: candidates per transformer training request, positives first, the rest drawn from "
        f"the merged head (default: {PIPELINE_DEFAULTS.ranker_train_candidates})",
    )
    parser.add_argument(
        "--rankers",
        default=",".join(PIPELINE_DEFAULTS.rankers),
        help="pipeline: the rankers trained and offered to the gate, of gbdt,onepiece (default: both)",
    )
    parser.add_argument(
        "--gbdt-feature-sets",
        default=",".join(PIPELINE_DEFAULTS.gbdt_feature_sets),
        help="pipeline: the GBDT's feature sets offered to the gate, of all,no_context,no_side,sources_only "
        f"(default: {','.join(PIPELINE_DEFAULTS.gbdt_feature_sets)})",
    )
    parser.add_argument(
        "--ranker-windows",
        type=int,
        default=None,
        help="pipeline, next-session: windows of the validation period's length before it that give ranker "
        "requests too (default: the protocol's own, 2)",
    )
    parser.add_argument(
        "--ranker-learning-rate",
        "--ranker-lr",
        type=float,
        default=PIPELINE_DEFAULTS.ranker_learning_rate,
        help=f"pipeline: the ranker's learning rate (default {PIPELINE_DEFAULTS.ranker_learning_rate:g})",
    )
    parser.add_argument(
        "--ranker-gate-folds",
        type=int,
        default=PIPELINE_DEFAULTS.ranker_gate_folds,
        help="pipeline: the gate cross-fits over this many folds of validation users: each fold judges the "
        "epoch the others pick; 1 = the same users pick the epoch and judge it "
        f"(default {PIPELINE_DEFAULTS.ranker_gate_folds})",
    )
    parser.add_argument(
        "--ranker-gate-level",
        type=float,
        default=PIPELINE_DEFAULTS.ranker_gate_level,
        help="pipeline: > 0 = the ranker is served only when the paired bootstrap interval (this two-sided "
        "level) of its cross-fitted NDCG@10 / the merged order's lies above 1, besides the margin; 0 = the "
        f"margin alone (default {PIPELINE_DEFAULTS.ranker_gate_level:g})",
    )
    parser.add_argument(
        "--ranker-gate-margin",
        type=float,
        default=PIPELINE_DEFAULTS.ranker_gate_margin,
        help="pipeline: the ranker is served only when it beats the merged order by more than this share "
        f"on validation (default {PIPELINE_DEFAULTS.ranker_gate_margin:g}, i.e. 0.5%%)",
    )
    parser.add_argument("--all", action="store_true", help="every registered model that is installed")
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        help=f"repeatable: {', '.join(DATASET_NAMES)}, or the --name of a dataset prepared with "
        "`tandem data prepare` (read from --cache-dir)",
    )
    add_data_dir_option(parser)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="default: chosen from the data's shape (ratings or one session per user: leave-last-out; "
        "users who come back: next-session), printed with the reason",
    )
    parser.add_argument("--seeds", default="1", help="a count (3 -> seeds 0,1,2) or a list (0,5,7)")
    parser.add_argument("--max-users", type=int, default=None, help="score a fixed random subset of requests")
    parser.add_argument("--max-history", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="exclude the request's history items from the answer (default: chosen from the data's share "
        "of re-visits)",
    )
    parser.add_argument(
        "--items-per-request",
        type=int,
        default=None,
        help="session encoder: items per request (default: chosen from the data's shape)",
    )
    parser.add_argument("--out", type=Path, default=None, help="report path without suffix (.md/.json/.png)")
    parser.add_argument(
        "--bundle",
        type=Path,
        default=None,
        help="with --stage pipeline: replay this built bundle from disk on its dataset's test requests (the "
        "data is found by the manifest's dataset name under --data-dir / --cache-dir) and compare with the "
        "offline numbers its manifest records",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"where the reports go, named by stage and dataset (default {DEFAULT_OUT_DIR}; the project's "
        "reference runs, make eval and make eval-pipeline: docs/results); --out names one report instead",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows of models not named here from the existing <out>.json (same dataset and seeds)",
    )


def _datasets(args: argparse.Namespace) -> list[str]:
    if args.dataset:
        return list(args.dataset)
    if not has_ml1m(args.data_dir):
        return ["synthetic"]
    has_100k = (resolve_data_dir(args.data_dir) / "ml-100k" / "u.data").is_file()
    return ["ml-1m", "ml-100k"] if args.all and has_100k else ["ml-1m"]


def _models(args: argparse.Namespace) -> list[str]:
    names = list(dict.fromkeys(args.model))
    if args.all:
        names += [m for m in available_models() if m not in names]
    if not names:
        raise ValueError("name at least one --model (or --all)")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; registered: {sorted(MODELS)}")
    return names


def _load(name: str, args: argparse.Namespace) -> Dataset:
    """Shipped datasets are (re)prepared when their inputs changed; synthetic, csv and named datasets are
    taken as `tandem data prepare` left them in the cache (their options live there)."""
    return open_dataset(name, args.data_dir, args.cache_dir)


def evaluate_dataset(
    dataset: Dataset,
    models: list[str],
    args: argparse.Namespace,
    command: str,
    previous: dict[str, Any] | None = None,
) -> EvalReport:
    """Fit and score ``models``; ``previous`` (an earlier report's JSON) lends the rows of other models."""
    choices = chosen_defaults(dataset, args)
    protocol, exclude_seen = choices.protocol.value, choices.exclude_seen.value
    split = protocol_split(dataset.events, protocol, dataset.event_split)
    if protocol == "leave-last-out":
        task = leave_last_out_task(
            dataset, split, args.max_history, args.max_users, exclude_seen=exclude_seen
        )
    else:
        task = next_session_task(dataset, split, args.max_history, exclude_seen, args.max_users)
    valid_requests = len(np.unique(dataset.events.user[split.valid]))
    notes = protocol_notes(dataset, choices, len(task), valid_requests)
    if len(task) == 0:
        raise ValueError(f"no requests to score for {dataset.name} under {protocol}")
    metrics = REPORTED_METRICS[protocol]
    report = EvalReport(
        command, dataset.name, protocol, metrics, users=len(task), seeds=parse_seeds(args.seeds)
    )
    report.notes += notes
    report.extra["defaults"] = choices.to_dict()
    if previous is not None:
        report.carry_from(previous, models)  # before training, so a mismatch fails fast
    for model in models:
        factory = get_factory(model)
        for seed in report.seeds:
            started = time.perf_counter()
            budget = encoder_budget(args)
            scorer = factory(FitInput(dataset, split, protocol, seed, args.max_history, budget, exclude_seen))
            train_seconds = time.perf_counter() - started
            per_user = evaluate(scorer, task, dataset.num_items, args.batch_size)
            training = getattr(scorer, "training", None)
            means = {k: float(np.nanmean(per_user[k])) for k in metrics}
            report.add(model, means, train_seconds, None if training is None else {"seed": seed, **training})
    if dataset.name == "ml-1m" and dataset.manifest.get("counts", {}).get("users", 0) < 6040:
        report.notes.append(
            "ML-1M here is the shipped subset (users 1-2998), not the full 6,040 users behind the "
            "published numbers."
        )
    return report


def run_ranker_stage(args: argparse.Namespace, command: str) -> int:
    """``--stage ranker``: the ranker's own evaluation (models.ranker.dataset_report) per dataset."""
    from models.ranker.dataset_report import evaluate_dataset as evaluate_ranker_dataset

    for name in _datasets(args):
        paths = evaluate_ranker_dataset(
            name, args.data_dir, args.cache_dir, args.out or args.results_dir, command=command
        )
        print(paths["md"].read_text(encoding="utf-8"))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        counts = json.loads(paths["json"].read_text(encoding="utf-8")).get("counts", {})
        shape = measure_shape(_load(name, args).events)
        for warning in period_warnings(RANKER_TIME_CUT, int(counts.get("test_requests", 0)), None, shape):
            print(f"warning: {name}: {warning}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    command = " ".join(["tandem", *(shlex.quote(a) for a in sys.argv[1:])])
    try:
        if args.stage == "ranker":
            return run_ranker_stage(args, command)
        if args.stage == "pipeline" and args.bundle is not None:
            return run_bundle_replay(args, _load, command, args.results_dir)
        if args.stage in ("pipeline", "fusion"):
            names = list(args.dataset) or ["ml-1m"]
            stage = run_pipeline_stage if args.stage == "pipeline" else run_fusion_stage
            return stage(args, names, _load, command, args.results_dir)
        models = _models(args)
        datasets = _datasets(args)
        for name in datasets:
            dataset = _load(name, args)
            protocol = args.protocol or defaults_for(dataset.events).protocol.value
            suffix = "" if protocol == "leave-last-out" else f"-{protocol}"
            out = args.out or args.results_dir / f"retrieval-{name}{suffix}"
            if args.out is not None and len(datasets) > 1:
                out = out.with_name(f"{out.name}-{name}")
            previous = None
            if args.append:
                earlier = report_paths(out)["json"]
                if not earlier.is_file():
                    raise ValueError(f"--append: {earlier} does not exist")
                previous = json.loads(earlier.read_text(encoding="utf-8"))
            report = evaluate_dataset(dataset, models, args, command, previous)
            paths = report.write(out)
            print(report.markdown())
            print("wrote " + ", ".join(str(p) for p in paths))
    except (DataError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
