"""Input tokens of the ranker: context engineering of models.md 3.2.

Context = ``[IH ; PA_1 ; ... ; PA_G ; user ; situation]``:
- IH: the last ``history_len`` interactions, oldest first: item (+ category) through the shared item
  projection, plus the action, the funnel level (rating band / view-cart-buy) and a learned position;
- PA: one group per anchor type, ``[BOS_type, a_1 .. a_P, EOS_type]``; items through the shared projection
  plus the anchor-type embedding and a learned position within the group;
- user token: sum of static user-feature embeddings (own projection);
- situation token: scene, device, hour-of-day, day-of-week (own projection).
Candidates go through their own projection and carry no position (no position-label shortcut).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.data.schema import NUM_ACTIONS
from models.ranker.config import NUM_ANCHOR_TYPES, FeatureSizes, RankerConfig
from models.ranker.match import NUM_MATCH_FEATURES

RANK_BUCKETS = 12  # log2 buckets of the retrieval rank: 0, 1, 2-3, 4-7, ...; the last row = not retrieved
SEGMENT_HISTORY, SEGMENT_ANCHOR, SEGMENT_USER, SEGMENT_SITUATION, SEGMENT_CANDIDATE = range(5)


@dataclass
class RankerBatch:
    """Model inputs for B requests (0 = padding in every id tensor).

    history_item/action/level [B, L]; anchor_item [B, G, P] (G = len(config.anchor_types));
    user_features [B, F] (fields in FeatureSizes order); situation [B, 4] = (scene, device, hour, dow);
    candidate_item [B, N]; group [B, N] (-1 = padding candidate).
    """

    history_item: torch.Tensor
    history_action: torch.Tensor
    history_level: torch.Tensor
    anchor_item: torch.Tensor
    user_features: torch.Tensor
    situation: torch.Tensor
    candidate_item: torch.Tensor
    group: torch.Tensor
    candidate_rank: torch.Tensor | None = None  # [B, N] 0-based retrieval rank, -1 = not retrieved
    # [B, N, S] 0-based rank of each candidate in each of config.candidate_sources, -1 = not found there
    candidate_source_rank: torch.Tensor | None = None
    # [B, N, config.candidate_features] float32 per-candidate features (0 for padding), raw
    candidate_features: torch.Tensor | None = None


class ItemProjection(nn.Module):
    """Item id + category embeddings -> d (one instance per token type, models.md 3.2 Proj_*)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * d_model, d_model), nn.GELU(), nn.Linear(d_model, d_model))

    def forward(self, item_vectors: torch.Tensor, category_vectors: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([item_vectors, category_vectors], dim=-1))


