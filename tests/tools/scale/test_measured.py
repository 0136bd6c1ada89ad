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


def test_ddp_replicas_and_index_sections_say_met_or_missed() -> None:
    ddp = {
        "date": "d",
        "command": "c",
        "setup": "1 x 2 vs 2 x 1",
        "backend": "gloo",
        "world_size": 2,
        "single_ndcg10": [0.1, 0.2],
        "ddp_ndcg10": [0.1, 0.1],
        "single_epoch_s": 3.0,
        "ddp_epoch_s": 4.0,
        "mean_difference": -0.05,
        "tolerance": 0.14,
        "met": True,
        "replicas_identical": False,
    }
    text = "\n".join(markdown({"ddp": ddp}))
    assert "### DDP encoder training (**missed**)" in text  # replicas that differ miss the target
    assert (
        "| 1 process | [0.1, 0.2] | 0.1500 | 3.0 |" in text
        and "| 2 ranks | [0.1, 0.1] | 0.1000 | 4.0 |" in text
    )
    rounds = [
        {"replicas": 1, "rps": 10.0, "p99_ms": [5.0]},
        {"replicas": 2, "rps": 16.0, "p99_ms": [6.0, 7.0]},
    ]
    replicas = {
        "date": "d",
        "command": "c",
        "setup": "s",
        "rps_1": 10.0,
        "rps_2": 16.0,
        "ratio": 1.6,
        "met": True,
        "cross_replica_checks": 5,
        "cross_replica_violations": 0,
        "rounds": rounds,
    }
    text = "\n".join(markdown({"replicas": replicas}))
    assert "### Replicas (met)" in text and "rps_2 **16.0** (x1.6, target >= 1.5)" in text
    assert "2 replica(s) 16.0 req/s (p99 [6.0, 7.0] ms)" in text
    row = {
        "items": 9,
        "faiss_kind": "ivf",
        "faiss_recall_at_200": 0.97,
        "milvus_recall_at_200": 0.9,
        "faiss_p50_ms": 0.3,
        "milvus_p50_ms": 30.0,
        "milvus_publish_s": 1.0,
        "milvus_index": {"index_type": "IVF_FLAT", "search": {"nprobe": 8}},
        "met": False,
    }
    index = {"date": "d", "command": "c", "setup": "s", "met": False, "ml-1m": row, "synthetic-1m": row}
    text = "\n".join(markdown({"index": index}))
    assert "| ml-1m | 9 | ivf | 0.97 | 0.9 | 0.3 | 30.0 | 1.0 | IVF_FLAT {'nprobe': 8} | **missed** |" in text
