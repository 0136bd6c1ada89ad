"""``tandem``: every command is on the parser, each from its own module, and a command module that cannot
be imported breaks ``tandem`` instead of vanishing from it; reports go under var/results unless told."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cli import bundle, bundle_pack, data, main, serve, train_encoder, train_ranker, worker
from cli import eval as evaluate
from models.data.datasets import PrepareOptions, load_dataset
from models.data.loaders.synthetic import SyntheticConfig
from models.reporting.files import DEFAULT_RESULTS_DIR

EXPECTED = {
    ("data", "prepare"): data,
    ("train", "encoder"): train_encoder,
    ("train", "ranker"): train_ranker,
    ("bundle", "build"): bundle,
    ("bundle", "pack"): bundle_pack,
    ("eval",): evaluate,
    ("serve",): serve,
    ("worker",): worker,
}


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """command path -> the ``func`` its parser sets, for every leaf command."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return {prefix: parser.get_default("func")}
    found: dict[tuple[str, ...], object] = {}
    for name, sub in subparsers[0].choices.items():
        found.update(_leaves(sub, (*prefix, name)))
    return found


def test_the_parser_has_every_command_run_by_its_module() -> None:
    leaves = _leaves(main.build_parser())
    assert leaves == {path: module.run for path, module in EXPECTED.items()}


def test_help_lists_every_command() -> None:
    tandem = Path(sys.executable).parent / "tandem"  # the installed console script
    result = subprocess.run([str(tandem), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for top in ("data", "train", "bundle", "eval", "serve", "worker"):
        assert f"    {top} " in result.stdout, top
    assert "offline evaluation with markdown/JSON/PNG reports" in result.stdout
    train = main.build_parser().parse_args(["train", "ranker"])
    assert train.func is train_ranker.run


def test_a_command_module_that_fails_to_import_fails_tandem() -> None:
    code = "import sys; sys.modules['cli.worker'] = None; import cli.main"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("ImportError", "ModuleNotFoundError")) and "cli.worker" in last


def test_reports_go_under_var_results_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's runs write into var/results of the working directory, not into the checkout's docs/results."""
    assert Path("var/results") == DEFAULT_RESULTS_DIR
    parser = main.build_parser()
    assert parser.parse_args(["eval", "--dataset", "synthetic"]).results_dir == DEFAULT_RESULTS_DIR
    assert Path(parser.parse_args(["train", "ranker"]).results_dir) == DEFAULT_RESULTS_DIR
    config = SyntheticConfig(num_users=60, num_items=150, num_events=2500, num_clusters=5, seed=3)
    load_dataset("synthetic", None, tmp_path / "cache", PrepareOptions(synthetic=config))
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--model", "popularity", "--dataset", "synthetic", "--cache-dir", str(tmp_path / "cache")]
    assert main.main(argv) == 0
    assert [path.suffix for path in sorted((tmp_path / "var" / "results").glob("retrieval-synthetic*"))] == [
        ".json",
        ".md",
        ".png",
    ]
    assert main.main([*argv, "--results-dir", "elsewhere"]) == 0
    assert len(list((tmp_path / "elsewhere").glob("retrieval-synthetic*.md"))) == 1
    assert not (tmp_path / "docs").exists()


def test_bundle_pack_prints_the_archive_and_its_sha256(
    baseline_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from models.bundle.pack import sha256_file

    out = tmp_path / "b.tar.gz"
    assert main.main(["bundle", "pack", str(baseline_bundle), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads(printed[: printed.index("}") + 1])
    assert summary["archive"] == str(out) and summary["sha256"] == sha256_file(out)
    assert main.main(["bundle", "pack", str(tmp_path / "missing")]) == 2
    assert "not a bundle" in capsys.readouterr().err
