"""Pre-LN Transformer layer whose queries can attend to cached keys/values (models.md 3.3-3.4).

The ranker runs the same layers over three kinds of token streams: the context (once per request), the
candidate block and each reasoning block. A stream's queries attend to ``[cached keys ; its own keys]``, so
the context is computed once and every reasoning step only runs its M new tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CachedAttentionLayer(nn.Module):
    """``H' = H + MHSA(LN(H))``, ``H'' = H' + FFN(LN(H'))`` with optional past keys/values."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.attn_norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, d_model))
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, M, d] -> [B, h, M, d/h]."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x [B, M, d]; past = (keys, values) [B, h, P, d/h] or None; mask [B, M, P + M] bool (True = attend).

        Returns (y [B, M, d], (keys, values) of x itself [B, h, M, d/h]) for later streams to reuse.
        """
        query, key, value = self.qkv(self.attn_norm(x)).chunk(3, dim=-1)
        query, key, value = self._heads(query), self._heads(key), self._heads(value)
        own = (key, value)
        if past is not None:
            key = torch.cat([past[0], key], dim=2)
            value = torch.cat([past[1], value], dim=2)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask[:, None])
        batch, _, length, _ = attended.shape
        attended = attended.transpose(1, 2).reshape(batch, length, -1)
        x = x + self.dropout(self.attn_out(attended))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, own
