"""The ranker the first ``make serve`` bundles: the ``quick`` preset trained on a dataset
(``models.pipeline`` finds ``train_quick`` as the ranker stage's trainer)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from models.data.schema import Dataset
from models.ranker.config import preset
from models.ranker.evaluate import encode_sources, fit_variant, prepare_experiment
from models.ranker.retrieval import CandidateRetriever, EncoderRetriever
from models.ranker.serving import save_ranker


def train_quick(
    dataset: Dataset, out_dir: Path, encoder_path: Path | None = None
) -> tuple[Path, dict[str, Any]]:
    """The ``quick`` preset for the first ``make serve`` (models.pipeline): trains on ``dataset`` with the
    bundle's own encoder as the frozen candidate source when there is one (the co-occurrence item-kNN
    otherwise) and writes ``out_dir/ranker.pt``. Returns the path and the training log."""
    model_config, train_config = preset("quick")
    torch.set_num_threads(train_config.threads)
    retriever: CandidateRetriever | None = None
    if encoder_path is not None:
        from models.encoder.serving import load_user_encoder

        exclude_seen = dataset.funnel.rating_thresholds is not None  # a film is rated once
        retriever = EncoderRetriever(load_user_encoder(encoder_path), exclude_seen=exclude_seen)
    started = time.perf_counter()
    experiment, _ = prepare_experiment(dataset, model_config, train_config, retriever)
    model, log = fit_variant(experiment, model_config, train_config)
    path = save_ranker(
        Path(out_dir) / "ranker.pt",
        model,
        encode_sources(experiment, model_config),
        dataset.funnel,
        f"ranker-{dataset.name}",
    )
    seconds = time.perf_counter() - started
    source = "encoder" if encoder_path is not None else "cooccurrence"
    return path, {
        "train_seconds": round(seconds, 1),
        "retriever": source,
        "epochs": log,
    }
