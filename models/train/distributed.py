"""Data-parallel encoder training over several processes (``torchrun``, the gloo backend, CPUs).

Every rank holds a full replica. Per epoch one seeded permutation, the same on every rank, cuts the users
into global batches of ``batch_size``; rank r takes rows r, r + N, r + 2N, ... of each (batch / N rows),
and trailing global batches too small to give every rank a row are dropped, so every rank runs the same
number of steps. Negatives are sampled from the rank's own stream (seed, rank). After each backward the
gradients are averaged with one all-reduce per parameter (a parameter without a gradient contributes
zeros), so the replicas take identical steps; a rank whose batch had no target still runs its backward
and its all-reduce, or the other ranks would wait for it forever. The loss a step reports is the mean over
ranks, so every rank records the same history. Validation runs on rank 0 and its numbers are broadcast:
every rank's loop makes the same early-stopping decision. The wall-clock cap is off (each rank's clock
would decide on its own); the budget is the epochs. Rank 0 alone writes checkpoints and curves.

``DistContext.from_environment()`` reads torchrun's ``RANK`` / ``WORLD_SIZE`` (one process without them).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from models.train.data import LayoutStore, PaddedBatch


@dataclass(frozen=True)
class DistContext:
    """rank in [0, world); world = the number of processes (1: not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    @staticmethod
    def from_environment(environ: dict[str, str] | None = None) -> DistContext:
        """torchrun's ``RANK`` and ``WORLD_SIZE``; joins the gloo process group when there are several."""
        environ = dict(os.environ) if environ is None else environ
        world = int(environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return DistContext()
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return DistContext(dist.get_rank(), dist.get_world_size())

    def close(self) -> None:
        """Waits for every rank, then leaves the group (without the barrier some runs aborted at exit)."""
        if self.active and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def rank_batches(
    store: LayoutStore, batch_size: int, seed: int, epoch: int, context: DistContext
) -> Iterator[PaddedBatch]:
    """This rank's share of the epoch's global batches (module docstring)."""
    order = np.random.default_rng([seed, epoch, 7_919]).permutation(len(store))
    for begin in range(0, len(order) - context.world + 1, batch_size):
        rows = order[begin : begin + batch_size]
        if len(rows) < context.world:
            break
        yield store.batch(np.sort(rows[context.rank :: context.world]))


def average_gradients(model: torch.nn.Module, context: DistContext) -> None:
    """Every parameter's gradient replaced by its mean over the ranks (zeros where a rank had none)."""
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
        parameter.grad /= context.world


def mean_over_ranks(value: float, context: DistContext) -> float:
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world


def leader_decides(
    validate: Callable[[Any], dict[str, float]] | None, context: DistContext
) -> Callable[[Any], dict[str, float]] | None:
    """``validate`` run on rank 0 only, its numbers broadcast to every rank."""
    if validate is None:
        return None

    def run(model: Any) -> dict[str, float]:
        box: list[Any] = [validate(model) if context.leader else None]
        dist.broadcast_object_list(box, src=0)
        return dict(box[0])

    return run


def replicas_identical(model: torch.nn.Module, context: DistContext) -> bool:
    """Whether every rank holds the same weights (a sum of each parameter, gathered and compared)."""
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()])
    gathered = [torch.zeros_like(checksum) for _ in range(context.world)]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])
