"""Attention masks of the ranker, built with tensor ops (True = may attend).

Token layout of one request: context tokens ``[IH ; PA groups ; user ; situation]`` (T of them) followed by
candidate-side blocks: block 0 holds the N candidate tokens, block k (k = 1..K) the k-th reasoning block
(one latent token per candidate). Rules (models.md 3.4 and 3.7, with our deviation that the context never
sees candidates so its keys/values are computed once per request):

- a context token sees every valid context token (bidirectional), nothing else;
- a block-k token of candidate i sees every valid context token and the tokens of blocks 0..k that belong
  to candidates of i's group (block-causal across steps, bidirectional inside the group).
"""

from __future__ import annotations

import torch


def context_mask(context_valid: torch.Tensor) -> torch.Tensor:
    """context_valid [B, T] bool -> [B, T, T]: valid keys for every query (pad queries see themselves)."""
    num_tokens = context_valid.shape[1]
    eye = torch.eye(num_tokens, dtype=torch.bool, device=context_valid.device)
    return context_valid[:, None, :] | eye[None]


def same_group(group: torch.Tensor) -> torch.Tensor:
    """group [B, N] int (-1 = padding candidate) -> [B, N, N]: query i and key j are in one group.

    A padding candidate is in no group, except that it sees itself (keeps its softmax row defined).
    """
    valid = group >= 0
    same = (group[:, :, None] == group[:, None, :]) & valid[:, None, :] & valid[:, :, None]
    eye = torch.eye(group.shape[1], dtype=torch.bool, device=group.device)
    return same | eye[None]


def candidate_block_mask(context_valid: torch.Tensor, group: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Rows of the newest block against keys ``[context ; block 0 ; ... ; block num_blocks-1]``.

    context_valid [B, T] bool, group [B, N] int -> [B, N, T + num_blocks * N] bool.
    """
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    batch, num_candidates = group.shape
    to_context = context_valid[:, None, :].expand(batch, num_candidates, context_valid.shape[1])
    to_blocks = same_group(group).repeat(1, 1, num_blocks)
    return torch.cat([to_context, to_blocks], dim=2)


def full_sequence_mask(context_valid: torch.Tensor, group: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """The whole block-causal mask over ``[context ; block 0 ; ... ; block num_blocks-1]``.

    Reference for tests and for the uncached forward: [B, T + num_blocks*N, T + num_blocks*N] bool.
    """
    batch, num_context = context_valid.shape
    num_candidates = group.shape[1]
    total = num_context + num_blocks * num_candidates
    mask = torch.zeros(batch, total, total, dtype=torch.bool, device=group.device)
    mask[:, :num_context, :num_context] = context_mask(context_valid)
    block_of_key = torch.arange(num_blocks, device=group.device).repeat_interleave(num_candidates)
    visible_blocks = (
        block_of_key[None, :] <= torch.arange(num_blocks, device=group.device)[:, None]
    )  # [K+1, .]
    for_rows = visible_blocks.repeat_interleave(num_candidates, dim=0)  # [(K+1)N, (K+1)N]
    groups = same_group(group).repeat(1, num_blocks, num_blocks)
    mask[:, num_context:, num_context:] = groups & for_rows[None]
    mask[:, num_context:, :num_context] = context_valid[:, None, :]
    return mask
