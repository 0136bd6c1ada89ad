"""OnePiece-style target-aware ranker: context encoded once, candidate groups, block-wise latent reasoning.

Forward for B requests with N candidates each (models.md 3.3-3.7):

1. context tokens [B, T, d] -> L bidirectional layers; every layer's keys/values are kept (cache);
2. block 0 = candidate tokens [B, N, d]: each candidate attends to the context and to its group (C);
3. reasoning step k = 1..K: block k = (outputs of block k-1) + step embedding; it attends to the context,
   to blocks 0..k-1 of its group (cached) and to its own group in block k; only these N tokens are computed;
4. task head t reads the output of stage ``config.stage_of_task(t)``: logits [B, num_tasks, N].

``forward_reference`` recomputes the whole sequence at every step with the full block-causal mask; a test
checks that the cached path agrees with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.ranker.config import FeatureSizes, RankerConfig
from models.ranker.grouping import group_layout
from models.ranker.layers import CachedAttentionLayer
from models.ranker.masks import context_mask, full_sequence_mask
from models.ranker.match import NUM_MATCH_FEATURES, history_match
from models.ranker.tokens import RankerBatch, TokenEmbedder

KeyValues = tuple[torch.Tensor, torch.Tensor]


@dataclass
class RankerOutput:
    task_logits: torch.Tensor  # [B, num_tasks, N]
    candidate_valid: torch.Tensor  # [B, N] bool


class OnePieceRanker(nn.Module):
    feature_mean: torch.Tensor  # [config.candidate_features] (buffer, saved; only with candidate features)
    feature_scale: torch.Tensor

    def __init__(self, config: RankerConfig, sizes: FeatureSizes, item_category: torch.Tensor) -> None:
        super().__init__()
        if item_category.shape[0] != sizes.num_items:
            raise ValueError(f"item_category has {item_category.shape[0]} rows, expected {sizes.num_items}")
        self.config = config
        self.sizes = sizes
        d = config.d_model
        self.embed = TokenEmbedder(config, sizes, item_category)
        self.layers = nn.ModuleList(
            [
                CachedAttentionLayer(d, config.num_heads, config.ffn_dim, config.dropout)
                for _ in range(config.num_layers)
            ]
        )
        self.step_embedding = nn.Embedding(max(config.reasoning_steps, 1), d)
        self.final_norm = nn.LayerNorm(d)
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1)) for _ in config.tasks]
        )
        if config.rank_prior > 0:
            if not config.use_retrieval_rank:
                raise ValueError("rank_prior needs use_retrieval_rank (the prior reads the merged position)")
            self.prior_scale = nn.Parameter(torch.tensor(float(config.rank_prior)))
            for head in self.heads:  # residual start: the logits are the prior alone
                assert isinstance(head, nn.Sequential)
                last = head[-1]
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
        if config.candidate_features:  # standardisation (set from the training rows) and a direct term
            width = config.candidate_features
            self.register_buffer("feature_mean", torch.zeros(width), persistent=True)
            self.register_buffer("feature_scale", torch.ones(width), persistent=True)
            self.feature_logits = nn.Linear(width, len(config.tasks), bias=False)
            nn.init.zeros_(self.feature_logits.weight)
        if config.match_features:  # a direct term per task, zero at the start like the heads
            self.match_logits = nn.Linear(NUM_MATCH_FEATURES, len(config.tasks), bias=False)
            nn.init.zeros_(self.match_logits.weight)

    def set_feature_scale(self, features: np.ndarray) -> None:
        """Standardise the candidate features by the mean and spread of ``features`` [R, F] (training
        rows)."""
        values = np.asarray(features, dtype=np.float64)
        self.feature_mean.copy_(torch.from_numpy(values.mean(axis=0)).float())
        self.feature_scale.copy_(torch.from_numpy(np.maximum(values.std(axis=0), 1e-6)).float())

    def candidate_features(self, batch: RankerBatch) -> torch.Tensor | None:
        """[B, N, F] standardised (clipped to +-5) candidate features, or None when the config has none."""
        if not self.config.candidate_features:
            return None
        if batch.candidate_features is None:
            raise ValueError("config.candidate_features needs batch.candidate_features")
        scaled = (batch.candidate_features - self.feature_mean) / self.feature_scale
        return scaled.clamp(-5.0, 5.0)

    def match_features(self, batch: RankerBatch) -> torch.Tensor | None:
        """[B, N, NUM_MATCH_FEATURES] (models.ranker.match), or None when the config has them off."""
        if not self.config.match_features:
            return None
        return history_match(
            batch.history_item, batch.history_level, batch.candidate_item, self.embed.item_category
        )

    def encode_context(self, batch: RankerBatch) -> tuple[list[KeyValues], torch.Tensor]:
        """-> (per-layer context keys/values [B, h, T, d/h], context_valid [B, T])."""
        hidden, valid = self.embed.context(batch)
        mask = context_mask(valid)
        cache: list[KeyValues] = []
        for layer in self.layers:
            hidden, key_values = layer(hidden, mask)
            cache.append(key_values)
        return cache, valid

    def _run_block(
        self,
        block: torch.Tensor,
        context_cache: list[KeyValues],
        block_caches: list[list[KeyValues]],
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One candidate-side block [R, M, d] through all layers; appends its keys/values per layer.

        context_cache holds per-layer keys/values already aligned with the R rows; mask [R, M, P + M]."""
        hidden = block
        for index, layer in enumerate(self.layers):
            past_keys = [context_cache[index][0]] + [kv[0] for kv in block_caches[index]]
            past_values = [context_cache[index][1]] + [kv[1] for kv in block_caches[index]]
            hidden, key_values = layer(
                hidden, mask, (torch.cat(past_keys, dim=2), torch.cat(past_values, dim=2))
            )
            block_caches[index].append(key_values)
        return hidden

    def _heads(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """stages: K+1 tensors [R, M, d] -> logits [R, num_tasks, M] (only the stages a head reads)."""
        normed: dict[int, torch.Tensor] = {}
        logits = []
        for task, head in enumerate(self.heads):
            stage = self.config.stage_of_task(task)
            if stage not in normed:
                normed[stage] = self.final_norm(stages[stage])
            logits.append(head(normed[stage]).squeeze(-1))
        return torch.stack(logits, dim=1)

    def forward(self, batch: RankerBatch) -> RankerOutput:
        """Grouped fast path: candidates are packed per group ([B*G, S, d]) so each one only computes
        attention against the context and its own group, never against masked-out other groups.

        The attention mask is a key-padding mask [B*G, 1, keys] shared by every query of a group (a valid
        candidate sees the valid context and the valid members of its group, itself included). Empty slots
        see the same keys; their outputs are never read and no valid query sees their keys, so the scores
        of valid candidates equal ``forward_reference``'s. Only the stages a task head reads are scattered
        back: the heads run on the grouped rows and the logits are scattered once.
        """
        index, slot_valid = group_layout(batch.group)  # [B, G, S]
        return RankerOutput(self.forward_grouped(batch, index, slot_valid), batch.group >= 0)

    def forward_grouped(
        self, batch: RankerBatch, index: torch.Tensor, slot_valid: torch.Tensor
    ) -> torch.Tensor:
        """``forward`` with the group layout given (index, slot_valid [B, G, S] from ``group_layout``) ->
        task logits [B, num_tasks, N]. Every shape is fixed by the inputs' shapes, so the function traces
        (``models.ranker.compiled``). Padding slots are scattered into a discarded column N."""
        context_cache, context_valid = self.encode_context(batch)
        batch_size, num_groups, size = index.shape
        num_candidates = batch.candidate_item.shape[1]
        rows = torch.arange(batch_size, device=index.device)[:, None, None].expand_as(index)
        match, features = self.match_features(batch), self.candidate_features(batch)
        tokens = self.embed.candidates(
            batch.candidate_item, batch.candidate_rank, batch.candidate_source_rank, match, features
        )  # [B, N, d]
        block = tokens[rows, index].reshape(batch_size * num_groups, size, -1)  # [B*G, S, d]
        grouped_cache = [
            (k.repeat_interleave(num_groups, dim=0), v.repeat_interleave(num_groups, dim=0))
            for k, v in context_cache
        ]
        valid = slot_valid.reshape(batch_size * num_groups, 1, size)
        context_part = context_valid.repeat_interleave(num_groups, dim=0)[:, None, :]  # [B*G, 1, T]
        block_caches: list[list[KeyValues]] = [[] for _ in self.layers]
        grouped_stages: list[torch.Tensor] = []
        for step in range(self.config.reasoning_steps + 1):
            if step > 0:
                block = grouped_stages[-1] + self.step_embedding.weight[step - 1]
            mask = torch.cat([context_part, valid.repeat(1, 1, step + 1)], dim=2)  # [B*G, 1, T + (k+1)S]
            grouped_stages.append(self._run_block(block, grouped_cache, block_caches, mask))
        grouped_logits = self._heads(grouped_stages)  # [B*G, num_tasks, S]
        num_tasks = grouped_logits.shape[1]
        grouped_logits = grouped_logits.reshape(batch_size, num_groups, num_tasks, size).transpose(2, 3)
        target = torch.where(slot_valid, index, torch.full_like(index, num_candidates))  # [B, G, S]
        logits = grouped_logits.new_zeros(batch_size, num_candidates + 1, num_tasks)
        logits.scatter_(
            1,
            target.reshape(batch_size, num_groups * size, 1).expand(-1, -1, num_tasks),
            grouped_logits.reshape(batch_size, num_groups * size, num_tasks),
        )
        logits = logits[:, :num_candidates].transpose(1, 2)
        return self._with_direct_terms(logits, batch, match, features)  # [B, num_tasks, N]

    def _with_direct_terms(
        self,
        logits: torch.Tensor,
        batch: RankerBatch,
        match: torch.Tensor | None,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """logits [B, num_tasks, N] + the linear terms of the match features and of the standardised
        candidate features [B, N, F] (each when on) +
        prior_scale * -log(1 + merged position) (``config.rank_prior``); a candidate without a position
        counts as one past the list's end."""
        if match is not None:
            logits = logits + self.match_logits(match).transpose(1, 2)
        if features is not None:
            logits = logits + self.feature_logits(features).transpose(1, 2)
        if self.config.rank_prior <= 0 or batch.candidate_rank is None:
            return logits
        rank = batch.candidate_rank
        rank = torch.where(rank < 0, torch.full_like(rank, rank.shape[1]), rank)
        prior = -torch.log1p(rank.to(logits.dtype))  # [B, N]
        return logits + self.prior_scale * prior[:, None, :]

    def forward_reference(self, batch: RankerBatch) -> RankerOutput:
        """Uncached reference: the whole ``[context ; blocks 0..k]`` sequence is recomputed at each step."""
        context, context_valid = self.embed.context(batch)
        num_context, num_candidates = context.shape[1], batch.candidate_item.shape[1]
        match, features = self.match_features(batch), self.candidate_features(batch)
        blocks = [
            self.embed.candidates(
                batch.candidate_item, batch.candidate_rank, batch.candidate_source_rank, match, features
            )
        ]
        stages = []
        for step in range(self.config.reasoning_steps + 1):
            hidden = torch.cat([context, *blocks], dim=1)
            mask = full_sequence_mask(context_valid, batch.group, step + 1)
            for layer in self.layers:
                hidden, _ = layer(hidden, mask)
            stages.append(hidden[:, num_context + step * num_candidates :])
            if step < self.config.reasoning_steps:
                blocks.append(stages[-1] + self.step_embedding.weight[step])
        logits = self._with_direct_terms(self._heads(stages), batch, match, features)
        return RankerOutput(logits, batch.group >= 0)

    def serving_score(
        self, task_logits: torch.Tensor, weights: tuple[float, ...] | None = None
    ) -> torch.Tensor:
        """task_logits [B, num_tasks, N] -> [B, N]: sum_t w_t * log sigmoid(s_t) (models.md 3.7, ours)."""
        weights = weights if weights is not None else self.config.serving_weights
        w = torch.tensor(weights, dtype=task_logits.dtype, device=task_logits.device)
        return (F.logsigmoid(task_logits) * w[None, :, None]).sum(dim=1)
