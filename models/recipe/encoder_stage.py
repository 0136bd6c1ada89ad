"""The encoder stage: the session encoder (the preset and its variants, each with the same epoch budget),
kept by NDCG@10 on the ranker period's targets; its ANN source and user vectors."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from models.candidates.sources import AnnSource
from models.data.schema import Dataset
from models.protocols import EvalTask
from models.recipe.periods import PipelinePeriods
from models.recipe.settings import RecipeSettings
from models.recipe.variants import best_variant


def encoder_configs(settings: RecipeSettings, seed: int) -> tuple[Any, Any]:
    """(EncoderConfig, TrainConfig) of the replay's session encoder: the preset, the budget, the overrides."""
    from models.encoder.config import EncoderConfig
    from models.train.presets import preset

    model_config, train = preset(settings.encoder_preset, "session_encoder")
    train = replace(
        train,
        seed=seed,
        progress=settings.progress,
        epochs=settings.encoder_epochs,
        max_minutes=settings.encoder_max_minutes,
        threads=settings.threads,
        patience=settings.encoder_patience,
    )
    train_fields = set(vars(train))
    values = settings.encoder_overrides
    train = replace(train, **{k: v for k, v in values.items() if k in train_fields})
    model_config = EncoderConfig.from_dict(
        {**model_config.to_dict(), **{k: v for k, v in values.items() if k not in train_fields}}
    )
    return model_config, train


@dataclass(frozen=True)
class EncoderChoice:
    """The encoder kept among the variants (``RecipeSettings.encoder_variants``) and what each scored:
    ``tried`` holds per variant its overrides, best validation NDCG@10, best epoch, seconds and whether it
    was kept."""

    result: Any  # models.train.fit.FitResult of the kept variant
    overrides: dict[str, Any]  # encoder_overrides with the kept variant applied
    tried: list[dict[str, Any]]


def train_encoder_variants(
    dataset: Dataset, periods: PipelinePeriods, settings: RecipeSettings, seed: int
) -> EncoderChoice:
    """Trains the preset and every variant with the same budget and validation targets and keeps the one
    with the best validation NDCG@10 (the score its own early stopping kept).

    With ``settings.variant_processes`` > 1 the variants train side by side in spawned processes, one
    thread each: each variant seeds its own generators, so they are the models a sequential run trains
    (tested), in about half the wall time on two idle cores."""
    variants = [dict(settings.encoder_overrides)]
    variants += [{**settings.encoder_overrides, **variant} for variant in settings.encoder_variants]
    runs = [
        replace(settings, encoder_overrides=overrides, progress=settings.progress and position == 0)
        for position, overrides in enumerate(variants)
    ]
    processes = min(settings.variant_processes, len(runs))
    if processes > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            outcomes = list(pool.map(_timed_variant, [(dataset, periods, run, seed) for run in runs]))
    else:
        outcomes = [_timed_variant((dataset, periods, run, seed)) for run in runs]
    tried = [
        {
            "overrides": overrides,
            "valid_NDCG@10": float(result.state.best_score),
            "best_epoch": result.state.best_epoch,
            "epochs": result.state.epoch,
            "stopped_by": result.state.stopped_by,
            "seconds": round(seconds, 1),
        }
        for overrides, (result, seconds) in zip(variants, outcomes, strict=True)
    ]
    index = best_variant([row["valid_NDCG@10"] for row in tried])
    for position, row in enumerate(tried):
        row["kept"] = position == index
    return EncoderChoice(outcomes[index][0], variants[index], tried)


def _timed_variant(job: tuple[Dataset, PipelinePeriods, RecipeSettings, int]) -> tuple[Any, float]:
    """(FitResult, seconds) of one variant; runs in a worker process or in this one."""
    dataset, periods, settings, seed = job
    torch.set_num_threads(settings.threads)
    started = time.perf_counter()
    result = train_encoder(dataset, periods, settings, seed)
    return result, time.perf_counter() - started


def train_encoder(dataset: Dataset, periods: PipelinePeriods, settings: RecipeSettings, seed: int) -> Any:
    from models.train.fit import fit_encoder, next_item_cases, subsample

    model_config, train = encoder_configs(settings, seed)
    fit_events = periods.fit_events(dataset)
    valid = next_item_cases(dataset, fit_events, dataset.events.take(np.sort(periods.ranker_target_rows)))
    cases = subsample(valid, settings.encoder_valid_users, seed)
    return fit_encoder(
        dataset, fit_events, model_config, train, cases, valid_exclude_history=periods.exclude_seen
    )


def user_vectors(result: Any, task: EvalTask) -> np.ndarray:
    from models.encoder.serving import encode_histories

    if len(task) == 0:  # an empty ranker period
        return np.zeros((0, result.model.config.dim), dtype=np.float32)
    return encode_histories(result.model, result.item_category, task.histories, task.contexts)


def ann_source(result: Any) -> AnnSource:
    from models.index.builder import build_index

    return AnnSource(build_index(item_vectors(result), "flat"))


def item_vectors(result: Any) -> np.ndarray:
    """The encoder's item vectors [num_items, d] float32 (what its index searches)."""
    with torch.inference_mode():
        return result.model.item_vectors().float().numpy()
