"""The one epoch loop behind every model the project trains (session encoder, causal baselines, ranker).

The caller brings what differs between models: the batches of an epoch, one optimizer step on a batch,
and optionally a validation. The loop owns what must not differ: the progress bar, one history record per
epoch, which epoch is best, when to stop, the wall-clock budget, the best weights restored at the end, and
continuing from a saved ``TrainState``.

Rules (the same for every model):
- best epoch: the higher validation ``monitor`` metric; an equal score (a flat zero early on, say) goes to
  the lower training loss, so a model still learning is never judged stuck. Without validation, the lower
  training loss.
- early stop: ``patience`` epochs since the best one, and never before ``min_epochs`` epochs.
- budget: no epoch starts when another one like the last would overrun ``max_minutes``.
- weight averaging (``average_decay`` > 0): an exponential moving average of the weights, updated after
  every counted step, is what each epoch is validated and judged on and what the best epoch keeps; the
  raw weights go on training.

History record per epoch: ``{"epoch", "train_loss", "epoch_seconds", "epoch_cpu_seconds", "val_<metric>"...}``
(floats; ``epoch_cpu_seconds`` is this process's CPU time, steadier than wall time on a shared machine).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from tqdm import tqdm

Weights = dict[str, torch.Tensor]
ModelT = TypeVar("ModelT", bound=torch.nn.Module)
BatchT = TypeVar("BatchT")

TIE = 1e-12  # scores closer than this are equal


@dataclass(frozen=True)
class LoopSettings:
    epochs: int
    patience: int = 3  # epochs without a better score before stopping (0 = never stop)
    min_epochs: int = 1  # early stopping never fires before this many epochs
    max_minutes: float = 0.0  # wall-clock budget of this call (0 = none)
    monitor: str = "NDCG@10"  # the validation metric that picks the best epoch
    progress: bool = True
    label: str = "model"  # names the progress bar and the per-epoch line
    average_decay: float = 0.0  # per-step decay of the weights' moving average (0 = off, raw weights)


@dataclass
class TrainState:
    """Where training stands; saved in checkpoints (``dataclasses.asdict``) and passed back to resume."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = float("-inf")
    best_loss: float = float("inf")
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    # why the last call stopped: "epochs" (its budget ran out), "patience" (early stopping) or
    # "max_minutes" (the wall-clock safety cap: the model then depends on the machine's load, say so)
    stopped_by: str = ""


def epoch_score(record: dict[str, float], monitor: str = "NDCG@10") -> float:
    """The validation ``monitor`` metric of an epoch, or minus its training loss without validation."""
    return record.get(f"val_{monitor}", -record["train_loss"])


def improved(record: dict[str, float], state: TrainState, monitor: str = "NDCG@10") -> bool:
    """Is this epoch better than ``state``'s best? Higher score wins; an equal score, lower training loss."""
    score = epoch_score(record, monitor)
    if score > state.best_score + TIE:
        return True
    return abs(score - state.best_score) <= TIE and record["train_loss"] < state.best_loss


def should_stop(epoch: int, best_epoch: int, settings: LoopSettings) -> bool:
    """Patience ran out since the best epoch, and at least ``settings.min_epochs`` epochs have run."""
    return (
        bool(settings.patience) and epoch >= settings.min_epochs and epoch - best_epoch >= settings.patience
    )


