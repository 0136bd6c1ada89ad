"""app/reuse_port.py: workers on their own SO_REUSEPORT sockets, run for real in a subprocess."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from uvicorn.config import Config

from app.reuse_port import ReusePortSupervisor, reuse_port_socket, reuse_port_supported
from tests.app.conftest import free_port

pytestmark = pytest.mark.skipif(not reuse_port_supported(), reason="SO_REUSEPORT balancing is Linux only")
ROOT = Path(__file__).resolve().parents[2]


async def pid_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: answers every request with its process id."""
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def answering_pids(port: int, connections: int, path: str = "/") -> list[int]:
    """Opens ``connections`` connections at once, then sends one GET ``path`` on each: the pid that
    answered each (the body, or its ``detail.pid`` for /readyz; an answer other than 200 raises
    ConnectionError, as a worker not ready yet). Opened together, they are accepted while both workers
    are idle, which is where one shared listening socket hands them all to the worker that wakes first."""
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(connections)]
    try:
        for client in clients:
            client.connect()
        pids = []
        for client in clients:
            client.request("GET", path)
            response = client.getresponse()
            body = response.read()
            if response.status != 200:
                raise ConnectionError(f"GET {path}: {response.status}")
            pids.append(int(body) if path == "/" else int(json.loads(body)["detail"]["pid"]))
        return pids
    finally:
        for client in clients:
            client.close()


def wait_for_pids(
    port: int, count: int, exclude: frozenset[int] = frozenset(), seconds: float = 90, path: str = "/"
) -> set[int]:
    """Polls until ``count`` distinct pids outside ``exclude`` answer one round of 32 connections."""
    deadline = time.monotonic() + seconds
    seen: set[int] = set()
    while time.monotonic() < deadline:
        try:
            seen = set(answering_pids(port, 32, path)) - exclude
        except OSError:
            seen = set()
        if len(seen) >= count:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{count} workers never answered one round together; saw {seen}")


@pytest.fixture
def supervised() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    code = (
        "from uvicorn.config import Config\n"
        "from app.reuse_port import ReusePortSupervisor\n"
        f"config = Config('tests.app.test_reuse_port:pid_app', host='127.0.0.1', port={port}, workers=2,"
        " lifespan='off', log_config=None)\n"
        "ReusePortSupervisor(config).run()\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        yield process, port
    finally:  # SIGTERM lets the supervisor stop its workers; SIGKILL would leave them running
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_two_sockets_share_one_port() -> None:
    port = free_port()
    first, second = reuse_port_socket("127.0.0.1", port), reuse_port_socket("127.0.0.1", port)
    try:
        assert first.getsockname() == second.getsockname()
    finally:
        first.close()
        second.close()


def test_new_connections_reach_every_worker_and_a_dead_worker_is_replaced(
    supervised: tuple[subprocess.Popen[bytes], int],
) -> None:
    process, port = supervised
    workers = wait_for_pids(port, 2)
    assert len(workers) == 2 and process.pid not in workers
    # the kernel spreads connections opened together; one shared socket often gave one worker all 32
    for _ in range(4):
        shares = Counter(answering_pids(port, 32))
        assert set(shares) == workers and min(shares.values()) >= 4, shares

    dead = min(workers)
    os.kill(dead, signal.SIGKILL)
    replaced = wait_for_pids(port, 2, exclude=frozenset({dead}))
    assert (workers - {dead}) < replaced and dead not in replaced

    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    for pid in replaced:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_port_taken_by_a_running_server_is_refused_not_shared(
    supervised: tuple[subprocess.Popen[bytes], int],
) -> None:
    _, port = supervised
    wait_for_pids(port, 2)
    config = Config("tests.app.test_reuse_port:pid_app", host="127.0.0.1", port=port, workers=2)
    with pytest.raises(OSError):
        ReusePortSupervisor(config)


class _Starting:
    """A worker process as the supervisor sees it: alive as a process, answering pings or not."""

    def __init__(self, answers: bool, alive: bool = True) -> None:
        self.answers = answers
        self.process = type("OS", (), {"is_alive": lambda _self: alive})()
        self.killed = False

    def ping(self, timeout: float = 5) -> bool:
        return self.answers

    def is_alive(self, timeout: float = 5) -> bool:
        return self.answers


def test_a_worker_still_starting_is_not_killed_for_missing_health_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import app.reuse_port as reuse

    supervisor = ReusePortSupervisor.__new__(ReusePortSupervisor)
    supervisor.config = Config(app=pid_app)
    slow, dead = _Starting(answers=False), _Starting(answers=False, alive=False)
    supervisor.started_at, supervisor.answered = [time.monotonic()] * 2, [False, False]
    assert supervisor._healthy(0, slow)  # type: ignore[arg-type]  # importing its app: left alone
    assert not supervisor._healthy(1, dead)  # type: ignore[arg-type]  # gone as a process: replaced
    monkeypatch.setattr(reuse, "STARTUP_GRACE_S", 0.0)
    assert not supervisor._healthy(0, slow)  # type: ignore[arg-type]  # never answered within the grace
    ready = _Starting(answers=True)
    assert supervisor._healthy(0, ready) and supervisor.answered[0]  # type: ignore[arg-type]
    ready.answers = False  # once it has answered, uvicorn's own health check decides
    assert not supervisor._healthy(0, ready)  # type: ignore[arg-type]
