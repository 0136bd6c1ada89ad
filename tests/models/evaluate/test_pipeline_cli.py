import argparse
from dataclasses import replace

import pytest

from models.evaluate import cli
from models.evaluate.pipeline import PipelineSettings
from models.evaluate.pipeline_cli import settings_from_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_no_flags_give_the_library_defaults() -> None:
    assert settings_from_args(_parse([])) == PipelineSettings()


def test_flags_reach_the_settings() -> None:
    args = _parse(
        [
            *("--encoder-minutes", "0", "--ranker-epochs", "7", "--ranker-lr", "0.001"),
            *("--no-refit-before-test", "--merge-fusion", "score", "--ranker-gate-margin", "0.01"),
            *("--sources", "ann, transitions", "--merge-tuning", "valid", "--merge-tuning-requests", "1500"),
        ]
    )
    expected = replace(
        PipelineSettings(),
        encoder_minutes=0.0,
        ranker_epochs=7,
        ranker_lr=1e-3,
        refit_before_test=False,
        merge_fusion="score",
        ranker_gate_margin=0.01,
        sources=("ann", "transitions"),
        merge_tuning="valid",
        merge_tuning_requests=1500,
    )
    assert settings_from_args(args) == expected


def test_encoder_variants_flag() -> None:
    assert settings_from_args(_parse(["--encoder-variants", "[]"])).encoder_variants == ()
    chosen = settings_from_args(_parse(["--encoder-variants", '[{"temperature": 0.05}, {"lr": 0.01}]']))
    assert chosen.encoder_variants == ({"temperature": 0.05}, {"lr": 0.01})
    for bad in ('{"temperature": 0.1}', "[0.1]"):
        with pytest.raises(ValueError, match="JSON list of objects"):
            settings_from_args(_parse(["--encoder-variants", bad]))
