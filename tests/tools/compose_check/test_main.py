"""``make compose-check`` runs the check; a missing engine is one line and a failure; the overrides it
passes to compose exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.compose_check import engine, main, shell

ROOT = Path(__file__).resolve().parents[3]


def test_make_compose_check_runs_the_script() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^compose-check:.*\n\t(.+)$", makefile, re.M)
    assert recipe is not None and "-m tools.compose_check" in recipe.group(1)
    assert "compose-check" not in re.search(r"^test:.*\n\t(.+)$", makefile, re.M).group(1)  # type: ignore[union-attr]


def test_the_overrides_the_check_passes_exist() -> None:
    for name in main.OVERRIDES:
        assert (ROOT / "docker" / name).is_file(), name


def test_no_engine_and_no_way_to_install_one_is_one_line_and_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine, "path_binaries", lambda name: [])
    monkeypatch.setattr(shell.os, "geteuid", lambda: 1000)  # not root: apt-get is out of reach
    monkeypatch.setattr(shell, "WORK", tmp_path)
    assert main.main(["--bundle", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    failures = [line for line in lines if "FAILED" in line]
    assert len(failures) == 1 and "no Docker engine" in failures[0] and "cannot be installed" in failures[0]
    assert [line for line in lines if line not in failures] == ["compose-check: engine ..."]
