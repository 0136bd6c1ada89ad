"""Writes a benchmark report as JSON + markdown + PNG next to each other and prints the markdown."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_report(
    report: dict[str, Any],
    out: Path,
    markdown: Callable[[dict[str, Any]], str],
    plot: Callable[[dict[str, Any], Path], None],
    indent: int = 2,
) -> None:
    """out: path without suffix; writes out.json, out.md and out.png."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=indent) + "\n")
    text = markdown(report)
    out.with_suffix(".md").write_text(text)
    plot(report, out.with_suffix(".png"))
    print(text)
