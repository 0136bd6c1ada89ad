import os
import subprocess
from pathlib import Path

import pytest

from models.bundle import upgrade as bundle_upgrade


def test_status_round_trip_and_missing_or_broken_files_read_as_none(tmp_path: Path) -> None:
    status = tmp_path / "bundles" / "upgrade.json"
    assert bundle_upgrade.read_status(status) == {"status": "none"}
    bundle_upgrade.write_status(status, status="building", pid=12)
    assert bundle_upgrade.read_status(status)["status"] == "building"
    status.write_text("{not json")
    assert bundle_upgrade.read_status(status) == {"status": "none"}


def test_build_reports_the_bundle_or_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status = tmp_path / "bundles" / bundle_upgrade.STATUS_FILE
    monkeypatch.setattr(
        "models.bundle.default.ensure_default_bundle", lambda *a, **k: tmp_path / "bundles" / "full"
    )
    assert bundle_upgrade.build(None, tmp_path) == 0
    assert bundle_upgrade.read_status(status)["bundle_path"] == str(tmp_path / "bundles" / "full")

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("out of disk")

    monkeypatch.setattr("models.bundle.default.ensure_default_bundle", broken)
    assert bundle_upgrade.build(None, tmp_path) == 1
    failed = bundle_upgrade.read_status(status)
    assert failed["status"] == "failed" and "out of disk" in failed["error"]


def test_build_running_needs_a_live_process(tmp_path: Path) -> None:
    status = tmp_path / "upgrade.json"
    assert not bundle_upgrade.build_running(status)
    bundle_upgrade.write_status(status, status="building", pid=os.getpid())
    assert bundle_upgrade.build_running(status)
    dead = subprocess.Popen(["true"])
    dead.wait()
    bundle_upgrade.write_status(status, status="building", pid=dead.pid)
    assert not bundle_upgrade.build_running(status)
    bundle_upgrade.write_status(status, status="ready", pid=os.getpid(), bundle_path="x")
    assert not bundle_upgrade.build_running(status)
