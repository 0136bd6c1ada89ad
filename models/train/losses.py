"""Retrieval losses (models.md 1.7, 4.3, 4.4).

- ``sample_pool``: one negative pool per batch, ``n_inbatch`` draws from the batch's positives plus
  ``n_uniform`` uniform draws from the catalogue; expected multiplicity m_j = n_b f_j/F + n_u/|I| (4.3).
- ``catalogue_pool``: every item once, for catalogues small enough to score in full (cross-entropy).
- ``sampled_softmax``: per (query, positive) loss against the shared pool with
  ``logq = none`` (plain), ``classic`` (subtract log m from every logit, the positive's included, 4.3) or
  ``corrected`` (Khrylchenko et al. 2025, 4.4: positive uncorrected and out of the denominator, negatives
  corrected with q_j = m_j / (R - m_p), example weighted by sg(1 - p_hat)).
  Pool items that are positives of the same query (accidental hits) are masked.
- ``listwise_funnel_loss``: L_click / L_pay, softmax of a positive against the session's items below its
  funnel level.
- ``scene_normalised_sum``: average per scene, then sum over scenes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from models.data.schema import FIRST_REAL_ID

LOGQ_MODES = ("none", "classic", "corrected")


@dataclass
class NegativePool:
    items: torch.Tensor  # [R] item indices
    log_multiplicity: torch.Tensor  # [R] log m_j (expected count of j in the pool)
    size: int  # R = n_inbatch + n_uniform


def log_multiplicity(
    items: torch.Tensor, item_prob: torch.Tensor, n_inbatch: int, n_uniform: int, num_items: int
) -> torch.Tensor:
    """log m_j for item indices [..]; item_prob: [num_items] f_j / F (training-target frequencies)."""
    uniform = n_uniform / max(num_items - FIRST_REAL_ID, 1)
    return torch.log(n_inbatch * item_prob[items] + uniform).float()


def sample_pool(
    batch_positives: np.ndarray,
    item_prob: torch.Tensor,
    n_inbatch: int,
    n_uniform: int,
    num_items: int,
    rng: np.random.Generator,
) -> NegativePool:
    """batch_positives: [P] the batch's positive item indices (with repeats) -> shared pool [R]."""
    parts = []
    n_b = n_inbatch if len(batch_positives) else 0
    if n_b:
        parts.append(batch_positives[rng.integers(0, len(batch_positives), n_b)])
    if n_uniform:
        parts.append(rng.integers(FIRST_REAL_ID, num_items, n_uniform))
    items = torch.as_tensor(np.concatenate(parts).astype(np.int64))
    return NegativePool(items, log_multiplicity(items, item_prob, n_b, n_uniform, num_items), n_b + n_uniform)


def catalogue_pool(num_items: int) -> NegativePool:
    """Every real item once, multiplicity 1 (log m = 0): with ``logq="none"`` and the positive masked as an
    accidental hit, ``sampled_softmax`` is then the full softmax over the catalogue (cross-entropy)."""
    items = torch.arange(FIRST_REAL_ID, num_items, dtype=torch.int64)
    return NegativePool(items, torch.zeros(len(items)), len(items))


class PoolLogSumExp(torch.autograd.Function):
    """log sum_r exp(query . pool_r + bias_r) over the pool entries that are not ``hits``, per query.

    query [Q, d], pool_vectors [R, d], bias [R] (no gradient), hits [Q, R] bool -> [Q]. The same value and
    gradients as ``(query @ pool_vectors.T + bias).masked_fill(hits, min).logsumexp(-1)``, with the
    [Q, R] logits made by one ``addmm`` and masked in place, and a backward that forms the softmax
    weights in one buffer and multiplies them back: on a CPU each [Q, R] pass costs about as much as the
    product, and the autograd version spends extra ones on copies (about 30% slower, forward + backward).
    Masked entries get no gradient."""

    @staticmethod
    def forward(
        ctx: Any, query: torch.Tensor, pool_vectors: torch.Tensor, bias: torch.Tensor, hits: torch.Tensor
    ) -> torch.Tensor:
        logits = torch.addmm(bias.unsqueeze(0), query, pool_vectors.T)
        logits.masked_fill_(hits, torch.finfo(logits.dtype).min)
        lse = logits.logsumexp(-1)
        ctx.save_for_backward(query, pool_vectors, logits, lse, hits)
        return lse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        query, pool_vectors, logits, lse, hits = ctx.saved_tensors
        weights = (logits - lse.unsqueeze(-1)).exp_().mul_(grad.unsqueeze(-1))  # softmax x upstream grad
        weights.masked_fill_(hits, 0.0)  # masked entries pass no gradient, even in a fully masked row
        grad_query = weights @ pool_vectors if ctx.needs_input_grad[0] else None
        grad_pool = weights.T @ query if ctx.needs_input_grad[1] else None
        return grad_query, grad_pool, None, None


