import os
import shutil
import subprocess
import sys

import pytest

from tools.bench import service
from tools.bench.service import LoadPoint, Workload


def _point(connections: int, rps: float, p99_ms: float, errors: int = 0) -> LoadPoint:
    return LoadPoint(connections, 0.0, rps, p99_ms / 4, p99_ms / 2, p99_ms, errors, int(rps * 5))


def test_wrk_result_line_becomes_a_load_point() -> None:
    result = {
        "requests": 500,
        "duration_us": 5_000_000,
        "errors": 1,
        "status_errors": 2,
        "p50_us": 1500,
        "p90_us": 2500,
        "p99_us": 9000,
        "max_us": 12000,
    }
    point = LoadPoint.from_wrk(4, 0.0, result)
    assert (point.rps, point.p50_ms, point.p99_ms, point.errors) == (100.0, 1.5, 9.0, 3)


def test_capacity_is_the_best_point_within_budget_and_half_load_is_paced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sweep = {1: _point(1, 100, 5), 2: _point(2, 180, 8), 4: _point(4, 260, 30), 8: _point(8, 280, 90)}
    sweep[16] = _point(16, 300, 200)
    calls: list[tuple[int, float]] = []

    def fake_wrk(
        url: str, workload: Workload, connections: int, seconds: float, delay_ms: float = 0.0
    ) -> LoadPoint:
        calls.append((connections, delay_ms))
        return sweep[connections] if delay_ms == 0 else _point(connections, 125, 9)

    monkeypatch.setattr(service, "run_wrk", fake_wrk)
    result = service.capacity("http://x", Workload(), budget_p99_ms=50, connections=(1, 2, 4, 8, 16))
    assert result.capacity_rps == 260  # 8 and 16 connections broke the budget: the sweep stopped there
    assert [c for c, d in calls if d == 0] == [1, 2, 4, 8, 16]
    # two connections paced to ~130/s: each waits 2 / 130 s minus the unloaded latency (1.25 ms)
    assert calls[-1][0] == 2 and calls[-1][1] == pytest.approx(2000 / 130 - 1.25)
    assert result.half_load is not None and result.to_dict()["half_load"]["rps"] == 125


def test_no_point_within_budget_gives_zero_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "run_wrk", lambda *args, **kwargs: _point(args[2], 50, 500))
    result = service.capacity("http://x", Workload(), budget_p99_ms=50, connections=(1, 2, 4))
    assert result.capacity_rps == 0 and result.half_load is None and result.notes


def test_rss_covers_the_process_and_its_children() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; print(1, flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline()  # the child has started (has memory)
        rss = service.rss_mib(os.getpid())
        assert any(key.startswith(f"{child.pid}:") for key in rss)
        own = [value for key, value in rss.items() if key.startswith(f"{os.getpid()}:")]
        assert own and own[0] > 0
    finally:
        child.kill()
        child.wait()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_against_a_port_nobody_listens_on_is_an_error_not_a_number() -> None:
    with pytest.raises(service.BenchError, match="wrk gave no result"):
        service.run_wrk("http://127.0.0.1:9", Workload(), 1, 1)
