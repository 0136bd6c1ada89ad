"""Fixtures of the fault suite (``make faults``): tiny real bundles, a fresh stack per scenario, and the
report every scenario adds its numbers to (written to docs/results/reliability.{md,json} at the end)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import build_encoder_bundle
from tests.faults.harness import Stack
from tests.faults.report import write_report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if shutil.which("redis-server") is None:
        skip = pytest.mark.skip(reason="the fault suite needs the redis-server binary")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def bundle_v1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_encoder_bundle(tmp_path_factory.mktemp("faults-v1"), weights_seed=0)


@pytest.fixture(scope="session")
def bundle_v2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_encoder_bundle(tmp_path_factory.mktemp("faults-v2"), weights_seed=1)


@pytest.fixture(scope="session")
def report() -> Iterator[dict[str, dict[str, Any]]]:
    scenarios: dict[str, dict[str, Any]] = {}
    yield scenarios
    if scenarios:
        write_report(scenarios)


@pytest.fixture
def stack(tmp_path: Path, bundle_v1: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "stack", bundle_v1)
    try:
        running.start()
        yield running
    finally:
        running.stop()
