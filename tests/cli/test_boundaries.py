"""The command line sits on top: ``cli`` imports ``app`` and ``models``, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# command modules still under models/ (they move to cli/eval.py); they may use cli.options meanwhile
WAITING_TO_MOVE = {"models/evaluate/cli.py", "models/evaluate/pipeline_cli.py"}


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_app_and_models_never_import_the_command_line() -> None:
    offenders = {}
    for package in ("app", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in WAITING_TO_MOVE:
                continue
            found = {name for name in _imported(path) if name == "cli" or name.startswith("cli.")}
            if found:
                offenders[relative] = sorted(found)
    assert offenders == {}
