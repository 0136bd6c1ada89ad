"""Command-line options that several ``tandem`` commands (and the tools) share.

Commands are the one layer that reads the environment: library functions take the data directory as an
argument and fall back to ``models.data.datasets.DEFAULT_DATA_DIR`` when given None.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA_DIR_ENV = "TANDEM_DATA_DIR"


def env_data_dir() -> Path | None:
    """$TANDEM_DATA_DIR as a path, None when unset or empty."""
    value = os.environ.get(DATA_DIR_ENV, "")
    return Path(value) if value else None


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    """``--data-dir``: the raw data root; default $TANDEM_DATA_DIR, else ../shared/data."""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=env_data_dir(),
        help=f"raw data root (default: ${DATA_DIR_ENV}, else ../shared/data)",
    )
