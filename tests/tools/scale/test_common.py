"""Helpers of the scale measurements: Prometheus text sums, the measurement record, the tampered copy."""

from __future__ import annotations

import json
from pathlib import Path

from tools.scale.bundle_distribution import tamper
from tools.scale.common import metric_total, write_measurement

TEXT = """# HELP tandem_stage_failures_total recommend stages that failed
# TYPE tandem_stage_failures_total counter
tandem_stage_failures_total{stage="ann"} 3.0
tandem_stage_failures_total{stage="ann",pid="2"} 2.0
tandem_stage_failures_total{stage="ranker"} 7.0
tandem_stage_failures_created{stage="ann"} 1.7e9
tandem_requests 4
"""


def test_metric_total_sums_the_matching_samples() -> None:
    assert metric_total(TEXT, "tandem_stage_failures_total", stage="ann") == 5.0
    assert metric_total(TEXT, "tandem_stage_failures_total") == 12.0
    assert metric_total(TEXT, "tandem_requests") == 4.0
    assert metric_total(TEXT, "tandem_stage_failures_total", stage="other") == 0.0
    assert metric_total("", "tandem_requests") == 0.0


def test_a_measurement_is_written_with_its_command_and_date(tmp_path: Path) -> None:
    path = write_measurement("x", {"n": 1}, "python -m tools.scale.x", tmp_path / "out")
    record = json.loads(path.read_text())
    assert path == tmp_path / "out" / "x.json"
    assert record["n"] == 1 and record["command"] == "python -m tools.scale.x" and len(record["date"]) == 10


def test_the_tampered_copy_has_the_same_size_and_other_bytes(tmp_path: Path) -> None:
    original = tmp_path / "a.tar.gz"
    original.write_bytes(bytes(range(256)) * 4)
    copy = tamper(original, tmp_path / "b.tar.gz")
    assert copy.stat().st_size == original.stat().st_size
    changed = sum(a != b for a, b in zip(original.read_bytes(), copy.read_bytes(), strict=True))
    assert changed == 50


def test_a_named_bundle_is_used_as_it_is(tmp_path: Path) -> None:
    from tools.scale.common import bundle_or_default

    assert bundle_or_default(tmp_path / "mine", tmp_path / "no-data") == tmp_path / "mine"
