"""A report as three files side by side: ``<out>.md`` (for people), ``<out>.json`` (for tools) and
``<out>.png`` (a figure). Every results writer in the project goes through ``write_report``.

A run's reports go under ``DEFAULT_RESULTS_DIR`` (var/results, beside var/bundles) unless told otherwise;
only the project's own reference runs are written to docs/results, by the Makefile targets that pass it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPORT_KINDS = ("md", "json", "png")
DEFAULT_RESULTS_DIR = Path("var/results")


def report_paths(out: Path) -> dict[str, Path]:
    """out: the path without suffix (one of the three suffixes is dropped; any other dot stays part of the
    name: ``x_tau0.1`` -> ``x_tau0.1.md``) -> {"md", "json", "png"} paths next to each other."""
    if out.suffix.lstrip(".") in REPORT_KINDS:
        out = out.with_suffix("")
    return {kind: out.with_name(f"{out.name}.{kind}") for kind in REPORT_KINDS}


def write_report(
    out: Path,
    data: dict[str, Any],
    markdown: str,
    plot: Callable[[Path], None],
    indent: int = 2,
    sort_keys: bool = False,
) -> dict[str, Path]:
    """Writes ``data`` as out.json, ``markdown`` as out.md and calls ``plot(out.png)``; creates the folder.
    Returns the three paths by kind."""
    paths = report_paths(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths["json"].write_text(json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown, encoding="utf-8")
    plot(paths["png"])
    return paths
