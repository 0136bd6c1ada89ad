"""Mixture-of-experts feed-forward sublayer (models.md 1.6, ours [OC]): pre-norm, E routed SiLU experts
(d -> 2d -> d) with top-2 softmax routing, one shared expert, and a load-balancing auxiliary loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MoEFeedForward(nn.Module):
    def __init__(self, dim: int, num_experts: int, dropout: float, top_k: int = 2) -> None:
        super().__init__()
        if num_experts < top_k:
            raise ValueError(f"MoE needs at least {top_k} experts, got {num_experts}")
        self.num_experts, self.top_k = num_experts, top_k
        self.gate = nn.Linear(dim, num_experts, bias=False)
        # experts as batched weights: [E, d, 2d] and [E, 2d, d]
        self.w_in = nn.Parameter(torch.randn(num_experts, dim, 2 * dim) * dim**-0.5)
        self.w_out = nn.Parameter(torch.randn(num_experts, 2 * dim, dim) * (2 * dim) ** -0.5)
        self.shared = nn.Sequential(nn.Linear(dim, 2 * dim), nn.SiLU(), nn.Linear(2 * dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [B, T, d] -> (x + moe(LN(x)) [B, T, d], load-balancing loss scalar)."""
        normed = F.layer_norm(x, (x.shape[-1],))
        probs = self.gate(normed).softmax(dim=-1)  # [B, T, E]
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        weights = torch.zeros_like(probs).scatter(-1, top_i, top_p / top_p.sum(-1, keepdim=True))
        # dense evaluation of all experts: cheap at our sizes (E ~ 4-8) and free of Python loops
        hidden = F.silu(torch.einsum("btd,edh->bteh", normed, self.w_in))
        expert_out = torch.einsum("bteh,ehd->bted", hidden, self.w_out)
        routed = (expert_out * weights.unsqueeze(-1)).sum(dim=2)
        # Switch-style balance: E * sum_e (fraction routed to e) * (mean gate prob of e)
        fraction = (weights > 0).float().mean(dim=(0, 1)) / self.top_k
        aux = self.num_experts * (fraction * probs.mean(dim=(0, 1))).sum()
        return x + self.dropout(routed + self.shared(normed)), aux
