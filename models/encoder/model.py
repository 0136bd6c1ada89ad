"""The retrieval encoder: token embeddings -> HSTU (or SASRec) blocks -> user/query vectors.

``RetrievalEncoder(config)`` covers the three kinds of ``EncoderConfig.kind``:
- ``session_encoder``: TBGRecall layout (models.md 1.2-1.7): token sum + TSN, session-wise mask,
  session-wise RoPE, query = normalize(g_m(H[context token])), m = 0 (this session) .. horizon-1;
  folded (``EncoderConfig.folded``, one item per request): one token per request that sums the previous
  request's item part and this request's context part (each through its TSN projection), causal mask,
  query = normalize(g_m(H[token]));
- ``hstu``: causal HSTU over item ids (models.md 2.3): sqrt(d) E_item + P[t], query = normalize(H[t]);
- ``sasrec``: the same input and objective with softmax-attention blocks.
Item vectors are the L2-normalised rows of the input item table (shared, models.md 1.7 / 2.3).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.encoder.config import NUM_GAP_BUCKETS, EncoderConfig
from models.encoder.hstu import FastDropout, HSTUBlock, pair_time_buckets, rotary_angles, scaled_init_
from models.encoder.layout import CONTEXT_TOKEN, ITEM_TOKEN
from models.encoder.masks import causal_mask, session_mask
from models.encoder.moe import MoEFeedForward
from models.encoder.sasrec import SASRecBlock

NUM_LEVELS = 4


class TokenEmbedder(nn.Module):
    """Padded token fields [B, T] (+ user features [B, F]) -> token vectors x [B, T, d]."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        d = config.dim
        self.config = config
        self.item = nn.Embedding(config.num_items, d, padding_idx=0)
        scaled_init_(self.item, d)
        if config.is_session:
            self.action = nn.Embedding(config.num_actions, d)
            self.level = nn.Embedding(NUM_LEVELS, d)
            self.category = nn.Embedding(config.num_categories, d)
            self.scene = nn.Embedding(config.num_scenes, d)
            self.device = nn.Embedding(config.num_devices, d)
            self.hour = nn.Embedding(24, d)
            self.dow = nn.Embedding(7, d)
            self.gap = nn.Embedding(NUM_GAP_BUCKETS, d)
            self.user = nn.ModuleDict(
                {name: nn.Embedding(size, d) for name, size in sorted(config.user_feature_sizes.items())}
            )
            side_tables: list[nn.Module] = [self.action, self.level, self.category, self.scene, self.device]
            side_tables += [self.hour, self.dow, self.gap, *self.user.values()]
            for table in side_tables:
                assert isinstance(table, nn.Embedding)
                nn.init.normal_(table.weight, std=0.02)
            self.project_context = (
                identity_linear(d, config.identity_start) if config.token_specific else None
            )
            self.project_item = identity_linear(d, config.identity_start) if config.token_specific else None
            self.item_scale = math.sqrt(d) if config.identity_start else 1.0
        else:
            self.position = nn.Embedding(config.max_tokens, d)
            nn.init.normal_(self.position.weight, std=math.sqrt(1.0 / d))
        self.dropout = FastDropout(config.dropout)

    def forward(self, tokens: dict[str, torch.Tensor], user_features: torch.Tensor) -> torch.Tensor:
        valid = (tokens["tok_type"] > 0).unsqueeze(-1)
        if not self.config.is_session:
            length = tokens["item"].shape[1]
            positions = torch.arange(length, device=valid.device).unsqueeze(0)
            x = self.item(tokens["item"]) * math.sqrt(self.config.dim) + self.position(positions)
            return self.dropout(x) * valid
        shared = self.scene(tokens["scene"]) + self.device(tokens["device"])
        shared = shared + self.hour(tokens["hour"]) + self.dow(tokens["dow"])
        item_rows = self.item(tokens["item"]) * self.item_scale
        item_x = item_rows + self.action(tokens["action"]) + self.level(tokens["level"])
        item_x = item_x + self.category(tokens["category"])
        if not self.config.folded:
            # folded tokens: the item's own time/scene is the previous token's context, already seen
            item_x = item_x + shared
        context_x = shared + self.gap(tokens["gap"])
        if self.config.context_pool and not self.config.folded:
            context_x = context_x + previous_session_mean(item_rows, tokens)
        for column, table in enumerate(self.user.values()):
            context_x = context_x + table(user_features[:, column]).unsqueeze(1)
        if self.project_context is not None and self.project_item is not None:
            context_x, item_x = self.project_context(context_x), self.project_item(item_x)
        if self.config.folded:
            has_item = (tokens["item"] > 0).unsqueeze(-1)  # the first request has no previous item
            x = context_x + item_x * has_item
        else:
            is_context = (tokens["tok_type"] == CONTEXT_TOKEN).unsqueeze(-1)
            x = torch.where(is_context, context_x, item_x)
        return self.dropout(x) * valid


def identity_linear(dim: int, identity: bool) -> nn.Linear:
    """A d -> d linear layer: an identity without bias when ``identity``, else PyTorch's default init."""
    if not identity:
        return nn.Linear(dim, dim)
    layer = nn.Linear(dim, dim, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(dim))
    return layer


