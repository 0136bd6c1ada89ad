"""Registry factories for ``tandem eval`` (``models.evaluate.registry``): train an encoder under the
protocol's split, then score the whole catalogue with the serving path (``encode_histories``).

Size and budget: ``TANDEM_ENCODER_PRESET`` (tiny | quick | default, default ``default``),
``TANDEM_ENCODER_EPOCHS`` and ``TANDEM_ENCODER_MAX_MINUTES`` (per model and seed) override the preset;
``TANDEM_ENCODER_OVERRIDES`` (a JSON object of ``EncoderConfig`` / ``TrainConfig`` fields, for ablations)
overrides any other field, e.g. ``{"max_items_per_session": 4, "temperature": 0.05}``.
Training uses the split's train part only: validation targets are held out for early stopping.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from models.encoder.config import EncoderConfig
from models.evaluate.scorer import FitInput, Scorer
from models.inference import RequestContext, UserHistory
from models.train.fit import FitResult, fit_encoder, next_item_cases, subsample
from models.train.presets import preset
from models.train.trainer import TrainConfig


class EncoderScorer:
    def __init__(self, result: FitResult) -> None:
        self.result = result
        state = result.state
        # read by the eval report: epochs run, best epoch and the per-epoch curve
        self.training = {"epochs": state.epoch, "best_epoch": state.best_epoch, "history": state.history}
        with torch.inference_mode():
            self.items = result.model.item_vectors().float().numpy()

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        from models.encoder.serving import encode_histories

        users = encode_histories(self.result.model, self.result.item_category, histories, contexts)
        return (users @ self.items.T).astype(np.float32)


def apply_overrides(model: EncoderConfig, train: TrainConfig, text: str) -> tuple[EncoderConfig, TrainConfig]:
    """Apply a JSON object of field overrides to the two configs; unknown fields are an error."""
    values: dict[str, Any] = json.loads(text) if text.strip() else {}
    if not isinstance(values, dict):
        raise ValueError("TANDEM_ENCODER_OVERRIDES must be a JSON object")
    model_fields = {f.name for f in fields(EncoderConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - model_fields - train_fields
    if unknown:
        raise ValueError(f"TANDEM_ENCODER_OVERRIDES: unknown fields {sorted(unknown)}")
    model = EncoderConfig.from_dict(
        {**model.to_dict(), **{k: v for k, v in values.items() if k in model_fields}}
    )
    train = replace(train, **{k: v for k, v in values.items() if k in train_fields})
    return model, train


def _fit(kind: str, fit: FitInput, **fixed: float) -> Scorer:
    model_config, train = preset(os.environ.get("TANDEM_ENCODER_PRESET", "default"), kind)
    model_config = replace(model_config, **fixed)  # type: ignore[arg-type]
    overrides: dict[str, float | int | bool] = {"seed": fit.seed, "progress": False}
    if os.environ.get("TANDEM_ENCODER_EPOCHS"):
        overrides["epochs"] = int(os.environ["TANDEM_ENCODER_EPOCHS"])
    if os.environ.get("TANDEM_ENCODER_MAX_MINUTES"):
        overrides["max_minutes"] = float(os.environ["TANDEM_ENCODER_MAX_MINUTES"])
    train = replace(train, **overrides)  # type: ignore[arg-type]
    model_config, train = apply_overrides(model_config, train, os.environ.get("TANDEM_ENCODER_OVERRIDES", ""))
    if not model_config.is_session:
        model_config = replace(model_config, max_tokens=fit.max_history)
    dataset, split = fit.dataset, fit.split
    train_events = dataset.events.take(split.train)
    valid = next_item_cases(dataset, train_events, dataset.events.take(split.valid))
    result = fit_encoder(dataset, train_events, model_config, train, subsample(valid, 1000, fit.seed))
    return EncoderScorer(result)


def build_session_encoder(fit: FitInput) -> Scorer:
    return _fit("session_encoder", fit)


def build_hstu(fit: FitInput) -> Scorer:
    return _fit("hstu", fit)


def build_hstu_tau02(fit: FitInput) -> Scorer:
    """Causal HSTU at the session encoder's temperature (0.2) instead of the reference 0.05: separates
    what the temperature buys from what the session layout buys."""
    return _fit("hstu", fit, temperature=0.2)


def build_sasrec(fit: FitInput) -> Scorer:
    return _fit("sasrec", fit)
