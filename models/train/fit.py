"""One call from a dataset + training events to a trained encoder (used by the CLI and the eval harness)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data.schema import Dataset, EventTable
from models.encoder.config import EncoderConfig
from models.encoder.model import RetrievalEncoder
from models.encoder.serving import load_encoder_checkpoint
from models.train.data import (
    LayoutStore,
    encoder_config_for,
    histories_by_user,
    item_categories,
    target_probabilities,
)
from models.train.distributed import DistContext
from models.train.loop import TrainState
from models.train.trainer import TrainConfig, train_encoder
from models.train.validation import NextItemCases, rank_metrics, target_ranks
from models.types import RequestContext

# leave-last-out validation excludes the items of the last 200 history events, as the test does
# (``tandem eval --max-history``), whatever the layout holds: it used to be ``max_tokens``, which made
# the validation of a one-token-per-rating layout stricter than that of the two-token one
VALID_EXCLUDE_WINDOW = 200


@dataclass
class FitResult:
    model: RetrievalEncoder
    state: TrainState
    item_category: np.ndarray
    continued: list[dict[str, float]] = field(default_factory=list)  # epochs of ``continue_fit``


def next_item_cases(dataset: Dataset, history_events: EventTable, target_events: EventTable) -> NextItemCases:
    """For each user with a target event: history = their ``history_events``, target = their first
    ``target_events`` row, request = that event's time/scene/device."""
    histories = histories_by_user(history_events, dataset)
    users, first = np.unique(target_events.user, return_index=True)
    chosen = [(int(u), int(i)) for u, i in zip(users, first, strict=True) if int(u) in histories]
    return NextItemCases(
        histories=[histories[u] for u, _ in chosen],
        targets=np.array([target_events.item[i] for _, i in chosen], dtype=np.int64),
        contexts=[
            RequestContext(
                timestamp=int(target_events.timestamp[i]),
                scene=int(target_events.scene[i]),
                device=int(target_events.device[i]),
            )
            for _, i in chosen
        ],
    )


def subsample(cases: NextItemCases, limit: int, seed: int) -> NextItemCases:
    if len(cases.targets) <= limit:
        return cases
    keep = np.sort(np.random.default_rng(seed).choice(len(cases.targets), limit, replace=False))
    return NextItemCases(
        [cases.histories[i] for i in keep], cases.targets[keep], [cases.contexts[i] for i in keep]
    )


def same_layout(config: EncoderConfig, source: EncoderConfig) -> EncoderConfig:
    """``config`` with the token layout of the encoder it continues (incremental training): whether
    context is folded into item tokens and the token count follow ``source``, so a checkpoint saved with
    the two-token layout keeps training and serving with it."""
    if not (config.is_session and source.is_session):
        return config
    values = config.to_dict()
    values.update(fold_context=source.fold_context, max_tokens=source.max_tokens)
    values.update(max_items_per_session=source.max_items_per_session)
    return EncoderConfig.from_dict(values)


def initialise_from(model: RetrievalEncoder, source: Path | str) -> None:
    """Incremental training: copy weights from a checkpoint or bundle. The item table may have grown
    (new items keep their fresh initialisation); every other tensor must match in shape."""
    previous, _ = load_encoder_checkpoint(source)
    if previous.config.kind != model.config.kind:
        raise ValueError(f"{source}: encoder kind {previous.config.kind!r} != {model.config.kind!r}")
    own = model.state_dict()
    for name, tensor in previous.state_dict().items():
        if name == "item_category":
            continue  # categories come from the current dataset (fit_encoder sets them)
        if name not in own:
            raise ValueError(f"{source}: unexpected tensor {name}")
        if own[name].shape == tensor.shape:
            own[name] = tensor
        elif name == "embed.item.weight" and tensor.shape[0] <= own[name].shape[0]:
            own[name][: tensor.shape[0]] = tensor
        else:
            raise ValueError(
                f"{source}: {name} has shape {tuple(tensor.shape)}, model has {tuple(own[name].shape)}"
            )
    model.load_state_dict(own)


def fit_encoder(
    dataset: Dataset,
    train_events: EventTable,
    base_config: EncoderConfig,
    train: TrainConfig,
    valid_cases: NextItemCases | None = None,
    init_from: Path | str | None = None,
    checkpoint_path: Path | None = None,
    resume: dict[str, Any] | None = None,
    valid_exclude_history: bool = True,
    context: DistContext | None = None,
) -> FitResult:
    """Trains an encoder on ``train_events``; ``valid_cases`` (if any) pick the epoch, scored as the test
    protocol does: history items excluded (leave-last-out) or not (``valid_exclude_history=False``,
    next-session). ``context``: data-parallel over several processes (``models.train.distributed``)."""
    torch.set_num_threads(train.threads)
    torch.manual_seed(train.seed)
    config = EncoderConfig.from_dict(resume["config"]) if resume else encoder_config_for(dataset, base_config)
    if resume is None and init_from is not None:
        config = same_layout(config, load_encoder_checkpoint(init_from)[0].config)
    model = RetrievalEncoder(config)
    if resume is not None:
        model.load_state_dict(resume["state_dict"])
    elif init_from is not None:
        initialise_from(model, init_from)
    item_category = item_categories(dataset)
    model.set_item_category(item_category)
    store = LayoutStore(histories_by_user(train_events, dataset), config, item_category)
    item_prob = target_probabilities(train_events, config.num_items)
    validate = None
    if valid_cases is not None and len(valid_cases.targets):
        cases = valid_cases

        def validate(m: RetrievalEncoder) -> dict[str, float]:
            window = VALID_EXCLUDE_WINDOW if valid_exclude_history else 0
            ranks = target_ranks(m, item_category, cases, exclude_window=window)
            return rank_metrics(ranks, cutoffs=(10, 50))

    state = train_encoder(
        model, store, item_prob, item_category, train, validate, checkpoint_path, resume, context
    )
    return FitResult(model, state, item_category)


def continue_fit(
    result: FitResult, dataset: Dataset, events: EventTable, train: TrainConfig, epochs: int
) -> FitResult:
    """Once validation has chosen the epoch, ``epochs`` more epochs on ``events`` (the training and the
    validation periods together, what the baselines are fitted on) before testing or serving; without a
    validation the loop keeps the epoch of lowest training loss (normally the last). The model in
    ``result`` is trained in place; the extra epochs are recorded in ``result.continued``."""
    if epochs <= 0:
        return result
    config = result.model.config
    store = LayoutStore(histories_by_user(events, dataset), config, result.item_category)
    item_prob = target_probabilities(events, config.num_items)
    # the continued epochs train the kept weights as they are, without averaging them
    more = replace(train, epochs=epochs, patience=0, max_minutes=0.0, seed=train.seed + 1, weight_average=0.0)
    state = train_encoder(result.model, store, item_prob, result.item_category, more)
    result.continued = state.history
    return result
