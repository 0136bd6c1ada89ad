"""`tandem serve` as a real process: ready after start-up, readyz 503 while draining on SIGTERM, exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.app.conftest import free_port


def wait_for(url: str, status: int, timeout_s: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == status:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered {status}")


def test_sigterm_drains_then_exits(baseline_bundle: Path) -> None:
    port = free_port()
    env = {**os.environ, "TANDEM_DRAIN_SECONDS": "1.5", "TANDEM_REDIS_URL": ""}
    command = [
        sys.executable,
        "-m",
        "app.cli",
        "serve",
        "--port",
        str(port),
        "--bundle",
        str(baseline_bundle),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_for(f"{base}/readyz", 200)
        assert ready.json()["status"] == "ready"
        process.send_signal(signal.SIGTERM)
        draining = wait_for(f"{base}/readyz", 503, timeout_s=5)
        assert draining.json()["status"] == "draining"
        # still serving while the load balancer notices
        answer = httpx.post(f"{base}/v1/recommend", json={"user_id": "nobody", "k": 3}, timeout=5)
        assert answer.status_code == 200
        # uvicorn re-raises the captured SIGTERM once shutdown is complete
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        assert process.stderr is not None
        log = process.stderr.read().decode()
        assert '"message": "draining"' in log and '"message": "stopped"' in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)


def test_serving_a_dataset_without_a_bundle_says_how_to_build_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    monkeypatch.setenv("TANDEM_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TANDEM_BUNDLE_PATH", raising=False)
    assert main(["serve", "--dataset", "myshop"]) == 2
    assert "run `tandem bundle build --train --dataset myshop` first" in capsys.readouterr().err
