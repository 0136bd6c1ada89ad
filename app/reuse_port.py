"""Several uvicorn workers, each accepting on its own ``SO_REUSEPORT`` listening socket (Linux).

uvicorn's ``--workers`` hands every worker one shared listening socket. When connections arrive, every
worker wakes and the first one to call ``accept`` takes all that are queued, so a burst of keep-alive
connections (a load balancer's pool, wrk's) lands on one worker: measured with two workers, one took
2/2, 4/4, 8/8 and 15/16 of wrk's connections (docs/performance.md). With ``SO_REUSEPORT`` each worker
has a socket of its own bound to the same address, and the kernel spreads new connections over them by
a hash of the connection's addresses and ports.

The supervisor keeps each socket open for the life of the server and restarts a worker that dies on its
own socket (connections queued there wait for the replacement); a worker that fails before it serves
stops the server, as uvicorn's own supervisor does. Health checks are uvicorn's (``Process``), with one
difference: a worker that has not answered a health check yet is only checked for being alive as a
process, for up to ``STARTUP_GRACE_S``. A spawned worker answers only once its interpreter has started
and imported the app; on a busy 2-core machine that can take longer than uvicorn's 5-second check, and the
supervisor then killed the starting worker and started another, which could meet the same fate.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
import time
from types import FrameType

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Process

log = logging.getLogger("tandem.serve")
CHECK_EVERY_S = 0.5
STARTUP_GRACE_S = 300.0  # a worker that never answers a health check within this is restarted


def reuse_port_supported() -> bool:
    """Linux balances connections over the sockets of a reuse-port group; other systems do not."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _family(host: str) -> socket.AddressFamily:
    """IPv6 for an address with a colon (as uvicorn decides), else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def ensure_port_free(host: str, port: int) -> None:
    """Raises OSError (EADDRINUSE) when something listens on (host, port) already. A socket of our own
    with SO_REUSEPORT would otherwise join the group of an earlier server of the same user still
    running there, and the two would split the traffic without a word; a plain bind is refused."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
        probe.bind((host, port))


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) with SO_REUSEADDR and SO_REUSEPORT, not yet listening (the
    worker's server listens on it)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class ReusePortSupervisor:
    """``config.workers`` worker processes, worker i serving on socket i."""

    def __init__(self, config: Config) -> None:
        self.config = config
        ensure_port_free(config.host, config.port)
        self.sockets = [reuse_port_socket(config.host, config.port) for _ in range(config.workers)]
        self.processes: list[Process] = []
        self.started_at: list[float] = []
        self.answered: list[bool] = []
        self.should_exit = threading.Event()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        log.info("stopping workers", extra={"signal": signum})
        self.should_exit.set()

    def _start(self, index: int) -> Process:
        process = Process(self.config, [self.sockets[index]])
        process.start()
        log.info("worker started", extra={"worker_pid": process.pid, "socket": index})
        while len(self.started_at) <= index:
            self.started_at.append(0.0)
            self.answered.append(False)
        self.started_at[index], self.answered[index] = time.monotonic(), False
        return process

    def run(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        self.processes = [self._start(i) for i in range(len(self.sockets))]
        try:
            while not self.should_exit.wait(CHECK_EVERY_S):
                self._replace_dead_workers()
        finally:
            for process in self.processes:
                process.terminate()
            for process in self.processes:
                process.join()
            for sock in self.sockets:
                sock.close()

    def _healthy(self, index: int, process: Process) -> bool:
        """Alive and answering; a worker still starting (never answered, within the grace) needs only to
        be alive as a process."""
        if self.answered[index]:
            return process.is_alive(timeout=self.config.timeout_worker_healthcheck)
        if not process.process.is_alive():
            return False
        if process.ping(timeout=0.01):
            self.answered[index] = True
            return True
        return time.monotonic() - self.started_at[index] < STARTUP_GRACE_S

    def _replace_dead_workers(self) -> None:
        for index, process in enumerate(self.processes):
            if self._healthy(index, process):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("a worker failed to start; stopping", extra={"worker_pid": process.pid})
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning("worker died; restarting it", extra={"worker_pid": process.pid, "socket": index})
            self.processes[index] = self._start(index)