def sampled_softmax(
    query: torch.Tensor,
    positives: torch.Tensor,
    positive_log_m: torch.Tensor,
    item_vectors: torch.Tensor,
    pool: NegativePool,
    temperature: float,
    logq: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """query: [Q, d] unit vectors; positives: [Q, n] item indices (0 = none); positive_log_m: [Q, n] log m_p;
    item_vectors: [I, d]. Returns (loss [Q, n], valid [Q, n] bool); loss is 0 where not valid."""
    if logq not in LOGQ_MODES:
        raise ValueError(f"logq must be one of {LOGQ_MODES}, got {logq!r}")
    valid = positives > 0
    query = query / temperature  # [Q, d]: cheaper than dividing the [Q, R] scores
    positive_scores = (query.unsqueeze(1) * item_vectors[positives]).sum(-1)  # [Q, n]
    pool_vectors = item_vectors[pool.items]  # [R, d]
    # accidental hits: pool entries equal to any positive of the same query -> [Q, R]
    hits = (pool.items.view(1, 1, -1) == positives.masked_fill(~valid, -1).unsqueeze(-1)).any(dim=1)
    log_m = pool.log_multiplicity if logq != "none" else torch.zeros_like(pool.log_multiplicity)
    pool_lse = PoolLogSumExp.apply(query, pool_vectors, -log_m, hits)  # [Q]
    if logq == "none":
        negatives = pool_lse.unsqueeze(-1)
        loss = -positive_scores + torch.logaddexp(positive_scores, negatives)
    elif logq == "classic":
        corrected_pos = positive_scores - positive_log_m
        negatives = pool_lse.unsqueeze(-1)
        loss = -corrected_pos + torch.logaddexp(corrected_pos, negatives)
    else:
        # log sum_j w_j with w_j = exp(s_j - log q_j), q_j = m_j / (R - m_p)  -> depends on the positive
        lse_negatives = pool_lse  # [Q]
        log_rest = torch.log((pool.size - positive_log_m.exp()).clamp(min=1e-6))  # [Q, n]
        log_sum_w = lse_negatives.unsqueeze(1) + log_rest
        count = (~hits).sum(-1, keepdim=True).clamp(min=1).float()  # |S_t|
        log_mean_w = log_sum_w - count.log()
        p_hat = torch.exp(positive_scores - torch.logaddexp(positive_scores, log_mean_w))
        loss = -(1.0 - p_hat).detach() * (positive_scores - log_sum_w)
    return loss.masked_fill(~valid, 0.0), valid


def listwise_funnel_loss(
    scores: torch.Tensor, levels: torch.Tensor, min_level: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """scores, levels: [Q, n] (level 0 = empty slot). Positives: level >= min_level; negatives: the other
    items of the same session. Returns (mean loss per query [Q], term present [Q] bool)."""
    positive = levels >= min_level
    negative = (levels > 0) & ~positive
    present = positive.any(-1) & negative.any(-1)
    neg_inf = torch.finfo(scores.dtype).min
    negatives = scores.masked_fill(~negative, neg_inf).logsumexp(-1, keepdim=True)
    per_item = (-scores + torch.logaddexp(scores, negatives)) * positive
    per_query = per_item.sum(-1) / positive.sum(-1).clamp(min=1)
    return per_query * present, present


def scene_normalised_sum(per_query: torch.Tensor, scene: torch.Tensor) -> torch.Tensor:
    """sum over scenes of the mean over that scene's queries. per_query, scene: [Q] -> scalar."""
    if per_query.numel() == 0:
        return per_query.sum()
    scenes, inverse = torch.unique(scene, return_inverse=True)
    totals = torch.zeros(len(scenes), dtype=per_query.dtype, device=per_query.device).index_add(
        0, inverse, per_query
    )
    counts = torch.bincount(inverse, minlength=len(scenes)).to(per_query.dtype)
    return (totals / counts).sum()


def mean_over_valid(loss: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[Q, n] -> [Q] mean over each row's valid entries (0 for rows without any)."""
    return loss.sum(-1) / valid.sum(-1).clamp(min=1)
