"""Fixtures of the fault suite (``make faults``): tiny real bundles, a fresh stack per scenario, and the
report every scenario adds its numbers to (written to docs/results/reliability.{md,json} at the end of a
run with ``TANDEM_FAULTS_REPORT=1``, which ``make faults`` sets; a subset such as ``make faults-quick``
leaves the published results alone)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.conftest import build_encoder_bundle
from tests.faults.harness import Stack
from tests.faults.report import write_report


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults_quick: the fault scenarios of make faults-quick and CI (well under 2 minutes)"
    )


@pytest.fixture(autouse=True)
def redis_server_binary(request: pytest.FixtureRequest) -> None:
    """Fault scenarios need the redis-server binary: a clear skip without it, a failure under CI=true (as
    the tests on the machine's Redis do). Only this directory's scenarios: a collection hook here would
    skip the whole session's tests."""
    if request.node.get_closest_marker("faults") is None or shutil.which("redis-server") is not None:
        return
    message = "the fault suite needs the redis-server binary (apt-get install -y redis-server)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


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
    if scenarios and os.environ.get("TANDEM_FAULTS_REPORT") == "1":
        write_report(scenarios)


@pytest.fixture
def stack(tmp_path: Path, bundle_v1: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "stack", bundle_v1)
    try:
        running.start()
        yield running
    finally:
        running.stop()
