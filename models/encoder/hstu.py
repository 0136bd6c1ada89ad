"""HSTU block (Zhai et al. 2024; models.md 2.1-2.2) with the session-encoder options of models.md 1.3-1.5.

Xn         = LN(X)                                   parameter-free layer norm
U,V,Q,K    = split(SiLU(Xn W1))                      W1 [d, h(2 d_v + 2 d_qk)], no bias
A          = SiLU(Q K^T + rab) / N  * M              [B, h, T, T], N = config.max_tokens (fixed, so a
                                                     user's output does not depend on batch padding)
Y          = X + W2 dropout(U * LN(A V))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.encoder.config import NUM_TIME_BUCKETS, EncoderConfig


def time_bucket(delta_s: torch.Tensor) -> torch.Tensor:
    """HSTU log time bucket: clamp(floor(ln(max(|dt|, 1)) / 0.301), 0, 128). [..] int -> [..] long."""
    scaled = torch.log(delta_s.abs().clamp(min=1).double()) / 0.301
    return scaled.floor().long().clamp(0, NUM_TIME_BUCKETS - 1)


def pair_time_buckets(ts: torch.Tensor, query_ts: torch.Tensor) -> torch.Tensor:
    """Bucket of query_ts[i] - ts[j] for every token pair. ts, query_ts: [B, T] -> [B, T, T] long."""
    return time_bucket(query_ts.unsqueeze(2) - ts.unsqueeze(1))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with the mask drawn by ``rand_like`` (about 40% cheaper forward + backward on a CPU
    than the ``bernoulli_`` kernel behind ``nn.Dropout``); the same distribution and the same scaling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        scale = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale


class RelativeBias(nn.Module):
    """rab = rab_p (Toeplitz over token offsets) + rab_t (bucketed query_ts[i] - ts[j]); shared by heads."""

    def __init__(self, max_tokens: int, use_position: bool, use_time: bool) -> None:
        super().__init__()
        self.max_tokens = max_tokens
        self.position_weights = nn.Parameter(torch.randn(2 * max_tokens - 1) * 0.02) if use_position else None
        self.time_weights = nn.Parameter(torch.randn(NUM_TIME_BUCKETS) * 0.02) if use_time else None

    def forward(
        self, ts: torch.Tensor, query_ts: torch.Tensor, buckets: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """ts, query_ts: [B, T] seconds -> [B, 1, T, T] or None when both biases are off. ``buckets``:
        the [B, T, T] time buckets when the caller computed them once for every block."""
        bias: torch.Tensor | None = None
        length = ts.shape[1]
        if self.position_weights is not None:
            pos = torch.arange(length, device=ts.device)
            offset = (pos.unsqueeze(0) - pos.unsqueeze(1)).clamp(-self.max_tokens + 1, self.max_tokens - 1)
            bias = self.position_weights[offset + self.max_tokens - 1].unsqueeze(0)
        if self.time_weights is not None:
            if buckets is None:
                buckets = pair_time_buckets(ts, query_ts)
            rab_t = self.time_weights[buckets]
            bias = rab_t if bias is None else bias + rab_t
        return None if bias is None else bias.unsqueeze(1)


def rotary_angles(
    positions: torch.Tensor, dim: int, dtype: torch.dtype, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [B, 1, T, dim/2] of the rotary embedding for explicit positions [B, T]."""
    half = dim // 2
    freqs = base ** (-torch.arange(half, device=positions.device, dtype=dtype) / half)
    angles = positions.to(dtype).unsqueeze(-1) * freqs  # [B, T, half]
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def rotary(
    x: torch.Tensor,
    positions: torch.Tensor,
    base: float = 10000.0,
    angles: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Rotary embedding with an explicit position per token. x: [B, h, T, d] (d even), positions: [B, T].
    ``angles``: ``rotary_angles`` computed once for every block and both of q and k."""
    cos, sin = angles if angles is not None else rotary_angles(positions, x.shape[-1], x.dtype, base)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class HSTUBlock(nn.Module):
    """One HSTU layer. With ``token_specific`` the UVQK projection has one copy per token type (TSN)."""

    def __init__(self, config: EncoderConfig, token_specific: bool) -> None:
        super().__init__()
        self.num_heads, self.head_dim = config.num_heads, config.head_dim
        width = config.num_heads * config.head_dim
        self.uvqk = nn.Linear(config.dim, 4 * width, bias=False)
        self.uvqk_context = nn.Linear(config.dim, 4 * width, bias=False) if token_specific else None
        self.out = nn.Linear(width, config.dim)
        self.dropout = FastDropout(config.dropout)
        self.bias = RelativeBias(config.max_tokens, bool(config.use_rab_p), config.use_rab_t)
        self.use_rope = bool(config.use_rope)
        self.norm_length = float(config.max_tokens)
        self.normalise_by_keys = config.attention_norm == "keys"
        for linear in (self.uvqk, self.uvqk_context):
            if linear is not None:
                nn.init.xavier_uniform_(linear.weight)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        ts: torch.Tensor,
        query_ts: torch.Tensor,
        positions: torch.Tensor,
        is_context: torch.Tensor,
        time_buckets: torch.Tensor | None = None,
        angles: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: [B, T, d]; mask: [B, T, T] bool; ts, query_ts, positions: [B, T]; is_context: [B, T] bool.
        ``time_buckets`` [B, T, T] and rotary ``angles``: shared by all blocks when the encoder computed
        them once (``pair_time_buckets``, ``rotary_angles``). Returns [B, T, d]."""
        batch, length, dim = x.shape
        normed = F.layer_norm(x, (dim,))
        projected = self.uvqk(normed)
        if self.uvqk_context is not None:
            projected = torch.where(is_context.unsqueeze(-1), self.uvqk_context(normed), projected)
        width = self.num_heads * self.head_dim
        u, v, qk = F.silu(projected).split([width, width, 2 * width], dim=-1)
        v = v.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        # q and k as 2h heads of one tensor: one rotary pass for both
        qk = qk.view(batch, length, 2 * self.num_heads, self.head_dim).transpose(1, 2)
        if self.use_rope:
            if angles is None:
                angles = rotary_angles(positions, self.head_dim, qk.dtype)
            qk = rotary(qk, positions, angles=angles)
        q, k = qk.split(self.num_heads, dim=1)
        scores = q @ k.transpose(-1, -2)  # [B, h, T, T]
        rab = self.bias(ts, query_ts, time_buckets)
        if rab is not None:
            scores = scores + rab
        if self.normalise_by_keys:
            # divide by the number of keys each query may see (depends only on the user's own layout)
            norm = mask.sum(-1, keepdim=True).clamp(min=1).unsqueeze(1).to(scores.dtype)
        else:
            norm = torch.full((), self.norm_length, dtype=scores.dtype)
        attention = F.silu(scores) / norm * mask.unsqueeze(1)
        mixed = (attention @ v).transpose(1, 2).reshape(batch, length, -1)  # [B, T, h d_v]
        gated = u * F.layer_norm(mixed, (mixed.shape[-1],))
        return x + self.out(self.dropout(gated))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def scaled_init_(embedding: nn.Embedding, dim: int) -> None:
    """Truncated-normal init with std 1/sqrt(d) (the HSTU repository's item-table init)."""
    nn.init.trunc_normal_(embedding.weight, std=1.0 / math.sqrt(dim))
