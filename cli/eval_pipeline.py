"""``tandem eval --stage pipeline|fusion`` and ``--bundle DIR``: the served pipeline trained by the recipe
and replayed on each dataset's test period, its fusion bound, or a built bundle replayed from disk."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from cli.options import chosen_defaults, encoder_overrides, encoder_variants, parse_seeds, protocol_notes
from models.evaluate.pipeline_report import evaluate_pipeline, require_test_requests
from models.evaluate.replay import run_seed
from models.recipe.periods import pipeline_periods
from models.recipe.settings import RecipeSettings


def settings_from_args(args: argparse.Namespace) -> RecipeSettings:
    return RecipeSettings.full(
        **({} if not args.encoder_preset else {"encoder_preset": args.encoder_preset}),
        **({} if args.encoder_epochs is None else {"encoder_epochs": args.encoder_epochs}),
        **({} if args.encoder_minutes is None else {"encoder_max_minutes": args.encoder_minutes}),
        encoder_overrides=encoder_overrides(args),
        encoder_variants=encoder_variants(args),
        **({} if args.encoder_valid_users is None else {"encoder_valid_users": args.encoder_valid_users}),
        ranker_epochs=args.ranker_epochs,
        merge_fusion=args.merge_fusion,
        merge_tuning=args.merge_tuning,
        merge_tuning_requests=args.merge_tuning_requests,
        sources=tuple(name.strip() for name in args.sources.split(",") if name.strip()),
        refit_before_test=args.refit_before_test,
        ranker_match_features=args.ranker_match_features,
        ranker_candidate_features=args.ranker_candidate_features,
        ranker_contrastive_scope=args.ranker_contrastive_scope,
        ranker_train_candidates=args.ranker_train_candidates,
        rankers=tuple(name.strip() for name in args.rankers.split(",") if name.strip()),
        gbdt_feature_sets=tuple(n.strip() for n in args.gbdt_feature_sets.split(",") if n.strip()),
        ranker_windows=args.ranker_windows,
        ranker_learning_rate=args.ranker_learning_rate,
        ranker_gate_folds=args.ranker_gate_folds,
        ranker_gate_level=args.ranker_gate_level,
        ranker_gate_margin=args.ranker_gate_margin,
        continue_epochs=args.continue_epochs,
        threads=args.threads,
        variant_processes=args.variant_processes,
    )


def run_pipeline_stage(
    args: argparse.Namespace, names: list[str], load: Any, command: str, out_dir: Path
) -> int:
    settings = settings_from_args(args)
    for name in names:
        dataset = load(name, args)
        choices = chosen_defaults(dataset, args)
        report = evaluate_pipeline(
            dataset,
            choices.protocol.value,
            parse_seeds(args.seeds),
            settings,
            command,
            choices.exclude_seen.value,
            partial(protocol_notes, dataset, choices),
        )
        report.extra["defaults"] = choices.to_dict()
        out = args.out or out_dir / f"pipeline-{name}"
        paths = report.write(out)
        if report.extra.get("ablation"):
            from models.evaluate.ranker_report import plot_ablation

            title = f"{name}: GBDT feature ablation (test NDCG@10 / merged)"
            paths.append(
                plot_ablation(report.extra["ablation"], title, out.with_name(f"{out.name}-ablation.png"))
            )
        print(report.markdown())
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def run_fusion_stage(
    args: argparse.Namespace, names: list[str], load: Any, command: str, out_dir: Path
) -> int:
    """``--stage fusion``: the replay's seeds with every candidate's source scores kept, then the fusion
    bound (models.evaluate.fusion_bound) per seed -> fusion-<dataset>.{md,json,png}."""
    from dataclasses import replace

    from models.evaluate.fusion_bound import seed_summary, weight_grid, write_fusion_report
    from models.reporting.provenance import git_commit

    settings = replace(settings_from_args(args), keep_candidates=True)
    for name in names:
        dataset = load(name, args)
        choices = chosen_defaults(dataset, args)
        periods = pipeline_periods(
            dataset,
            choices.protocol.value,
            settings.ranker_events,
            choices.exclude_seen.value,
            settings.ranker_windows,
        )
        require_test_requests(dataset, choices.protocol.value, periods)
        seeds = []
        for seed in parse_seeds(args.seeds):
            outcome = run_seed(dataset, periods, seed, settings)
            assert outcome.candidates is not None
            grid = weight_grid(len(outcome.candidates.sources))
            seeds.append(
                seed_summary(seed, outcome.candidates, periods.ranker, periods.test, outcome.metrics, grid)
            )
        paths = write_fusion_report(
            args.out or out_dir / f"fusion-{name}", name, command, git_commit(), seeds
        )
        print(paths["md"].read_text(encoding="utf-8"))
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def run_bundle_replay(args: argparse.Namespace, load: Any, command: str, out_dir: Path) -> int:
    """``--stage pipeline --bundle DIR``: the bundle's own served pipeline, loaded from disk, answers the
    test requests of the periods its manifest names -> pipeline-bundle-<dataset>.{md,json,png}, and a
    line per row comparing the replay with the manifest's offline numbers."""
    from models.bundle.load import Bundle
    from models.bundle.replay import replay_bundle
    from models.bundle.write import data_fingerprint
    from models.evaluate.report import EvalReport
    from models.recipe.lists import PIPELINE_METRICS

    bundle = Bundle.load(args.bundle)
    manifest = bundle.manifest
    serving = manifest.serving
    if serving.protocol is None:
        raise ValueError(
            f"{args.bundle}: the manifest names no protocol (a bundle assembled from checkpoints)"
        )
    dataset = load(manifest.dataset, args)
    if data_fingerprint(dataset) != manifest.data_fingerprint:
        raise ValueError(
            f"{args.bundle}: built from other data than the prepared {manifest.dataset!r} here "
            "(fingerprints differ)"
        )
    periods = pipeline_periods(
        dataset, serving.protocol, serving.ranker_events, serving.exclude_seen, serving.ranker_windows
    )
    require_test_requests(dataset, serving.protocol, periods)
    result = replay_bundle(bundle, periods.test)
    seed = int(manifest.training.get("seed", 0))
    report = EvalReport(
        command, dataset.name, serving.protocol, PIPELINE_METRICS, users=len(periods.test), seeds=[seed]
    )
    report.title = "Bundle replayed from disk"
    recorded = manifest.offline.get("test", {})
    for name, metrics in result.metrics.items():
        report.kinds[name] = result.kinds[name]
        report.add(name, metrics, 0.0)
        if name in recorded:
            print(f"{name}: NDCG@10 {metrics['NDCG@10']:.4f} (manifest {recorded[name]['NDCG@10']:.4f})")
    report.notes.append(
        f"Bundle {args.bundle} (model version {bundle.model_version}, served: {manifest.served_path})."
    )
    paths = report.write(args.out or out_dir / f"pipeline-bundle-{dataset.name}")
    print(report.markdown())
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
