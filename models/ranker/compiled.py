"""The ranker's forward for one request at a time, exported with fixed shapes and run outside eager PyTorch.

A serving ranker is small (d 32-64, 1-2 layers) and its eager forward is mostly per-operator dispatch: for
200 candidates the quick preset spends ~3.4 ms in ~400 small operators whose arithmetic takes a fraction of
that. Serving scores one request per call, so every shape is known once the candidate count is: the forward
is exported once per padded count (a multiple of ``pad_multiple``) and run by

- ``onnxruntime``: ONNX Runtime's CPU provider (graph fusions, one thread), when the package is installed;
- ``torchscript``: a frozen ``torch.jit.trace`` of the same function, the fallback that needs nothing more.

``OnePieceRanker.forward_grouped`` is the traced function; the padding candidates form empty groups whose
outputs are never read, so the scores of the real candidates equal the eager ones (tests/models/ranker/
test_compiled.py checks both backends against ``OnePieceRanker.forward``).
"""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import torch
from torch import nn

from models.export import ShapeCache, padded_size
from models.ranker.grouping import group_layout
from models.ranker.model import OnePieceRanker
from models.ranker.tokens import RankerBatch

# batch fields in RankerBatch order; the optional ones enter the exported graph only when present
_FIELDS = tuple(f.name for f in fields(RankerBatch))
_PADDING = {
    "candidate_item": 0,
    "group": -1,
    "candidate_rank": -1,
    "candidate_source_rank": -1,
    "candidate_features": 0.0,
}


class _TensorArguments(nn.Module):
    """forward_grouped behind a signature of plain tensors (what tracing and ONNX export need)."""

    def __init__(self, model: OnePieceRanker, present: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.present = present

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        named = dict(zip((*self.present, "layout_index", "layout_valid"), tensors, strict=True))
        batch = RankerBatch(**{name: named.get(name) for name in _FIELDS})  # type: ignore[arg-type]
        return self.model.forward_grouped(batch, named["layout_index"], named["layout_valid"])


def pad_candidates(batch: RankerBatch, size: int) -> RankerBatch:
    """Candidate-side tensors [B, N, ...] -> [B, size, ...] padded with 'no candidate' values (size >= N)."""
    extra = size - batch.candidate_item.shape[1]
    if extra < 0:
        raise ValueError(f"cannot pad {batch.candidate_item.shape[1]} candidates down to {size}")
    padded = {}
    for name, value in _PADDING.items():
        tensor = getattr(batch, name)
        if tensor is not None and extra:
            shape = (tensor.shape[0], extra, *tensor.shape[2:])
            tensor = torch.cat([tensor, tensor.new_full(shape, value)], dim=1)
        padded[name] = tensor
    return replace(batch, **padded)


def fixed_layout(group: torch.Tensor, num_groups: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``group_layout`` padded to [B, num_groups, group_size] (empty slots: index 0, not valid)."""
    if group.shape[0] == 1:
        packed = _packed_layout(group[0].numpy(), num_groups, group_size)
        if packed is not None:
            return packed
    index, valid = group_layout(group)
    _, groups, size = index.shape
    if groups > num_groups or size > group_size:
        raise ValueError(f"layout [{groups}, {size}] does not fit [{num_groups}, {group_size}]")
    full_index = index.new_zeros(index.shape[0], num_groups, group_size)
    full_valid = valid.new_zeros(valid.shape[0], num_groups, group_size)
    full_index[:, :groups, :size] = index
    full_valid[:, :groups, :size] = valid
    return full_index, full_valid


def _packed_layout(
    group: np.ndarray, num_groups: int, group_size: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The common serving case in numpy: groups 0..g-1 hold ``group_size`` candidates each and the last
    holds the rest (``serving_groups`` cuts a ranked list that way). group [N] -> the layout [1, G, S], or
    None when the groups are not packed like that (then ``group_layout`` handles them)."""
    valid = group >= 0
    count = int(valid.sum())
    order = np.argsort(np.where(valid, group, np.iinfo(np.int64).max), kind="stable")[:count]
    if count > num_groups * group_size or not np.array_equal(group[order], np.arange(count) // group_size):
        return None
    index = np.zeros(num_groups * group_size, dtype=np.int64)
    index[:count] = order
    slots = np.arange(num_groups * group_size) < count
    shape = (1, num_groups, group_size)
    return torch.from_numpy(index.reshape(shape)), torch.from_numpy(slots.reshape(shape))


class StaticRankerForward:
    """Task logits of one request's batch through an exported copy of the model, one export per padded size.

    model: an eval-mode ``OnePieceRanker`` (its weights are read at export time: do not train it afterwards).
    backend: ``auto``, ``onnxruntime`` or ``torchscript`` (``models.export``).
    """

    def __init__(
        self, model: OnePieceRanker, backend: str = "auto", pad_multiple: int = 50, threads: int = 1
    ) -> None:
        if pad_multiple < 1:
            raise ValueError("pad_multiple must be >= 1")
        self.model = model.eval()
        self.exports = ShapeCache(backend, threads)
        self.pad_multiple = pad_multiple

    def padded_size(self, num_candidates: int) -> int:
        return padded_size(num_candidates, self.pad_multiple)

    def task_logits(self, batch: RankerBatch) -> torch.Tensor:
        """batch of one request with N candidates -> task logits [1, num_tasks, N] (as ``model(batch)``)."""
        if batch.candidate_item.shape[0] != 1:
            raise ValueError(f"the static forward scores one request, got {batch.candidate_item.shape[0]}")
        num_candidates = batch.candidate_item.shape[1]
        size = self.padded_size(num_candidates)
        padded = pad_candidates(batch, size)
        group_size = min(self.model.config.group_size, size)
        index, valid = fixed_layout(padded.group, math.ceil(size / group_size), group_size)
        present = tuple(name for name in _FIELDS if getattr(padded, name) is not None)
        tensors = [getattr(padded, name) for name in present] + [index, valid]
        forward = self.exports.get(
            (size, present),
            lambda: _TensorArguments(self.model, present),
            tensors,
            [*present, "layout_index", "layout_valid"],
        )
        return forward(tensors)[:, :, :num_candidates]