def run_epochs(
    model: ModelT,
    batches: Callable[[int], Iterable[BatchT]],
    step: Callable[[BatchT], float | None],
    settings: LoopSettings,
    validate: Callable[[ModelT], dict[str, float]] | None = None,
    state: TrainState | None = None,
    best_weights: Weights | None = None,
    after_epoch: Callable[[TrainState, Weights], None] | None = None,
    steps_per_epoch: int | None = None,
) -> TrainState:
    """Trains ``model`` in place from ``state.epoch + 1`` to ``settings.epochs`` and returns the state;
    on return the model holds the best epoch's weights, in eval mode.

    batches(epoch): the epoch's batches, shuffled by the caller. step(batch): one optimizer update, returns
    the batch's loss, or None when the batch had nothing to learn from (not counted). validate(model):
    {metric: value}, recorded as ``val_<metric>``. state, best_weights: where a saved run stopped (resume;
    ``state`` is updated in place). after_epoch(state, best_weights): called after every epoch (to save a
    checkpoint). steps_per_epoch: the progress bar's length."""
    state = state if state is not None else TrainState()
    best = copy.deepcopy(best_weights if best_weights is not None else model.state_dict())
    average = WeightAverage(model, settings.average_decay) if settings.average_decay > 0 else None
    counted_step = step if average is None else average.wrap(step)
    started = time.perf_counter()
    state.stopped_by = "epochs"
    for epoch in range(state.epoch + 1, settings.epochs + 1):
        record = _train_one_epoch(model, batches(epoch), counted_step, settings, epoch, steps_per_epoch)
        raw = None
        if average is not None:
            raw = copy.deepcopy(model.state_dict())
            model.load_state_dict(average.weights)
        if validate is not None:
            model.eval()
            record.update({f"val_{k}": v for k, v in validate(model).items()})
        state.epoch = epoch
        state.history.append(record)
        state.train_seconds += record["epoch_seconds"]
        if improved(record, state, settings.monitor):
            state.best_epoch = epoch
            state.best_score = epoch_score(record, settings.monitor)
            state.best_loss = record["train_loss"]
            best = copy.deepcopy(model.state_dict())
        if raw is not None:
            model.load_state_dict(raw)
        if settings.progress:
            shown = {k: round(v, 4) for k, v in record.items() if k != "epoch"}
            tqdm.write(f"{settings.label} epoch {epoch}: {shown}")
        if after_epoch is not None:
            after_epoch(state, best)
        if should_stop(epoch, state.best_epoch, settings):
            state.stopped_by = "patience"
            break
        elapsed = time.perf_counter() - started
        if settings.max_minutes and elapsed + record["epoch_seconds"] > settings.max_minutes * 60:
            if epoch < settings.epochs:
                state.stopped_by = "max_minutes"
            break
    model.load_state_dict(best)
    model.eval()
    return state


class WeightAverage:
    """Exponential moving average of a model's floating-point weights and buffers (integer buffers, such
    as counters, are copied as they are): after each step avg = decay * avg + (1 - decay) * weights."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"average_decay must be in (0, 1), got {decay}")
        self.model, self.decay = model, decay
        self.weights: Weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def update(self) -> None:
        with torch.no_grad():
            for name, value in self.model.state_dict().items():
                if value.is_floating_point():
                    self.weights[name].mul_(self.decay).add_(value, alpha=1.0 - self.decay)
                else:
                    self.weights[name].copy_(value)

    def wrap(self, step: Callable[[BatchT], float | None]) -> Callable[[BatchT], float | None]:
        """``step`` followed by an update of the average when the step counted."""

        def averaged(batch: BatchT) -> float | None:
            loss = step(batch)
            if loss is not None:
                self.update()
            return loss

        return averaged


def _train_one_epoch(
    model: torch.nn.Module,
    batches: Iterable[BatchT],
    step: Callable[[BatchT], float | None],
    settings: LoopSettings,
    epoch: int,
    steps_per_epoch: int | None,
) -> dict[str, float]:
    """One pass over ``batches`` -> {"epoch", "train_loss" (mean over counted steps), "epoch_seconds",
    "epoch_cpu_seconds"}."""
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    total, count = 0.0, 0
    bar = tqdm(
        batches,
        total=steps_per_epoch,
        desc=f"{settings.label} epoch {epoch}/{settings.epochs}",
        disable=not settings.progress,
        leave=False,
    )
    for batch in bar:
        loss = step(batch)
        if loss is None:
            continue
        total, count = total + loss, count + 1
        bar.set_postfix(loss=f"{total / count:.4f}")
    return {
        "epoch": float(epoch),
        "train_loss": total / max(count, 1),
        "epoch_seconds": time.perf_counter() - started,
        "epoch_cpu_seconds": time.process_time() - cpu_started,
    }
