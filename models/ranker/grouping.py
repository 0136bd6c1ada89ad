"""Split a request's candidates into groups of C (models.md 3.7).

Training draws random groups (re-drawn every epoch, as OnePiece stresses). Serving must give the same
request the same scores, so it groups deterministically:

- ``retrieval_order``: candidates 0..C-1 of the retrieval list form group 0, and so on;
- ``item_hash``: candidates are ordered by a fixed hash of their item index, then cut into groups of C. The
  groups depend only on the *set* of candidates, so permuting the list leaves every score unchanged, and the
  groups look random (like training) instead of putting the retriever's top items together.
"""

from __future__ import annotations

import torch

_HASH_MULTIPLIER = 2654435761  # Knuth's multiplicative hash constant
_HASH_MODULUS = 1 << 32


def _groups_from_keys(keys: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """keys [B, N] float/int, valid [B, N] bool -> group [B, N] int64; padding -> -1."""
    big = torch.finfo(torch.float64).max
    sort_keys = torch.where(valid, keys.to(torch.float64), torch.full_like(keys, big, dtype=torch.float64))
    order = torch.argsort(sort_keys, dim=1, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return torch.where(valid, rank // group_size, torch.full_like(rank, -1))


def random_groups(
    valid: torch.Tensor, group_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random groups of ``group_size`` among the valid candidates. valid [B, N] bool -> [B, N] int64."""
    keys = torch.rand(valid.shape, generator=generator, device=valid.device)
    return _groups_from_keys(keys, valid, group_size)


def item_hash(candidates: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random key per item index: candidates [B, N] int64 -> [B, N] int64."""
    return (candidates.to(torch.int64) * _HASH_MULTIPLIER + 12345) % _HASH_MODULUS


def serving_groups(candidates: torch.Tensor, valid: torch.Tensor, group_size: int, mode: str) -> torch.Tensor:
    """Deterministic groups. candidates [B, N] int64, valid [B, N] bool -> [B, N] int64 (-1 = padding)."""
    if mode == "retrieval_order":
        keys = torch.arange(candidates.shape[1], device=candidates.device).expand_as(candidates)
    elif mode == "item_hash":
        # the hash is a bijection on [0, 2^32) (odd multiplier), so only a repeated item ties
        keys = item_hash(candidates)
    else:
        raise ValueError(f"unknown grouping mode '{mode}'")
    return _groups_from_keys(keys, valid, group_size)


def group_layout(group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather index that packs each group's candidates together.

    group [B, N] int (-1 = padding) -> (index [B, G, S] int64 into N, slot_valid [B, G, S] bool) with G the
    number of groups and S the largest group; ``x[b, index[b, g, s]]`` is the s-th member of group g.
    """
    batch, num_candidates = group.shape
    valid = group >= 0
    num_groups = int(group.max().clamp(min=0)) + 1
    key = torch.where(valid, group, torch.full_like(group, num_groups))
    order = torch.argsort(key, dim=1, stable=True)
    sorted_key = torch.gather(key, 1, order)
    first = torch.searchsorted(sorted_key.contiguous(), sorted_key.contiguous(), right=False)
    slot = torch.arange(num_candidates, device=group.device)[None] - first
    member = sorted_key < num_groups
    size = int(slot[member].max()) + 1 if bool(member.any()) else 1
    index = torch.zeros(batch, num_groups, size, dtype=torch.int64, device=group.device)
    slot_valid = torch.zeros(batch, num_groups, size, dtype=torch.bool, device=group.device)
    rows = torch.arange(batch, device=group.device)[:, None].expand_as(order)
    index[rows[member], sorted_key[member], slot[member]] = order[member]
    slot_valid[rows[member], sorted_key[member], slot[member]] = True
    return index, slot_valid
