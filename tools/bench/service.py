"""The whole service over HTTP: start it in its own process, load it with wrk (a third process), stop it.

A load point is one wrk run (1 thread, ``connections`` open connections, closed loop unless a per-request
pause is given). ``capacity`` sweeps the connection count and keeps the highest throughput whose p99 stays
under the budget with no errors; ``half_load`` then paces two connections to about half that rate.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

WRK_SCRIPT = Path(__file__).parent / "wrk" / "tandem.lua"
RESULT_MARK = "BENCH_RESULT "


class BenchError(RuntimeError):
    pass


@dataclass
class LoadPoint:
    connections: int
    delay_ms: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int

    @staticmethod
    def from_wrk(connections: int, delay_ms: float, result: dict[str, Any]) -> LoadPoint:
        seconds = max(result["duration_us"] / 1e6, 1e-9)
        return LoadPoint(
            connections=connections,
            delay_ms=delay_ms,
            rps=round(result["requests"] / seconds, 1),
            p50_ms=round(result["p50_us"] / 1e3, 3),
            p90_ms=round(result["p90_us"] / 1e3, 3),
            p99_ms=round(result["p99_us"] / 1e3, 3),
            errors=int(result["errors"] + result["status_errors"]),
            requests=int(result["requests"]),
        )


@dataclass
class Workload:
    """What wrk sends: ``route`` recommend (user ids first..last) or similar (item ids first..last)."""

    route: str = "recommend"
    first: int = 1
    last: int = 200
    k: int = 20

    def env(self, delay_ms: float) -> dict[str, str]:
        return {
            "BENCH_ROUTE": self.route,
            "BENCH_FIRST": str(self.first),
            "BENCH_LAST": str(self.last),
            "BENCH_K": str(self.k),
            "BENCH_DELAY_MS": str(round(delay_ms)),
        }


@dataclass
class Capacity:
    budget_p99_ms: float
    capacity_rps: float
    sweep: list[LoadPoint]
    half_load: LoadPoint | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sweep"] = [asdict(point) for point in self.sweep]
        out["half_load"] = asdict(self.half_load) if self.half_load else None
        return out


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed (apt-get install -y wrk)")
    return found


def run_wrk(
    url: str, workload: Workload, connections: int, seconds: float, delay_ms: float = 0.0
) -> LoadPoint:
    """One wrk run against ``url`` (http://host:port) -> its LoadPoint."""
    command = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    env = {**os.environ, **workload.env(delay_ms)}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 30)
    for line in completed.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return LoadPoint.from_wrk(connections, delay_ms, json.loads(line[len(RESULT_MARK) :]))
    raise BenchError(f"wrk gave no result (exit {completed.returncode}): {completed.stderr[-500:]}")


def capacity(
    url: str,
    workload: Workload,
    budget_p99_ms: float,
    connections: tuple[int, ...] = (1, 2, 4, 8, 16),
    seconds: float = 5.0,
) -> Capacity:
    """Sweeps the connection count; stops once p99 is over budget twice or throughput stops growing."""
    sweep: list[LoadPoint] = []
    for count in connections:
        point = run_wrk(url, workload, count, seconds)
        sweep.append(point)
        over = [p for p in sweep if p.p99_ms > budget_p99_ms or p.errors]
        if len(over) >= 2:
            break
    within = [p for p in sweep if p.p99_ms <= budget_p99_ms and p.errors == 0]
    best = max((p.rps for p in within), default=0.0)
    result = Capacity(budget_p99_ms, best, sweep)
    if not within:
        result.notes.append(f"no load point kept p99 under {budget_p99_ms} ms")
        return result
    # Two paced connections at about half the capacity: pause = 2 / rate - the unloaded latency.
    unloaded_ms = sweep[0].p50_ms
    pause_ms = max(0.0, 2 * 1000 / (best / 2) - unloaded_ms)
    result.half_load = run_wrk(url, workload, 2, seconds, delay_ms=pause_ms)
    return result


# ---------------------------------------------------------------------------------------------- processes
def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Polls ``url``/readyz until 200; returns the seconds it took. Raises when the process dies first."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise BenchError(f"the service exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise BenchError(f"{url} was not ready within {timeout_s:.0f} s")


def start_process(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM to the process group (uvicorn and its workers), SIGKILL after ``timeout_s``."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def serve_command(bundle: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--bundle",
        str(bundle),
    ]


def bare_command(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "tools.bench.bare_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = task / "children"
        if children.is_file():
            found += [int(child) for child in children.read_text().split()]
    return found


def rss_mib(pid: int) -> dict[str, float]:
    """Resident memory of a process and its descendants, MiB each (Linux /proc)."""
    out: dict[str, float] = {}
    pending = [pid]
    while pending:
        current = pending.pop()
        status = Path(f"/proc/{current}/status")
        if not status.is_file():
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
        name = (
            Path(f"/proc/{current}/comm").read_text().strip()
            if Path(f"/proc/{current}/comm").exists()
            else ""
        )
        if match:
            out[f"{current}:{name}"] = round(int(match.group(1)) / 1024, 1)
        pending += _children(current)
    return out


def visit_every_user(url: str, workload: Workload) -> None:
    """One recommend per user of the workload, in order, so each user's vector is cached afterwards."""
    for user in range(workload.first, workload.last + 1):
        body = json.dumps({"user_id": str(user), "k": workload.k}).encode()
        request = urllib.request.Request(
            f"{url}/v1/recommend", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def served_by_counts(url: str) -> dict[str, float]:
    """tandem_requests_total summed per served_by label for /v1/recommend, from /metrics."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("tandem_requests_total{") and 'path="/v1/recommend"' in line:
            label = re.search(r'served_by="([^"]*)"', line)
            if label:
                counts[label.group(1)] = counts.get(label.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
