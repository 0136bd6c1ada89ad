"""milvus-lite for the Milvus tests, in the two modes the backend is tested in: embedded (a ``.db`` path the
client opens in its own process; milvus-lite locks it, so one process at a time) and a separate server
process (``milvus-lite server --data-dir D --host 127.0.0.1 --port P``, reached at ``http://127.0.0.1:P``
as a Milvus server would be), on a free port in a temporary directory, torn down after the test."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
MODES = ("embedded", "server")
START_TIMEOUT_S = 60.0


@dataclass
class LiteServer:
    port: int
    process: subprocess.Popen[bytes]
    root: Path

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log(self) -> str:
        return (self.root / "server.log").read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _answers(uri: str) -> bool:
    """The server answers a gRPC call (an open port alone may precede the service)."""
    from pymilvus import MilvusClient

    try:
        client = MilvusClient(uri, timeout=2.0)
    except Exception:
        return False
    try:
        client.list_collections(timeout=2.0)
        return True
    except Exception:
        return False
    finally:
        client.close()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@contextmanager
def milvus_lite_server(root: Path, timeout_s: float = START_TIMEOUT_S) -> Iterator[LiteServer]:
    """A ``milvus-lite server`` process with its data under ``root``; waits until it answers (raises
    ``RuntimeError`` with its log when it exits or does not answer within ``timeout_s``), stops it after."""
    root.mkdir(parents=True, exist_ok=True)
    binary = Path(sys.executable).with_name("milvus-lite")
    port = _free_port()
    command = [str(binary), "server", "--data-dir", str(root / "data"), "--host", HOST, "--port", str(port)]
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = LiteServer(port, process, root)
    try:
        deadline = time.monotonic() + timeout_s
        while not (_port_open(port) and _answers(server.uri)):
            if process.poll() is not None:
                raise RuntimeError(f"milvus-lite server exited with {process.returncode}: {server.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"milvus-lite server did not answer within {timeout_s} s: {server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def milvus_uri(mode: str, root: Path) -> Iterator[str]:
    """``TANDEM_MILVUS_URI`` for ``mode``: a ``.db`` path under ``root``, or a server process's URI."""
    if mode == "embedded":
        yield str(root / "milvus.db")
    elif mode == "server":
        with milvus_lite_server(root / "milvus-server") as server:
            yield server.uri
    else:
        raise ValueError(f"unknown milvus-lite mode {mode!r}")
