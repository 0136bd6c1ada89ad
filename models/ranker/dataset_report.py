"""The ranking report of one dataset: every variant trained and evaluated on the same candidates, written
as ranking-<name>.{json,md,png} (``tandem eval --stage ranker`` calls ``evaluate_dataset``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from models.data.datasets import DEFAULT_CACHE_DIR, open_dataset
from models.ranker.config import preset
from models.ranker.evaluate import VARIANTS, evaluate_ranker
from models.ranker.report import write_report
from models.ranker.retrieval import CandidateRetriever
from models.reporting.files import DEFAULT_RESULTS_DIR


def evaluate_dataset(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    results_dir: str | Path = DEFAULT_RESULTS_DIR,
    preset_name: str = "quick",
    epochs: int = 3,
    max_train_requests: int = 4000,
    eval_candidates: int = 100,
    variants: tuple[str, ...] = tuple(VARIANTS),
    retriever: CandidateRetriever | None = None,
    command: str = "",
) -> dict[str, Path]:
    """Entry point for ``tandem eval --stage ranker``: trains the variants on ``name`` and writes
    ranking-<name>.{json,md,png} into ``results_dir``. ``retriever`` = any frozen candidate source (default:
    the co-occurrence item-kNN fitted before the split)."""
    model_config, train_config = preset(preset_name)
    train_config = replace(train_config, epochs=epochs, max_train_requests=max_train_requests)
    torch.set_num_threads(train_config.threads)
    dataset = open_dataset(name, data_dir, cache_dir)
    report = evaluate_ranker(dataset, model_config, train_config, variants, retriever, eval_candidates)
    return write_report(report, Path(results_dir), command or f"tandem eval --stage ranker --dataset {name}")
