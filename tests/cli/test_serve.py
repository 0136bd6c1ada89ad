"""`tandem serve` as a real process: ready after start-up, readyz 503 while draining on SIGTERM, exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.reuse_port import reuse_port_supported
from tests.app.conftest import _flush, free_port, make_settings
from tests.app.test_reuse_port import answering_pids, wait_for_pids


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
        "cli.main",
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
    from cli.main import main

    monkeypatch.setenv("TANDEM_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("TANDEM_BUNDLE_PATH", raising=False)
    assert main(["serve", "--dataset", "myshop"]) == 2
    assert "run `tandem bundle build --train --dataset myshop` first" in capsys.readouterr().err


def test_two_workers_each_serve_on_their_own_socket(
    baseline_bundle: Path, redis_url: str, key_prefix: str
) -> None:
    """`tandem serve --workers 2` (Redis-backed): two listening sockets on one port, both workers ready."""
    if not reuse_port_supported():
        pytest.skip("SO_REUSEPORT balancing is Linux only")
    port = free_port()
    env = {**os.environ, "TANDEM_REDIS_URL": redis_url, "TANDEM_KEY_PREFIX": key_prefix}
    command = [sys.executable, "-m", "cli.main", "serve", "--workers", "2", "--port", str(port)]
    command += ["--bundle", str(baseline_bundle)]
    # stderr not piped: nothing reads it, and a full pipe would stall the workers' logging
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert len(wait_for_pids(port, 2, seconds=90, path="/readyz")) == 2  # both workers ready
        shares = Counter(answering_pids(port, 32, path="/readyz"))
        assert len(shares) == 2 and min(shares.values()) >= 4, shares
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(60)
        asyncio.run(_flush(make_settings(baseline_bundle, redis_url=redis_url, key_prefix=key_prefix)))
    assert code == 0
