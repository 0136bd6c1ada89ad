"""Training the retrieval encoder: sampled softmax with a shared pool, one optimizer step per padded batch,
checkpoints that resume, and incremental runs from given weights. Epochs, validation, early stopping and
the time budget are the shared loop's (``models.train.loop``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.encoder.model import RetrievalEncoder, to_tensors
from models.train.data import LayoutStore, PaddedBatch
from models.train.distributed import (
    DistContext,
    average_gradients,
    leader_decides,
    mean_over_ranks,
    rank_batches,
)
from models.train.examples import build_targets, item_token_targets
from models.train.loop import LoopSettings, TrainState, Weights, run_epochs
from models.train.losses import (
    catalogue_pool,
    listwise_funnel_loss,
    log_multiplicity,
    mean_over_valid,
    sample_pool,
    sampled_softmax,
    scene_normalised_sum,
)


@dataclass
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    n_inbatch: int = 512
    n_uniform: int = 512
    logq: str = "corrected"
    # catalogues of at most this many items are scored in full (softmax over every item, no sampling, no
    # logQ correction) instead of against the sampled pool; 0 = always sample
    full_softmax_items: int = 0
    # per-step decay of a moving average of the weights, which is validated and kept (0 = off)
    weight_average: float = 0.0
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping (0 = never stop)
    min_epochs: int = 3  # early stopping never fires before this many epochs
    seed: int = 0
    threads: int = 2
    max_minutes: float = 0.0  # wall-clock budget for the loop (0 = none); no epoch starts that would overrun
    min_target_ts: int = 0  # incremental runs: supervise only targets at or after this time
    progress: bool = True


ValidateFn = Callable[[RetrievalEncoder], dict[str, float]]


def batch_loss(
    model: RetrievalEncoder,
    batch: PaddedBatch,
    item_prob: torch.Tensor,
    train: TrainConfig,
    rng: np.random.Generator,
) -> tuple[torch.Tensor, int]:
    """Loss of one padded batch and its number of queries (models.md 1.7, 2.3)."""
    config = model.config
    targets = build_targets(batch.tokens, config.is_session, config.max_items_per_session, config.folded)
    if train.min_target_ts:
        keep = batch.tokens["query_ts"][targets.rows, targets.cols] >= train.min_target_ts
        for name in ("rows", "cols", "items", "levels", "next_items", "scene"):
            setattr(targets, name, getattr(targets, name)[keep])
    if len(targets.rows) == 0:
        return torch.zeros((), requires_grad=True), 0
    hidden, aux = model(to_tensors(batch.tokens), torch.as_tensor(batch.user_features))
    rows, cols = torch.as_tensor(targets.rows), torch.as_tensor(targets.cols)
    query_hidden = hidden[rows, cols]
    item_vectors = model.item_vectors()
    positives = torch.as_tensor(targets.items)
    full = 0 < config.num_items <= train.full_softmax_items
    if full:
        pool, n_b, n_u, logq = catalogue_pool(config.num_items), 0, 0, "none"
    else:
        pool = sample_pool(
            targets.items[targets.items > 0],
            item_prob,
            train.n_inbatch,
            train.n_uniform,
            config.num_items,
            rng,
        )
        n_b = train.n_inbatch if (targets.items > 0).any() else 0
        n_u, logq = train.n_uniform, train.logq

    def nce(rows_hidden: torch.Tensor, head: int, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query = model.query_vectors(rows_hidden, head)
        log_m = log_multiplicity(items, item_prob, n_b, n_u, config.num_items)
        loss, valid = sampled_softmax(query, items, log_m, item_vectors, pool, config.temperature, logq)
        return mean_over_valid(loss, valid), query

    per_query, query = nce(query_hidden, 0, positives)
    if config.is_session and positives.shape[1] > 1:
        # listwise funnel terms need a positive and a negative in one request: none with one item each
        scores = (query.unsqueeze(1) * item_vectors[positives]).sum(-1) / config.temperature
        levels = torch.as_tensor(targets.levels)
        click, _ = listwise_funnel_loss(scores, levels, min_level=2)
        pay, _ = listwise_funnel_loss(scores, levels, min_level=3)
        per_query = per_query + config.click_weight * click + config.pay_weight * pay
    if config.is_session and config.msp_horizon > 1 and (targets.next_items > 0).any():
        next_loss, _ = nce(query_hidden, 1, torch.as_tensor(targets.next_items))
        per_query = per_query + config.msp_weight * next_loss
    loss = scene_normalised_sum(per_query, torch.as_tensor(targets.scene)) + aux
    if config.is_session and not config.folded and config.item_query_weight > 0:
        dense = item_token_targets(batch.tokens, targets)
        if len(dense.rows):
            item_hidden = hidden[torch.as_tensor(dense.rows), torch.as_tensor(dense.cols)]
            dense_loss, _ = nce(item_hidden, 0, torch.as_tensor(dense.items))
            dense_scene = torch.as_tensor(dense.scene)
            loss = loss + config.item_query_weight * scene_normalised_sum(dense_loss, dense_scene)
    return loss, len(targets.rows)


def save_checkpoint(
    path: Path,
    model: RetrievalEncoder,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    train: TrainConfig,
    item_category: np.ndarray,
    best_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Resumable checkpoint: current weights + optimizer + loop state (+ the best weights so far)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "config": model.config.to_dict(),
            "state_dict": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "metrics": state.history[-1] if state.history else {},
            "state": asdict(state),
            "train_config": asdict(train),
            "item_category": np.asarray(item_category, dtype=np.int64),
            "version": f"{model.config.kind}-epoch{state.epoch}",
            "best_state_dict": best_state,
        },
        path,
    )


def make_optimizer(model: RetrievalEncoder, train: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(),
        lr=train.learning_rate,
        betas=train.betas,
        weight_decay=train.weight_decay,
        fused=True,  # one kernel for every tensor: about 1 ms a step less on a CPU
    )


def train_encoder(
    model: RetrievalEncoder,
    store: LayoutStore,
    item_prob: torch.Tensor,
    item_category: np.ndarray,
    train: TrainConfig,
    validate: ValidateFn | None = None,
    checkpoint_path: Path | None = None,
    resume: dict[str, Any] | None = None,
    context: DistContext | None = None,
) -> TrainState:
    """Train in place with the shared loop (``models.train.loop``); on return ``model`` holds the best
    epoch's weights. ``resume``: a loaded checkpoint dict to continue (optimizer, epoch, history).
    ``context``: data-parallel over several processes (``models.train.distributed``): the batch is split
    over the ranks, gradients averaged, validation and checkpoints on rank 0, threads shared."""
    context = context or DistContext()
    torch.set_num_threads(max(1, train.threads // context.world))  # the machine is small and shared
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed if not context.active else [train.seed, context.rank])
    optimizer = make_optimizer(model, train)
    state = TrainState()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        state = TrainState(**resume.get("state", {"epoch": resume.get("epoch", 0)}))
        # continue the random streams where an uninterrupted run would be, as closely as cheaply possible
        torch.manual_seed(train.seed + state.epoch)
        rng = np.random.default_rng([train.seed, state.epoch])

    def step(batch: PaddedBatch) -> float | None:
        loss, queries = batch_loss(model, batch, item_prob, train, rng)
        if context.active:  # every rank steps, with or without targets (else the others wait forever)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(model, context)
            optimizer.step()
            counted = mean_over_ranks(float(queries > 0), context)
            mean = mean_over_ranks(float(loss.detach()) if queries else 0.0, context)
            return mean / counted if counted > 0 else None
        if queries == 0:
            return None
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def save(state: TrainState, best: Weights) -> None:
        assert checkpoint_path is not None
        save_checkpoint(checkpoint_path, model, optimizer, state, train, item_category, best)

    settings = LoopSettings(
        epochs=train.epochs,
        patience=train.patience,
        min_epochs=train.min_epochs,
        max_minutes=0.0 if context.active else train.max_minutes,  # distributed: the epochs decide
        progress=train.progress and context.leader,
        label=model.config.kind,
        average_decay=train.weight_average,
    )

    def batches(epoch: int) -> Iterator[PaddedBatch]:
        if context.active:
            return rank_batches(store, train.batch_size, train.seed, epoch, context)
        return store.batches(train.batch_size, rng)

    return run_epochs(
        model,
        batches,
        step,
        settings,
        leader_decides(validate, context) if context.active else validate,
        state,
        (resume or {}).get("best_state_dict"),
        save if checkpoint_path is not None and context.leader else None,
        steps_per_epoch=(len(store) + train.batch_size - 1) // train.batch_size,
    )
