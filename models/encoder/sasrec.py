"""SASRec block (Kang & McAuley 2018) used as the causal baseline: pre-LN softmax attention + FFN.

Trained with the same sampled softmax and cosine/temperature scoring as HSTU (models.md 2.4, SASRec rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder.config import EncoderConfig


class SASRecBlock(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        width = config.num_heads * config.head_dim
        self.attention_norm = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * width)
        self.attention_out = nn.Linear(width, config.dim)
        self.ffn_norm = nn.LayerNorm(config.dim)
        self.ffn = nn.Sequential(
            nn.Linear(config.dim, config.dim),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.dim, config.dim),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.attention_dropout = config.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, T, d]; mask: [B, T, T] bool (every row has at least one True) -> [B, T, d]."""
        batch, length, _ = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(self.num_heads * self.head_dim, dim=-1)
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask.unsqueeze(1), dropout_p=self.attention_dropout if self.training else 0.0
        )
        x = x + self.dropout(self.attention_out(attended.transpose(1, 2).reshape(batch, length, -1)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))
