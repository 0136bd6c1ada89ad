"""Training loop for the retrieval encoder: sampled softmax with a shared pool, validation each epoch,
early stopping on validation NDCG@10, checkpoints that resume, and incremental runs from given weights."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from models.encoder.model import RetrievalEncoder, to_tensors
from models.train.data import LayoutStore, PaddedBatch
from models.train.examples import build_targets, item_token_targets
from models.train.losses import (
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
    patience: int = 3  # epochs without a better validation NDCG@10 before stopping (0 = never stop)
    min_epochs: int = 3  # early stopping never fires before this many epochs
    seed: int = 0
    threads: int = 2
    max_minutes: float = 0.0  # wall-clock budget for the loop (0 = none); no epoch starts that would overrun
    min_target_ts: int = 0  # incremental runs: supervise only targets at or after this time
    progress: bool = True


@dataclass
class TrainState:
    epoch: int = 0
    best_epoch: int = 0
    best_score: float = float("-inf")
    best_loss: float = float("inf")
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0


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
    targets = build_targets(batch.tokens, config.is_session, config.max_items_per_session)
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
    pool = sample_pool(
        targets.items[targets.items > 0], item_prob, train.n_inbatch, train.n_uniform, config.num_items, rng
    )
    n_b = train.n_inbatch if (targets.items > 0).any() else 0

    def nce(rows_hidden: torch.Tensor, head: int, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        query = model.query_vectors(rows_hidden, head)
        log_m = log_multiplicity(items, item_prob, n_b, train.n_uniform, config.num_items)
        loss, valid = sampled_softmax(query, items, log_m, item_vectors, pool, config.temperature, train.logq)
        return mean_over_valid(loss, valid), query

    per_query, query = nce(query_hidden, 0, positives)
    if config.is_session:
        scores = (query.unsqueeze(1) * item_vectors[positives]).sum(-1) / config.temperature
        levels = torch.as_tensor(targets.levels)
        click, _ = listwise_funnel_loss(scores, levels, min_level=2)
        pay, _ = listwise_funnel_loss(scores, levels, min_level=3)
        per_query = per_query + config.click_weight * click + config.pay_weight * pay
        if config.msp_horizon > 1 and (targets.next_items > 0).any():
            next_loss, _ = nce(query_hidden, 1, torch.as_tensor(targets.next_items))
            per_query = per_query + config.msp_weight * next_loss
    loss = scene_normalised_sum(per_query, torch.as_tensor(targets.scene)) + aux
    if config.is_session and config.item_query_weight > 0:
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
        model.parameters(), lr=train.learning_rate, betas=train.betas, weight_decay=train.weight_decay
    )


def improved(record: dict[str, float], state: TrainState) -> bool:
    """Is this epoch the best so far? Higher validation NDCG@10 wins; an equal score (a flat zero early
    on, say) goes to the lower training loss, so a model still learning is never judged stuck. Without
    validation, the lower training loss wins."""
    score = record.get("val_NDCG@10", -record["train_loss"])
    if score > state.best_score + 1e-12:
        return True
    return abs(score - state.best_score) <= 1e-12 and record["train_loss"] < state.best_loss


def should_stop(epoch: int, best_epoch: int, train: TrainConfig) -> bool:
    """Patience ran out since the best epoch, and at least ``train.min_epochs`` epochs have run."""
    return bool(train.patience) and epoch >= train.min_epochs and epoch - best_epoch >= train.patience


def train_encoder(
    model: RetrievalEncoder,
    store: LayoutStore,
    item_prob: torch.Tensor,
    item_category: np.ndarray,
    train: TrainConfig,
    validate: ValidateFn | None = None,
    checkpoint_path: Path | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainState:
    """Train in place; on return ``model`` holds the best-validation weights (or the last ones without
    validation). ``resume``: a loaded checkpoint dict to continue (optimizer, epoch, history)."""
    torch.set_num_threads(train.threads)  # deliberate: the machine is small and shared
    torch.manual_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    optimizer = make_optimizer(model, train)
    state = TrainState()
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        state = TrainState(**resume.get("state", {"epoch": resume.get("epoch", 0)}))
        # continue the random streams where an uninterrupted run would be, as closely as cheaply possible
        torch.manual_seed(train.seed + state.epoch)
        rng = np.random.default_rng([train.seed, state.epoch])
    best_state = copy.deepcopy((resume or {}).get("best_state_dict") or model.state_dict())
    started = time.perf_counter()
    for epoch in range(state.epoch + 1, train.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        total, count = 0.0, 0
        steps = tqdm(
            store.batches(train.batch_size, rng),
            total=(len(store) + train.batch_size - 1) // train.batch_size,
            desc=f"{model.config.kind} epoch {epoch}/{train.epochs}",
            disable=not train.progress,
            leave=False,
        )
        for batch in steps:
            loss, queries = batch_loss(model, batch, item_prob, train, rng)
            if queries == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
            steps.set_postfix(loss=f"{total / count:.4f}")
        record = {"epoch": float(epoch), "train_loss": total / max(count, 1)}
        record["epoch_seconds"] = time.perf_counter() - epoch_start
        if validate is not None:
            record.update({f"val_{k}": v for k, v in validate(model).items()})
        state.epoch = epoch
        state.history.append(record)
        state.train_seconds += record["epoch_seconds"]
        if improved(record, state):
            state.best_epoch = epoch
            state.best_score = record.get("val_NDCG@10", -record["train_loss"])
            state.best_loss = record["train_loss"]
            best_state = copy.deepcopy(model.state_dict())
        if train.progress:
            shown = {k: round(v, 4) for k, v in record.items() if k != "epoch"}
            tqdm.write(f"{model.config.kind} epoch {epoch}: {shown}")
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, model, optimizer, state, train, item_category, best_state)
        if should_stop(epoch, state.best_epoch, train):
            break
        # stop when another epoch like the last one would overrun the wall-clock budget
        elapsed = time.perf_counter() - started
        if train.max_minutes and elapsed + record["epoch_seconds"] > train.max_minutes * 60:
            break
    model.load_state_dict(best_state)
    model.eval()
    return state
