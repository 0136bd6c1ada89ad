import csv
from pathlib import Path

import pytest

from loadtest import record, report, steps
from tests.app.conftest import free_port

HEADER = ["Timestamp", "User Count", "Type", "Name", "Requests/s", "Failures/s", "50%", "95%", "99%"]


def test_check_refuses_when_no_service_answers(capsys: pytest.CaptureFixture[str]) -> None:
    assert report.check(f"http://127.0.0.1:{free_port()}") == 2
    assert "starts nothing itself" in capsys.readouterr().err


def test_plot_draws_the_aggregated_history(tmp_path: Path) -> None:
    history = tmp_path / "run_stats_history.csv"
    with open(history, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerow([1000, 0, "", "Aggregated", "0.0", "0.0", "N/A", "N/A", "N/A"])
        for second in range(1, 6):
            writer.writerow([1000 + second, 8, "", "Aggregated", "40.5", "0.0", "12", "30", "45"])
            writer.writerow(
                [1000 + second, 8, "POST", "/v1/recommend [known]", "30", "0.0", "10", "25", "40"]
            )
    out = tmp_path / "latency.png"
    assert report.plot(history, out) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_aggregated_rows_fails(tmp_path: Path) -> None:
    history = tmp_path / "empty.csv"
    history.write_text(",".join(HEADER) + "\n")
    assert report.plot(history, tmp_path / "x.png") == 1


STATS_HEADER = ["Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "99%"]


def write_stats(path: Path, rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(STATS_HEADER)
        writer.writerows(rows)


def test_a_record_says_what_was_offered_achieved_and_whether_the_budget_held(tmp_path: Path) -> None:
    stats = tmp_path / "run_stats.csv"
    write_stats(
        stats,
        [
            ["POST", "/v1/recommend [known]", 900, 0, "15.0", "40", "90"],
            ["", "Aggregated", 1200, 0, "20.0", "35", "95"],
        ],
    )
    rows = record.stats_rows(stats)
    made = record.make_record(
        rows, 32, 60, "default", {"model_version": "m"}, [1.0, 0.5, 0.2], [1.5, 0.6, 0.3]
    )
    assert made["offered_rps"] == 256.0  # 32 users / 0.125 s mean pause
    assert made["achieved_rps"] == 20.0 and made["p99_ms"] == 95.0 and made["within_budget"] is True
    assert made["by_request"] == {
        "/v1/recommend [known]": {"requests": 900, "failures": 0, "rps": 15.0, "p50_ms": 40.0, "p99_ms": 90.0}
    }
    over = record.make_record(rows, 32, 60, "default", {}, [], [], budget_p99_ms=94.0)
    assert over["within_budget"] is False
    write_stats(stats, [["", "Aggregated", 10, 1, "1.0", "5", "6"]])
    failed = record.make_record(record.stats_rows(stats), 8, 10, "x", {}, [], [])
    assert failed["within_budget"] is False and failed["error_ratio"] == 0.1
    out = tmp_path / "loadtest.json"
    record.append(out, made)
    assert [r["label"] for r in record.append(out, failed)] == ["default", "x"]


def test_the_saturation_series_keep_each_setups_latest_run_and_plot(tmp_path: Path) -> None:
    def step(setup: str, users: int, rps: float) -> dict[str, object]:
        return {
            "label": f"{setup}-steps",
            "users": users,
            "achieved_rps": rps,
            "p50_ms": 10.0,
            "p99_ms": 50.0,
        }

    records = [step("serve", 8, 50), step("serve", 16, 90), step("serve", 8, 55), step("serve", 16, 95)]
    records += [step("stack-local", 8, 60), {"label": "default", "users": 32}]
    found = steps.series(records)
    assert sorted(found) == ["serve", "stack-local"]
    assert [s["achieved_rps"] for s in found["serve"]] == [55, 95]  # the latest series only
    png = tmp_path / "saturation.png"
    steps.plot(records, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_checkout_commit_is_a_short_hash_here_and_none_outside_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit = record.checkout_commit()
    assert commit is not None and len(commit) >= 7 and all(c in "0123456789abcdef" for c in commit)
    monkeypatch.chdir(tmp_path)  # not a checkout
    assert record.checkout_commit() is None
