import json
from pathlib import Path

import pytest

from models.evaluate.report import EvalReport


def test_report_files(tmp_path: Path) -> None:
    report = EvalReport(
        "tandem eval --model a", "ml-1m", "leave-last-out", ("HR@10", "MRR"), users=10, seeds=[0, 1]
    )
    report.add("a", {"HR@10": 0.2, "MRR": 0.1}, 1.0)
    report.add("a", {"HR@10": 0.4, "MRR": 0.1}, 3.0)
    report.add("b", {"HR@10": 0.1, "MRR": 0.05}, 0.5)
    paths = report.write(tmp_path / "retrieval-ml-1m")
    assert [p.name for p in paths] == ["retrieval-ml-1m.md", "retrieval-ml-1m.json", "retrieval-ml-1m.png"]
    data = json.loads(paths[1].read_text())
    assert (
        data["models"]["a"]["HR@10"] == 0.30000000000000004 or abs(data["models"]["a"]["HR@10"] - 0.3) < 1e-12
    )
    assert abs(data["std"]["a"]["HR@10"] - 0.1) < 1e-12
    assert data["train_seconds"] == {"a": 2.0, "b": 0.5}
    assert {"command", "commit", "machine", "dataset", "protocol"} <= set(data)
    table = paths[0].read_text()
    assert "| a | 0.3000 ± 0.1000 | 0.1000 ± 0.0000 | 2.0 |" in table
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_records_training_curves(tmp_path: Path) -> None:
    report = EvalReport("tandem eval", "ml-100k", "leave-last-out", ("NDCG@10",), users=5, seeds=[0])
    history = [
        {"epoch": 1.0, "train_loss": 3.0, "val_NDCG@10": 0.05},
        {"epoch": 2.0, "train_loss": 2.5, "val_NDCG@10": 0.07},
    ]
    report.add("hstu", {"NDCG@10": 0.07}, 10.0, {"seed": 0, "epochs": 2, "best_epoch": 2, "history": history})
    report.add("popularity", {"NDCG@10": 0.02}, 0.0)
    paths = report.write(tmp_path / "retrieval-ml-100k")
    assert paths[-1].name == "retrieval-ml-100k-curves.png"
    assert paths[-1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(paths[1].read_text())
    assert data["training"]["hstu"][0]["best_epoch"] == 2
    assert data["training"]["hstu"][0]["history"][1]["val_NDCG@10"] == 0.07
    assert "popularity" not in data["training"]
    assert "Epochs, hstu: seed 0: best 2 of 2" in paths[0].read_text()


def test_carried_rows_join_fresh_ones(tmp_path: Path) -> None:
    first = EvalReport(
        "tandem eval --model a --model b", "ml-100k", "leave-last-out", ("MRR",), users=4, seeds=[0]
    )
    first.add("a", {"MRR": 0.1}, 1.0)
    first.add("b", {"MRR": 0.2}, 2.0, {"seed": 0, "epochs": 1, "best_epoch": 1, "history": []})
    earlier = json.loads(first.write(tmp_path / "r")[1].read_text())
    second = EvalReport(
        "tandem eval --model b --append", "ml-100k", "leave-last-out", ("MRR",), users=4, seeds=[0]
    )
    second.carry_from(earlier, ["b"])
    second.add("b", {"MRR": 0.3}, 3.0)
    data = second.as_json()
    assert data["models"] == {"a": {"MRR": 0.1}, "b": {"MRR": 0.3}}
    assert data["train_seconds"] == {"a": 1.0, "b": 3.0}
    assert "carried from an earlier run" in second.markdown()


def test_carry_refuses_a_different_run() -> None:
    report = EvalReport("tandem eval", "ml-100k", "leave-last-out", ("MRR",), users=4, seeds=[0, 1])
    earlier = {"dataset": "ml-100k", "protocol": "leave-last-out", "seeds": [0], "users": 4, "models": {}}
    with pytest.raises(ValueError, match="seeds"):
        report.carry_from(earlier, [])


def test_epochs_line_shows_the_time_to_the_best_epoch_and_the_continuation(tmp_path: Path) -> None:
    report = EvalReport("tandem eval", "ml-1m", "leave-last-out", ("NDCG@10",), users=5, seeds=[0])
    history = [
        {"epoch": float(e), "train_loss": 3.0 - e / 10, "epoch_seconds": 10.0, "val_NDCG@10": v}
        for e, v in ((1, 0.05), (2, 0.08), (3, 0.07))
    ]
    continued = [{"epoch": 1.0, "train_loss": 2.6, "epoch_seconds": 11.0}]
    run = {"seed": 0, "epochs": 3, "best_epoch": 2, "history": history, "continued": continued}
    report.add("session_encoder", {"NDCG@10": 0.08}, 41.0, run)
    table = report.write(tmp_path / "r")[0].read_text()
    assert "seed 0: best 2 of 3 (20 s to reach it), then 1 on train + valid" in table
