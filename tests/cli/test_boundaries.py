"""The command line sits on top: ``cli`` imports ``app`` and ``models``, never the other way round; and the
product (``app``, ``models``, ``cli``: the wheel) never imports ``tools`` (benchmarks, compose check)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAITING_TO_MOVE: set[str] = set()  # every command module lives in cli/


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


def test_the_product_never_imports_the_tools() -> None:
    offenders = {}
    for package in ("app", "models", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            found = {name for name in _imported(path) if name == "tools" or name.startswith("tools.")}
            if found:
                offenders[path.relative_to(ROOT).as_posix()] = sorted(found)
    assert offenders == {}
    packaged = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not any(pattern.startswith("tools") for pattern in packaged["include"])


def _is_command_module(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "cli" or any(part == "cli" or part.endswith("_cli") for part in parts[1:])


def test_nothing_names_a_command_module_by_string() -> None:
    """A trainer or entry point looked up by its dotted name ("package.module:function", ``-m module``)
    must not point into the command line either."""
    waiting = {name.removesuffix(".py").replace("/", ".") for name in WAITING_TO_MOVE}
    offenders = []
    for package in ("app", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                    continue
                match = re.fullmatch(r"((?:app|models|cli)(?:\.\w+)*)(?::\w+)?", node.value)
                if match and _is_command_module(match.group(1)) and match.group(1) not in waiting:
                    offenders.append(f"{path.relative_to(ROOT)}: {node.value}")
    assert offenders == []
