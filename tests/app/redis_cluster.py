"""A throwaway Redis Cluster for tests: 3 masters (``redis-server --cluster-enabled yes``) on free ports,
each with a free cluster bus port, AOF with ``appendfsync always``, ``cluster-require-full-coverage no``,
no RDB snapshots, in a temporary directory; joined by ``redis-cli --cluster create``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class LocalCluster:
    ports: list[int]
    processes: list[subprocess.Popen[bytes]]
    root: Path

    @property
    def url(self) -> str:
        """``TANDEM_REDIS_URL`` for it: every startup node."""
        return ",".join(f"redis://{HOST}:{port}" for port in self.ports)

    def cli(self, port: int, *args: str, timeout_s: float = 10.0) -> str:
        command = ["redis-cli", "-h", HOST, "-p", str(port), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False).stdout


def redis_binaries() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (held open together while chosen, so none repeats)."""
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]


def _wait(check: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis cluster: {what} within {timeout_s} s")
        time.sleep(0.05)


@contextmanager
def local_cluster(root: Path, masters: int = 3) -> Iterator[LocalCluster]:
    ports = free_ports(2 * masters)
    node_ports, bus_ports = ports[:masters], ports[masters:]
    processes: list[subprocess.Popen[bytes]] = []
    cluster = LocalCluster(node_ports, processes, root)
    try:
        for port, bus in zip(node_ports, bus_ports, strict=True):
            node_dir = root / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            command = [
                "redis-server",
                "--port", str(port),
                "--bind", HOST,
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus),
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
                "--dir", str(node_dir),
                "--logfile", str(node_dir / "redis.log"),
            ]  # fmt: skip
            processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in node_ports:
            _wait(lambda port=port: cluster.cli(port, "ping").strip() == "PONG", f"node {port} answering")
        nodes = [f"{HOST}:{port}" for port in node_ports]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout}\n{created.stderr}")
        ok = "cluster_state:ok"
        for port in node_ports:
            _wait(lambda port=port: ok in cluster.cli(port, "cluster", "info"), ok)
        yield cluster
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
