"""Shared fixtures: the shipped data directory (skipped cleanly when absent) and a tiny synthetic dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset

SHARED_DATA_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data relative to the repository; tests that read real samples skip without it."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shipped data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def tiny_synthetic() -> Dataset:
    """About 20K events, 300 users, 800 items in 20 clusters; fixed seed."""
    config = SyntheticConfig(num_users=300, num_items=800, num_events=20_000, num_clusters=20, seed=7)
    return generate_synthetic(config)
