"""Step 4: docker-compose.yml plus its overrides as one project: up until every service is healthy, logs,
metrics from inside a container, and a teardown that reports what is left."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from tools.compose_check.engine import Engine
from tools.compose_check.shell import ROOT, CheckFailed, run, say

SERVICES = ("redis", "api", "worker", "prometheus")  # grafana only where its image can be pulled
LOG_TAIL = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stack:
    """docker-compose.yml plus overrides, under its own project name."""

    def __init__(self, engine: Engine, files: list[Path], project: str, env: dict[str, str]) -> None:
        self.engine = engine
        self.project = project
        self.base = [*engine.compose, "-p", project]
        for file in files:
            self.base += ["-f", str(file)]
        self.env = engine.env(**env)

    def compose(self, *args: str, check: bool = True, timeout: float | None = None) -> str:
        return run([*self.base, *args], check=check, env=self.env, timeout=timeout).stdout

    def container(self, service: str) -> str:
        return self.compose("ps", "-q", service).strip()

    def state(self, service: str) -> str:
        """'running healthy', 'running starting', 'exited', ... or 'absent'."""
        container = self.container(service)
        if not container:
            return "absent"
        template = "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}"
        result = run([self.engine.docker, "inspect", "-f", template, container], check=False)
        return result.stdout.strip() or "absent"

    def up_until_healthy(self, timeout_s: float) -> None:
        """`up -d` (compose waits for healthy dependencies itself) and wait for every service healthy."""
        up = subprocess.Popen(
            [*self.base, "up", "-d", "--no-build"],
            cwd=ROOT,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            if up.poll() is not None and up.returncode != 0:
                output = (up.stdout.read() if up.stdout else "").strip().splitlines()[-10:]
                raise CheckFailed("compose up failed:\n" + "\n".join(output))
            states = {service: self.state(service) for service in SERVICES}
            if up.poll() == 0 and all(state == "running healthy" for state in states.values()):
                return
            broken = [
                s
                for s, state in states.items()
                if state.startswith(("exited", "dead")) or state.endswith("unhealthy")
            ]
            if broken:
                raise CheckFailed(f"not healthy: {', '.join(f'{s} ({states[s]})' for s in broken)}")
            time.sleep(2)
        up.kill()
        raise CheckFailed(f"not healthy after {timeout_s:.0f}s: {states}")

    def print_logs(self) -> None:
        for service in SERVICES:
            say(f"last {LOG_TAIL} log lines of {service}:")
            print(
                self.compose("logs", "--no-color", "--tail", str(LOG_TAIL), service, check=False), flush=True
            )

    def metrics_of(self, service: str, port: int) -> str:
        """The Prometheus text a service serves on ``port`` inside its container."""
        code = (
            f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
        )
        return self.compose("exec", "-T", service, "python", "-c", code, timeout=60)

    def down(self) -> list[str]:
        """Tear down; what is left of the project (containers, networks, volumes) — empty when clean."""
        self.compose("--profile", "grafana", "down", "--volumes", "--remove-orphans", "-t", "10", check=False)
        label = f"label=com.docker.compose.project={self.project}"
        left = []
        for kind in ("container", "network", "volume"):
            listing = [self.engine.docker, kind, "ls", "-q", "--filter", label]
            if kind == "container":
                listing.insert(3, "-a")
            left += [f"{kind} {name}" for name in run(listing, check=False).stdout.split()]
        return left