class TokenEmbedder(nn.Module):
    item_category: torch.Tensor  # [num_items] category index per item (buffer, saved)
    anchor_types: torch.Tensor  # [G] anchor type per group (buffer, from the config)

    def __init__(self, config: RankerConfig, sizes: FeatureSizes, item_category: torch.Tensor) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.register_buffer("item_category", item_category.to(torch.int64), persistent=True)
        self.item = nn.Embedding(sizes.num_items, d, padding_idx=0)
        self.category = nn.Embedding(sizes.num_categories, d, padding_idx=0)
        self.context_items = ItemProjection(d)
        self.candidate_items = ItemProjection(d)
        self.action = nn.Embedding(NUM_ACTIONS, d)
        self.level = nn.Embedding(4, d)
        self.history_position = nn.Embedding(config.history_len, d)
        self.anchor_type = nn.Embedding(NUM_ANCHOR_TYPES, d)
        self.anchor_bos = nn.Embedding(NUM_ANCHOR_TYPES, d)
        self.anchor_eos = nn.Embedding(NUM_ANCHOR_TYPES, d)
        self.anchor_position = nn.Embedding(config.anchor_len, d)
        self.user_fields = nn.ModuleList([nn.Embedding(size, d) for _, size in sizes.user_feature_sizes])
        self.user_bias = nn.Parameter(torch.zeros(d))
        self.user_proj = nn.Linear(d, d)
        self.scene = nn.Embedding(sizes.num_scenes, d)
        self.device = nn.Embedding(sizes.num_devices, d)
        self.hour = nn.Embedding(24, d)
        self.dow = nn.Embedding(7, d)
        self.situation_proj = nn.Linear(d, d)
        self.segment = nn.Embedding(5, d)
        self.retrieval_rank = nn.Embedding(RANK_BUCKETS + 1, d)
        if config.candidate_sources:
            self.source_rank = nn.Embedding(len(config.candidate_sources) * (RANK_BUCKETS + 1), d)
            nn.init.normal_(self.source_rank.weight, std=0.02)
        if config.match_features:
            self.match = nn.Linear(NUM_MATCH_FEATURES, d)
        if config.candidate_features:
            self.features = nn.Sequential(nn.Linear(config.candidate_features, d), nn.GELU(), nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)
        self.register_buffer(
            "anchor_types", torch.tensor(config.anchor_types, dtype=torch.int64), persistent=False
        )
        for table in (self.item, self.category):
            nn.init.normal_(table.weight, std=0.02)

    def _item_features(self, ids: torch.Tensor, projection: ItemProjection) -> torch.Tensor:
        """ids [...] -> [..., d]. In training, ``config.item_id_dropout`` of the real ids read the unknown
        row (their category stays), so the ranker cannot lean on memorised ids alone."""
        category = self.category(self.item_category[ids])
        rate = self.config.item_id_dropout
        if self.training and rate > 0:
            dropped = (torch.rand(ids.shape, device=ids.device) < rate) & (ids > 1)
            ids = torch.where(dropped, torch.ones_like(ids), ids)
        return projection(self.item(ids), category)

    def context(self, batch: RankerBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (tokens [B, T, d], valid [B, T] bool) with T = config.context_len."""
        cfg = self.config
        history = (
            self._item_features(batch.history_item, self.context_items)
            + self.action(batch.history_action)
            + self.level(batch.history_level)
            + self.history_position.weight[None]
            + self.segment.weight[SEGMENT_HISTORY]
        )
        bsz, groups, per_group = batch.anchor_item.shape
        anchor_items = (
            self._item_features(batch.anchor_item, self.context_items)
            + self.anchor_type(self.anchor_types)[None, :, None, :]
            + self.anchor_position.weight[None, None, :per_group]
        )
        bos = self.anchor_bos(self.anchor_types)[None, :, None, :].expand(bsz, groups, 1, -1)
        eos = self.anchor_eos(self.anchor_types)[None, :, None, :].expand(bsz, groups, 1, -1)
        anchors = torch.cat([bos, anchor_items, eos], dim=2).reshape(
            bsz, groups * (per_group + 2), cfg.d_model
        )
        anchors = anchors + self.segment.weight[SEGMENT_ANCHOR]
        user = self.user_bias.expand(bsz, -1)
        for index, table in enumerate(self.user_fields):
            user = user + table(batch.user_features[:, index])
        user = self.user_proj(user) + self.segment.weight[SEGMENT_USER]
        scene, device, hour, dow = batch.situation.unbind(dim=1)
        situation = self.situation_proj(
            self.scene(scene) + self.device(device) + self.hour(hour) + self.dow(dow)
        )
        situation = situation + self.segment.weight[SEGMENT_SITUATION]
        tokens = torch.cat([history, anchors, user[:, None], situation[:, None]], dim=1)
        marker = torch.ones(bsz, groups, 1, dtype=torch.bool, device=tokens.device)
        anchor_valid = torch.cat([marker, batch.anchor_item > 0, marker], dim=2).reshape(
            bsz, groups * (per_group + 2)
        )
        user_situation = torch.ones(bsz, 2, dtype=torch.bool, device=tokens.device)
        valid = torch.cat([batch.history_item > 0, anchor_valid, user_situation], dim=1)
        if tokens.shape[1] != cfg.context_len:
            raise ValueError(f"context has {tokens.shape[1]} tokens, config expects {cfg.context_len}")
        return self.dropout(self.norm(tokens)), valid

    def candidates(
        self,
        candidate_item: torch.Tensor,
        candidate_rank: torch.Tensor | None = None,
        candidate_source_rank: torch.Tensor | None = None,
        match: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """candidate_item [B, N] (+ retrieval rank [B, N], per-source ranks [B, N, S], match features
        [B, N, NUM_MATCH_FEATURES], standardised candidate features [B, N, config.candidate_features] if
        configured) -> tokens [B, N, d], no positions."""
        tokens = (
            self._item_features(candidate_item, self.candidate_items) + self.segment.weight[SEGMENT_CANDIDATE]
        )
        if self.config.use_retrieval_rank:
            if candidate_rank is None:
                raise ValueError("config.use_retrieval_rank needs batch.candidate_rank")
            tokens = tokens + self.retrieval_rank(rank_bucket(candidate_rank))
        sources = len(self.config.candidate_sources)
        if sources:
            if candidate_source_rank is None or candidate_source_rank.shape[-1] != sources:
                raise ValueError(
                    f"config.candidate_sources needs batch.candidate_source_rank [B, N, {sources}]"
                )
            offset = torch.arange(sources, device=tokens.device) * (RANK_BUCKETS + 1)
            tokens = tokens + self.source_rank(rank_bucket(candidate_source_rank) + offset).sum(dim=2)
        if self.config.match_features:
            if match is None:
                raise ValueError("config.match_features needs the match features")
            tokens = tokens + self.match(match)
        if self.config.candidate_features:
            if features is None:
                raise ValueError("config.candidate_features needs batch.candidate_features")
            tokens = tokens + self.features(features)
        return self.dropout(self.norm(tokens))


def rank_bucket(rank: torch.Tensor) -> torch.Tensor:
    """0-based ranks (any shape, -1 = absent) -> log2 buckets 0..RANK_BUCKETS-1, RANK_BUCKETS = absent."""
    bucket = torch.floor(torch.log2(rank.clamp(min=0).to(torch.float32) + 1)).to(torch.int64)
    return torch.where(rank < 0, RANK_BUCKETS, bucket.clamp(max=RANK_BUCKETS - 1))
