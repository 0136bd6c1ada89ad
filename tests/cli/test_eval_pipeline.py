import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest

from cli import eval as cli
from cli.eval_pipeline import settings_from_args
from models.bootstrap import RatioInterval
from models.evaluate.pipeline_report import target_checks, target_notes
from models.evaluate.ranker_report import trained_ranker_rows
from models.recipe.settings import RecipeSettings


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_no_flags_give_the_library_defaults() -> None:
    assert settings_from_args(_parse([])) == RecipeSettings()


def test_flags_reach_the_settings() -> None:
    args = _parse(
        [
            *("--encoder-epochs", "0", "--encoder-minutes", "5"),
            *("--ranker-epochs", "7", "--ranker-lr", "0.001"),
            *("--no-refit-before-test", "--merge-fusion", "score", "--ranker-gate-margin", "0.01"),
            *("--sources", "ann, transitions", "--merge-tuning", "valid", "--merge-tuning-requests", "1500"),
            *("--gbdt-feature-sets", "all,no_context", "--ranker-windows", "3"),
            *("--ranker-contrastive-scope", "request", "--ranker-train-candidates", "100"),
        ]
    )
    expected = replace(
        RecipeSettings(),
        encoder_epochs=0,
        encoder_max_minutes=5.0,
        ranker_epochs=7,
        ranker_learning_rate=1e-3,
        refit_before_test=False,
        merge_fusion="score",
        ranker_gate_margin=0.01,
        sources=("ann", "transitions"),
        merge_tuning="valid",
        merge_tuning_requests=1500,
        gbdt_feature_sets=("all", "no_context"),
        ranker_windows=3,
        ranker_contrastive_scope="request",
        ranker_train_candidates=100,
    )
    assert settings_from_args(args) == expected


def test_encoder_variants_flag() -> None:
    assert settings_from_args(_parse(["--encoder-variants", "[]"])).encoder_variants == ()
    chosen = settings_from_args(_parse(["--encoder-variants", '[{"temperature": 0.05}, {"lr": 0.01}]']))
    assert chosen.encoder_variants == ({"temperature": 0.05}, {"lr": 0.01})
    for bad in ('{"temperature": 0.1}', "[0.1]"):
        with pytest.raises(ValueError, match="JSON list of objects"):
            settings_from_args(_parse(["--encoder-variants", bad]))


def _means(**ndcg: float) -> dict[str, dict[str, float]]:
    return {name: {"NDCG@10": value} for name, value in ndcg.items()}


def test_targets_say_met_or_by_how_much_they_were_missed() -> None:
    met = target_checks(
        _means(pipeline=0.18, merged=0.18, transitions=0.16),
        RatioInterval(1.125, 1.09, 1.15, 0.95, 100),
        "transitions",
    )
    assert met["served_over_best_source"]["met"] and met["served_over_merged"]["met"]
    lines = target_notes(met)
    assert lines == [
        "Target: served >= 1.10 x the best single source (transitions): met (1.125).",
        "Target: the served pipeline never below its merged order: met (1.000).",
    ]
    missed = target_checks(
        _means(pipeline=0.099, merged=0.1, recent=0.1), RatioInterval(0.99, 0.98, 1.0, 0.95, 100), "recent"
    )
    assert not missed["served_over_best_source"]["met"] and not missed["served_over_merged"]["met"]
    assert missed["served_over_best_source"]["needed_NDCG@10"] == pytest.approx(0.11)
    lines = target_notes(missed)
    assert "missed by 0.110 (0.990; it needs NDCG@10 0.1100)" in lines[0]
    assert "missed by 0.010 (served / merged 0.990)" in lines[1]
    assert lines[2].startswith("What was tried") and "docs/pipeline.md" in lines[2]


def test_a_bundle_is_replayed_from_disk_with_the_numbers_its_manifest_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from models.bundle.default import ensure_default_bundle
    from models.data.datasets import PrepareOptions, load_dataset
    from models.data.loaders.synthetic import SyntheticConfig
    from models.recipe.settings import RecipeSettings

    config = SyntheticConfig(num_users=60, num_items=200, num_events=3000, num_clusters=6, seed=2)
    dataset = load_dataset("synthetic", None, tmp_path / "cache", PrepareOptions(synthetic=config))
    settings = RecipeSettings.quick(
        encoder_preset="tiny",
        encoder_epochs=1,
        encoder_variants=(),
        ranker_preset="tiny",
        ranker_epochs=1,
        ranker_min_steps=0,
        threads=1,
        progress=False,
        total=40,
    )
    built = ensure_default_bundle(root=tmp_path / "var", dataset=dataset, progress=False, settings=settings)
    out = tmp_path / "replayed"
    argv = ["--stage", "pipeline", "--bundle", str(built), "--cache-dir", str(tmp_path / "cache")]
    assert cli.run(_parse([*argv, "--out", str(out)])) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    manifest = json.loads((built / "manifest.json").read_text())
    recorded = manifest["offline"]["test"]
    kept = manifest["serving"]["ranker_kind"]
    # every row but the rankers the bundle does not ship (it ships the one the gate kept)
    assert set(recorded) - set(report["rows"]) == {
        row for row in trained_ranker_rows(recorded) if row != f"ranker_{kept}"
    }
    for row, metrics in recorded.items():
        if row not in report["rows"]:
            continue
        assert report["rows"][row]["metrics"]["NDCG@10"]["mean"] == pytest.approx(
            metrics["NDCG@10"], abs=1e-9
        )
        assert f"{row}: NDCG@10 {metrics['NDCG@10']:.4f} (manifest {metrics['NDCG@10']:.4f})" in printed
