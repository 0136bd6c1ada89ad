"""Ranking losses of models.md 3.5 (paper Eq. 18-20): per-task BCE plus set-wise contrastive in each group.

Both are averaged rather than summed so that the loss scale does not depend on N or the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.ranker.masks import same_group


def bce_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over valid candidates. logits/labels [B, N], valid [B, N] bool -> scalar."""
    losses = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    count = valid.sum().clamp(min=1)
    return (losses * valid).sum() / count


def setwise_contrastive_loss(
    logits: torch.Tensor, labels: torch.Tensor, group: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over positives i of ``-log( e^{s_i/eta} / sum_{j in group(i)} e^{s_j/eta} )`` (Eq. 19).

    logits/labels [B, N], group [B, N] int (-1 = padding). Other positives of the group stay in the
    denominator, as in the paper. Scalar; 0 when the batch has no positive.
    """
    scaled = logits / temperature
    members = same_group(group)  # [B, N, N]: row i -> the members of i's group
    denominator = torch.logsumexp(scaled[:, None, :].masked_fill(~members, float("-inf")), dim=2)
    positive = (labels > 0) & (group >= 0)
    count = positive.sum()
    if count == 0:
        return logits.sum() * 0.0
    return ((denominator - scaled) * positive).sum() / count


def ranking_loss(
    task_logits: torch.Tensor,
    task_labels: torch.Tensor,
    group: torch.Tensor,
    contrastive_weight: float = 1.0,
    temperature: float = 1.0,
    scope: str = "group",
) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over tasks of BCE + weight * set-wise contrastive (Eq. 20).

    task_logits/task_labels [B, num_tasks, N], group [B, N] -> (loss, per-term floats for logging).
    ``scope`` "request": the contrastive softmax spans every valid candidate of a request, whatever its
    group (a listwise loss); "group": each group alone, as the paper.
    """
    valid = group >= 0
    if scope == "request":
        group = torch.where(valid, torch.zeros_like(group), group)
    elif scope != "group":
        raise ValueError(f"unknown contrastive scope '{scope}'")
    total = task_logits.new_zeros(())
    parts: dict[str, float] = {}
    for task in range(task_logits.shape[1]):
        bce = bce_loss(task_logits[:, task], task_labels[:, task], valid)
        contrastive = setwise_contrastive_loss(task_logits[:, task], task_labels[:, task], group, temperature)
        total = total + bce + contrastive_weight * contrastive
        parts[f"bce_{task}"] = float(bce.detach())
        parts[f"scl_{task}"] = float(contrastive.detach())
    return total, parts
