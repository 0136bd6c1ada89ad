"""Step 1: a Docker engine that builds with BuildKit and a compose command; a dockerd started (and stopped)
here when only installed, Debian's docker.io installed with apt when missing and this runs as root."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tools.compose_check import shell
from tools.compose_check.shell import CheckFailed, apt_install, path_binaries, run, say


class Engine:
    """The Docker CLI used for builds (BuildKit-capable), the compose command, and a dockerd we started."""

    def __init__(self) -> None:
        self.dockerd: subprocess.Popen[bytes] | None = None
        self.bin_dir = Path(tempfile.mkdtemp(prefix="tandem-compose-check-"))
        self.docker = "docker"
        self.compose: list[str] = []

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for docker/compose: the BuildKit-capable CLI first on PATH."""
        return {
            **os.environ,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "DOCKER_BUILDKIT": "1",
            "COMPOSE_DOCKER_CLI_BUILD": "1",
            **extra,
        }

    def start(self) -> None:
        nothing = not path_binaries("docker") and not path_binaries("dockerd")
        if nothing and not apt_install(["docker.io", "docker-compose"]):
            raise CheckFailed(
                "no Docker engine here, and it cannot be installed (needs root and apt-get for docker.io)"
            )
        clients = path_binaries("docker")
        if not clients and not apt_install(["docker.io"]):
            raise CheckFailed("no docker client here, and it cannot be installed (docker.io)")
        clients = clients or path_binaries("docker")
        if run([clients[0], "info"], check=False, timeout=30).returncode != 0:
            self._start_dockerd(clients[0])
        # starting dockerd may have installed docker.io (and its BuildKit-capable client): look again
        self.docker = self._buildkit_client(path_binaries("docker"))
        (self.bin_dir / "docker").symlink_to(self.docker)
        self.compose = self._compose_command()

    def _start_dockerd(self, client: str) -> None:
        daemons = path_binaries("dockerd")
        if not daemons and not apt_install(["docker.io"]):
            raise CheckFailed("no Docker engine running; dockerd is not installed and cannot be installed")
        daemons = daemons or path_binaries("dockerd")
        if os.geteuid() != 0:
            raise CheckFailed("no Docker engine running, and starting dockerd needs root")
        shell.WORK.mkdir(parents=True, exist_ok=True)
        log = (shell.WORK / "dockerd.log").open("wb")
        say(f"starting {daemons[0]} (log: {shell.WORK / 'dockerd.log'})")
        self.dockerd = subprocess.Popen(
            ["nice", "-n", "10", daemons[0], "--pidfile", str(shell.WORK / "dockerd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.dockerd.poll() is not None:
                tail = (shell.WORK / "dockerd.log").read_text(errors="replace").strip().splitlines()[-5:]
                raise CheckFailed("dockerd exited at start:\n" + "\n".join(tail))
            if run([client, "info"], check=False, timeout=30).returncode == 0:
                return
            time.sleep(1)
        raise CheckFailed("dockerd did not answer within 60 s")

    def _buildkit_client(self, clients: list[str]) -> str:
        """A client that builds with BuildKit: one with buildx, or a pre-23 client (BuildKit built in)."""
        for client in clients:
            if run([client, "buildx", "version"], check=False).returncode == 0:
                return client
        for client in clients:
            version = run([client, "version", "--format", "{{.Client.Version}}"], check=False).stdout
            major = re.match(r"\s*(\d+)\.", version or "")
            if major and int(major.group(1)) < 23:
                return client
        raise CheckFailed("no docker client here builds with BuildKit (install docker-buildx, or docker.io)")

    def _compose_command(self) -> list[str]:
        if run([self.docker, "compose", "version"], check=False).returncode == 0:
            return [self.docker, "compose"]
        if shutil.which("docker-compose") or apt_install(["docker-compose"]):
            return ["docker-compose"]
        raise CheckFailed("neither `docker compose` nor docker-compose is available, nor installable")

    def stop(self) -> None:
        shutil.rmtree(self.bin_dir, ignore_errors=True)
        if self.dockerd is None:
            return
        say("stopping the dockerd this check started")
        self.dockerd.terminate()
        try:
            self.dockerd.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.dockerd.kill()
            self.dockerd.wait()
