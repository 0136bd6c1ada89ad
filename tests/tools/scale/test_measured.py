"""The merge of the scale measurements into the report, the fault targets' verdict and their rendering."""

from __future__ import annotations

import json
from pathlib import Path

from tools.scale.measured import markdown, merge, scenario_met

ROW = {
    "requests": 10,
    "failed": 0,
    "events_accepted": 8,
    "events_stored": 8,
    "events_duplicated": 0,
    "events_lost": 0,
    "users_with_events": 4,
    "users_with_fresh_vectors": 4,
}


def test_merge_keeps_what_was_not_run_again_and_takes_new_files(tmp_path: Path) -> None:
    (tmp_path / "milvus_down.json").write_text(json.dumps({"requests": 5}))
    (tmp_path / "unrelated.json").write_text("{}")
    previous = {"milvus_down": {"requests": 1}, "bundle_distribution": {"converged": True}, "tests": ["old"]}
    merged = merge({"tests": ["new"]}, previous, tmp_path)
    assert merged == {
        "tests": ["new"],
        "milvus_down": {"requests": 5},
        "bundle_distribution": {"converged": True},
    }


def test_a_scenario_meets_its_targets_only_with_every_count_right() -> None:
    assert scenario_met(ROW)
    for key, value in [
        ("failed", 1),
        ("events_stored", 7),
        ("events_lost", 1),
        ("events_duplicated", 2),
        ("users_with_fresh_vectors", 3),
        ("events_accepted", 0),
    ]:
        assert not scenario_met({**ROW, key: value}), key


def test_markdown_says_missed_and_what_is_not_measured() -> None:
    section = {"date": "d", "command": "c", "setup": "s", "scenarios": {"baseline": ROW}}
    lost = {**ROW, "events_lost": 1, "fault": "kill -9"}
    scenarios = {"baseline": ROW, "node_killed": lost}
    text = "\n".join(markdown({"redis_cluster": {**section, "scenarios": scenarios}}))
    assert "| baseline (no fault) | 10 | 0 | 8 | 8 | 0 | 0 | 4 | 4 | met |" in text
    assert "| node_killed (kill -9) |" in text and "**missed**" in text
    assert "Not measured yet: `bundle_distribution`, `milvus_down`, `ddp`, `replicas`, `index`." in text
    reduced = markdown({"ddp": {"date": "d", "command": "c", "reduced": "2 epochs", "world_size": 2}})
    assert any("reduced: 2 epochs" in line for line in reduced)
