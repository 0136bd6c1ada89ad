import argparse
from pathlib import Path

import pytest

from cli.options import add_data_dir_option
from models.data.datasets import DEFAULT_DATA_DIR, resolve_data_dir


def parsed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_data_dir_option(parser)
    return parser.parse_args(argv)


def test_the_data_dir_option_reads_the_environment_and_the_flag_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", "/from/env")
    assert parsed([]).data_dir == Path("/from/env")
    assert parsed(["--data-dir", "/given"]).data_dir == Path("/given")
    monkeypatch.setenv("TANDEM_DATA_DIR", "")
    assert parsed([]).data_dir is None


def test_the_library_never_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_DATA_DIR", "/from/env")
    assert resolve_data_dir(None) == DEFAULT_DATA_DIR
    assert resolve_data_dir("/given") == Path("/given")
