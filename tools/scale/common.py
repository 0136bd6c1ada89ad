"""Shared pieces of the ``make scale-measure`` measurements (``tools/scale/*.py``): where a measurement's
result goes (``var/scale/<name>.json``, with the command and the date; ``tools.scale.report`` merges them
into docs/results/scale.json), an API process (``tandem serve --workers 1``), a directory served over HTTP
from a thread, tiny bundles built in seconds, Prometheus text parsing and a steady recommend load.

Every process listens on 127.0.0.1 and a free port."""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import free_port
from tests.faults.harness import Service, wait_until

ROOT = Path(__file__).resolve().parents[2]
MEASURED = ROOT / "var" / "scale"
DATA_DIR = ROOT.parent / "shared" / "data"  # the shipped data beside the checkout (make's DATA_DIR)
ADMIN_KEY = "scale-admin"
READY_TIMEOUT_S = 120.0

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in Prometheus text whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        found = dict(_LABEL.findall(match["labels"] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            total += float(match["value"])
    return total


def write_measurement(name: str, result: dict[str, Any], command: str, out_dir: Path = MEASURED) -> Path:
    """Writes ``result`` with ``command`` and today's date to ``<out_dir>/<name>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    record = {**result, "command": command, "date": time.strftime("%Y-%m-%d")}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps({name: record}, indent=1))
    return path


def bundle_or_default(bundle: Path | None, data_dir: Path) -> Path:
    """``bundle``, else the default bundle of ``data_dir`` (built when missing, as ``make serve`` does)."""
    if bundle is not None:
        return bundle
    from models.bundle.default import ensure_default_bundle

    return Path(ensure_default_bundle(data_dir))


def small_bundles(root: Path) -> tuple[Path, Path]:
    """Two tiny real bundles (60 users, 200 items, an untrained dim-16 encoder) that differ only in their
    weights, so in their model version."""
    from tests.app.conftest import build_encoder_bundle

    return (
        build_encoder_bundle(root / "v1", weights_seed=0),
        build_encoder_bundle(root / "v2", weights_seed=1),
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """``directory`` over HTTP (python's http.server in a thread); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Api:
    """``tandem serve --workers 1`` on a free port with ``env`` over a clean copy of this environment."""

    name: str
    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    service: Service | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Api:
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TANDEM_", "PROMETHEUS_"))}
        env = {"TANDEM_ADMIN_KEY": ADMIN_KEY, "TANDEM_LOG_LEVEL": "WARNING", **base, **self.env}
        command = [sys.executable, "-m", "cli.main", "serve", "--workers", "1", "--port", str(self.port)]
        self.service = Service(self.name, command, env, self.workdir)
        self.service.start()
        ready = lambda: httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200  # noqa: E731
        if not wait_until(ready, READY_TIMEOUT_S):
            raise RuntimeError(f"{self.name} did not become ready:\n{self.service.log_tail()}")
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def model_version(self) -> str:
        return str(httpx.get(f"{self.url}/readyz", timeout=5).json()["detail"]["model_version"])

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


@dataclass
class Load:
    """Threads sending ``POST /v1/recommend`` for ``users`` in turn until stopped; counts answers."""

    url: str
    users: list[str]
    threads: int = 2
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)
    running: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for seed in range(self.threads):
            thread = threading.Thread(target=self._loop, args=(seed,), daemon=True)
            thread.start()
            self.running.append(thread)
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.running:
            thread.join(timeout=30)

    def _loop(self, seed: int) -> None:
        n = seed
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stopping.is_set():
                n += self.threads
                try:
                    answer = client.post("/v1/recommend", json={"user_id": self.users[n % len(self.users)]})
                    outcome = str(answer.status_code)
                except httpx.HTTPError as error:
                    outcome = error.__class__.__name__
                with self.lock:
                    self.statuses[outcome] += 1

    def counts(self) -> dict[str, Any]:
        with self.lock:
            requests = sum(self.statuses.values())
            failed = sum(v for k, v in self.statuses.items() if k not in ("200", "429"))
            return {"requests": requests, "failed": failed, "statuses": dict(sorted(self.statuses.items()))}
