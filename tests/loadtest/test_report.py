import csv
from pathlib import Path

import pytest

from loadtest import report
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
