"""Registry factories for ``tandem eval`` (``models.evaluate.registry``): train an encoder under the
protocol's split, then score the whole catalogue with the serving path (``encode_histories``).

Size and budget come in ``FitInput.encoder`` (``EncoderBudget``, set from ``tandem eval``'s
``--encoder-preset``, ``--encoder-epochs``, ``--encoder-minutes`` and ``--encoder-overrides``, a JSON
object of ``EncoderConfig`` / ``TrainConfig`` fields such as ``{"max_items_per_session": 4}``).
Training uses the split's train part only: validation targets are held out for early stopping; then,
with ``EncoderBudget.continue_epochs`` (``--continue-epochs``), the chosen model trains that many more epochs
on train + valid before the test, the events the baselines are fitted on.
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from models.encoder.config import EncoderConfig
from models.scorer import FitInput, Scorer
from models.train.fit import FitResult, continue_fit, fit_encoder, next_item_cases, subsample
from models.train.presets import preset
from models.train.trainer import TrainConfig
from models.types import RequestContext, UserHistory


class EncoderScorer:
    def __init__(self, result: FitResult) -> None:
        self.result = result
        state = result.state
        # read by the eval report: epochs run, best epoch and the per-epoch curve
        self.training = {"epochs": state.epoch, "best_epoch": state.best_epoch, "history": state.history}
        if result.continued:  # the epochs on train + valid after the choice (``continue_fit``)
            self.training["continued"] = result.continued
        with torch.inference_mode():
            self.items = result.model.item_vectors().float().numpy()

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        from models.encoder.serving import encode_histories

        users = encode_histories(self.result.model, self.result.item_category, histories, contexts)
        return (users @ self.items.T).astype(np.float32)


def parse_overrides(text: str) -> dict[str, Any]:
    """``--encoder-overrides`` text -> a dict (empty text -> {}); anything but a JSON object is an error."""
    values: Any = json.loads(text) if text.strip() else {}
    if not isinstance(values, dict):
        raise ValueError("--encoder-overrides must be a JSON object")
    return values


def apply_overrides(
    model: EncoderConfig, train: TrainConfig, values: dict[str, Any]
) -> tuple[EncoderConfig, TrainConfig]:
    """Apply field overrides to the two configs; unknown fields are an error."""
    model_fields = {f.name for f in fields(EncoderConfig)}
    train_fields = {f.name for f in fields(TrainConfig)}
    unknown = set(values) - model_fields - train_fields
    if unknown:
        raise ValueError(f"--encoder-overrides: unknown fields {sorted(unknown)}")
    model = EncoderConfig.from_dict(
        {**model.to_dict(), **{k: v for k, v in values.items() if k in model_fields}}
    )
    train = replace(train, **{k: v for k, v in values.items() if k in train_fields})
    return model, train


def _fit(kind: str, fit: FitInput, **fixed: float) -> Scorer:
    budget = fit.encoder
    model_config, train = preset(budget.preset, kind)
    model_config = replace(model_config, **fixed)  # type: ignore[arg-type]
    overrides: dict[str, float | int | bool] = {"seed": fit.seed, "progress": False}
    if budget.epochs is not None:
        overrides["epochs"] = budget.epochs
    if budget.max_minutes is not None:
        overrides["max_minutes"] = budget.max_minutes
    train = replace(train, **overrides)  # type: ignore[arg-type]
    model_config, train = apply_overrides(model_config, train, budget.overrides)
    if not model_config.is_session:
        model_config = replace(model_config, max_tokens=fit.max_history)
    dataset, split = fit.dataset, fit.split
    train_events = dataset.events.take(split.train)
    valid = next_item_cases(dataset, train_events, dataset.events.take(split.valid))
    cases = subsample(valid, budget.valid_users, fit.seed)
    # validation scored like the test: history items excluded when the test excludes them
    exclude = fit.protocol == "leave-last-out" if fit.exclude_seen is None else fit.exclude_seen
    result = fit_encoder(dataset, train_events, model_config, train, cases, valid_exclude_history=exclude)
    continue_fit(result, dataset, dataset.events.take(split.trainable), train, budget.continue_epochs)
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