def previous_session_mean(item_x: torch.Tensor, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean item-table row of the previous session, placed on every token of a session.
    item_x: [B, T, d] item-table rows; tokens: ``sess``, ``tok_type`` [B, T] -> [B, T, d], zero where the
    previous session is missing (first kept session) or empty. Reads earlier sessions only: no leak."""
    sess, tok_type = tokens["sess"], tokens["tok_type"]
    batch, length, dim = item_x.shape
    slots = int(sess.max()) + 2 if sess.numel() else 2
    is_item = (tok_type == ITEM_TOKEN).unsqueeze(-1).to(item_x.dtype)
    index = sess.unsqueeze(-1).expand(batch, length, dim)
    sums = item_x.new_zeros(batch, slots, dim).scatter_add(1, index, item_x * is_item)
    counts = item_x.new_zeros(batch, slots, 1).scatter_add(1, sess.unsqueeze(-1), is_item)
    means = sums / counts.clamp(min=1)
    previous = (sess - 1).clamp(min=0).unsqueeze(-1).expand(batch, length, dim)
    return means.gather(1, previous) * (sess > 1).unsqueeze(-1).to(item_x.dtype)


class RetrievalEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = TokenEmbedder(config)
        if config.kind == "sasrec":
            self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_blocks))
            self.final_norm: nn.Module = nn.LayerNorm(config.dim)
        else:
            self.blocks = nn.ModuleList(
                HSTUBlock(config, token_specific=config.token_specific and i == 0 and not config.folded)
                for i in range(config.num_blocks)
            )
            self.final_norm = nn.Identity()
        self.moe = nn.ModuleList(
            MoEFeedForward(config.dim, config.moe_experts, config.dropout)
            for _ in range(config.num_blocks if config.moe_experts > 0 else 0)
        )
        if config.item_side_info:
            # category of every item row, set from the dataset by ``set_item_category`` (saved with weights)
            self.register_buffer("item_category", torch.zeros(config.num_items, dtype=torch.long))
        # g_0 .. g_{m-1}: one head per predicted session (MSP, models.md 1.7); causal kinds use none
        self.heads = nn.ModuleList(
            identity_linear(config.dim, config.identity_start)
            for _ in range(config.msp_horizon if config.is_session else 0)
        )

    def forward(
        self, tokens: dict[str, torch.Tensor], user_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens: padded fields [B, T] (layout.TOKEN_FIELDS); user_features: [B, F].
        Returns (hidden states [B, T, d] with padding rows zero, auxiliary loss scalar)."""
        return self.contextualise(self.embed(tokens, user_features), tokens)

    def contextualise(
        self, x: torch.Tensor, tokens: dict[str, torch.Tensor], mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks over embedded tokens x [B, T, d]; ``tokens`` needs ``tok_type``, ``sess``, ``ts`` and
        ``query_ts`` [B, T] (what the masks, time buckets and rotary angles read). -> as ``forward``."""
        tok_type = tokens["tok_type"]
        valid = (tok_type > 0).unsqueeze(-1)
        if mask is None:
            mask = self.attention_mask(tokens)
        is_context = tok_type == CONTEXT_TOKEN
        aux = x.new_zeros(())
        # per-pair time buckets and rotary angles depend on the layout only: once for all blocks
        buckets = angles = None
        if self.config.kind != "sasrec":
            if self.config.use_rab_t:
                buckets = pair_time_buckets(tokens["ts"], tokens["query_ts"])
            if self.config.use_rope:
                angles = rotary_angles(tokens["sess"], self.config.head_dim, x.dtype)
        for index, block in enumerate(self.blocks):
            if isinstance(block, SASRecBlock):
                x = block(x, mask)
            else:
                x = block(
                    x, mask, tokens["ts"], tokens["query_ts"], tokens["sess"], is_context, buckets, angles
                )
            if len(self.moe):
                x, block_aux = self.moe[index](x)
                aux = aux + block_aux
            x = x * valid
        return self.final_norm(x) * valid, aux * self.config.moe_aux_weight

    def attention_mask(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, T, T] bool: the session-wise mask for session layouts, else causal (tokens: ``tok_type`` and
        ``sess`` [B, T])."""
        if self.config.is_session and not self.config.folded:
            return session_mask(tokens["sess"], tokens["tok_type"])
        return causal_mask(tokens["tok_type"])

    def query_vectors(self, hidden: torch.Tensor, head: int = 0) -> torch.Tensor:
        """hidden: [P, d] rows of ``forward``'s output -> unit query vectors [P, d]."""
        if len(self.heads):
            hidden = self.heads[head](hidden)
        return F.normalize(hidden, dim=-1)

    def set_item_category(self, item_category: np.ndarray) -> None:
        """item_category: [num_items] category index per item row (needed with ``item_side_info``)."""
        if self.config.item_side_info:
            categories = np.zeros(self.config.num_items, dtype=np.int64)
            known = min(len(item_category), self.config.num_items)
            categories[:known] = np.clip(item_category[:known], 0, self.config.num_categories - 1)
            buffer = self.get_buffer("item_category")
            buffer.copy_(torch.as_tensor(categories))

    def item_vectors(self) -> torch.Tensor:
        """[num_items, d] unit item vectors; rows 0 (pad) and 1 (unknown) are zero."""
        table = self.embed.item.weight
        if self.config.item_side_info:
            table = table + self.embed.category(self.get_buffer("item_category"))
        vectors = F.normalize(table, dim=-1).clone()
        vectors[:2] = 0.0
        return vectors


def to_tensors(padded: dict[str, np.ndarray], device: torch.device | None = None) -> dict[str, torch.Tensor]:
    return {name: torch.as_tensor(values, device=device) for name, values in padded.items()}


def last_query_rows(hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real token. hidden: [B, T, d], lengths: [B] -> [B, d]."""
    index = (lengths - 1).clamp(min=0)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
