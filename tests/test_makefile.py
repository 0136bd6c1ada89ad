"""The Makefile: the targets that produce the committed reference reports write them to docs/results (a
user's own runs default to var/results), and every module it runs with ``python -m`` exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def recipe(target: str) -> str:
    """The target's commands (continued lines joined)."""
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", MAKEFILE, re.M)
    assert match is not None, f"no target {target}"
    return match.group(1).replace("\\\n", " ")


def test_reference_reports_are_written_to_docs_results() -> None:
    expected = {
        "eval": "--results-dir docs/results",
        "eval-pipeline": "--results-dir docs/results",
        "bench": "--out docs/results/performance",
        "bench-stages": "--out docs/results/bench-cpu",
        "bench-index": "--out docs/results/index-synthetic-1m",
    }
    for target, flag in expected.items():
        assert flag in recipe(target), target


def test_every_module_run_with_python_m_exists() -> None:
    modules = set(re.findall(r"python -m ([\w.]+)", MAKEFILE))
    assert {"tools.bench.performance", "tools.compose_check"} <= modules
    for module in sorted(modules):
        assert importlib.util.find_spec(module) is not None, module


def test_scripts_the_makefile_runs_exist() -> None:
    for script in re.findall(r"(\S+\.sh)\b", MAKEFILE):
        assert (ROOT / script).is_file(), script


def test_lint_covers_every_python_tree() -> None:
    lint = recipe("lint")
    for tree in ("app", "models", "cli", "tools", "tests", "loadtest"):
        assert f" {tree}" in lint, tree
