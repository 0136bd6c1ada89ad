import argparse
import json
from pathlib import Path

import pytest

from cli import eval as cli
from models.data.datasets import PrepareOptions, load_dataset
from models.data.loaders.synthetic import SyntheticConfig


def test_eval_cli_prints_table_and_writes_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = SyntheticConfig(num_users=120, num_items=300, num_events=6000, num_clusters=10, seed=2)
    load_dataset("synthetic", None, tmp_path / "cache", PrepareOptions(synthetic=config))  # warm the cache
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "report" / "retrieval-synthetic"
    argv = ["--model", "popularity", "--model", "cooccurrence", "--dataset", "synthetic", "--seeds", "2"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--protocol", "next-session"]
    assert cli.run(parser.parse_args(argv)) == 0
    printed = capsys.readouterr().out
    assert "| popularity |" in printed and "| cooccurrence |" in printed and "Recall@50" in printed
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["protocol"] == "next-session" and data["seeds"] == [0, 1]
    assert set(data["models"]) == {"popularity", "cooccurrence"}
    assert data["users"] <= 120  # the small prepared dataset was used, not the default-sized one


def test_eval_cli_rejects_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--model", "nope", "--dataset", "synthetic"])) == 2
    assert "unknown model" in capsys.readouterr().err


def test_seeds_are_a_count_or_a_list_and_none_is_a_clear_error() -> None:
    assert cli.parse_seeds("3") == [0, 1, 2]
    assert cli.parse_seeds("0,5,7") == [0, 5, 7]
    assert cli.parse_seeds("4,") == [4]
    for bad in ("0", "", "x"):
        with pytest.raises(ValueError, match="--seeds"):
            cli.parse_seeds(bad)


def test_append_reads_the_report_it_wrote_under_a_dotted_name(tmp_path: Path) -> None:
    config = SyntheticConfig(num_users=120, num_items=300, num_events=6000, num_clusters=10, seed=2)
    load_dataset("synthetic", None, tmp_path / "cache", PrepareOptions(synthetic=config))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "retrieval_tau0.1"
    common = ["--dataset", "synthetic", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert cli.run(parser.parse_args(["--model", "popularity", *common])) == 0
    assert cli.run(parser.parse_args(["--model", "cooccurrence", "--append", *common])) == 0
    data = json.loads((tmp_path / "retrieval_tau0.1.json").read_text())
    assert set(data["models"]) == {"popularity", "cooccurrence"}
    assert not (tmp_path / "retrieval_tau0.json").exists()


def test_the_fusion_stage_writes_the_bound_per_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SyntheticConfig(num_users=120, num_items=300, num_events=6000, num_clusters=10, seed=2)
    load_dataset("synthetic", None, tmp_path / "cache", PrepareOptions(synthetic=config))
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "fusion-synthetic"
    argv = ["--stage", "fusion", "--dataset", "synthetic", "--cache-dir", str(tmp_path / "cache")]
    argv += ["--seeds", "1", "--encoder-epochs", "0", "--ranker-epochs", "1", "--out", str(out)]
    assert cli.run(parser.parse_args(argv)) == 0
    assert "grid, best on test (bound)" in capsys.readouterr().out
    data = json.loads(out.with_suffix(".json").read_text())
    (seed,) = data["seeds"]
    assert seed["seed"] == 0 and "ann" not in seed["sources"]  # no encoder budget: no ANN source
    assert seed["grid_test_best"]["test"] >= seed["grid_valid_best"]["test"]
    assert out.with_suffix(".png").exists()
