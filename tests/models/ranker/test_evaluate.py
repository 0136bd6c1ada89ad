import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from models.data.builder import SessionConfig
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.ranker.config import preset
from models.ranker.evaluate import evaluate_ranker
from models.ranker.report import write_report


def test_evaluate_ranker_reports_every_variant_on_the_same_candidates(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = generate_synthetic(
            SyntheticConfig(num_users=80, num_items=120, num_events=4000, num_clusters=6, days=20.0, seed=1),
            SessionConfig(),
        )
        config, train_config = preset("tiny")
        train_config = dataclasses.replace(train_config, epochs=1)
        report = evaluate_ranker(
            dataset, config, train_config, ["onepiece", "group_size_1"], eval_candidates=30, progress=False
        )
    finally:
        torch.set_num_threads(threads)
    assert set(report["models"]) == {"retrieval_order", "onepiece", "group_size_1"}
    assert report["counts"]["test_requests"] > 0 and report["counts"]["train_requests"] > 0
    for metrics in report["models"].values():
        assert 0.0 <= metrics["NDCG@10"] <= 1.0
        assert {"AUC[view]", "GAUC[cart]", "AUC[purchase]"} <= set(metrics)
    paths = write_report(report, tmp_path, "test")
    assert (
        json.loads(paths["json"].read_text())["models"]["retrieval_order"]["HR@10"]
        == report["models"]["retrieval_order"]["HR@10"]
    )
    assert paths["png"].stat().st_size > 0 and "| onepiece |" in paths["md"].read_text()
    assert np.isfinite(report["models"]["onepiece"]["MRR"])
