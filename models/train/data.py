"""From the event table to encoder batches.

``histories_by_user`` slices an ``EventTable`` into per-user ``UserHistory`` objects (the serving type, so
training, evaluation and serving share ``models.encoder.layout``). ``LayoutStore`` keeps every training
user's layout as jagged arrays and yields length-bucketed, padded batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from models.data.defaults import defaults_for
from models.data.histories import history_from_rows
from models.data.schema import FIRST_REAL_ID, Dataset, EventTable
from models.encoder.config import EncoderConfig
from models.encoder.layout import JaggedTokens, build_layout, pad_jagged, stack_layouts
from models.encoder.serving import user_feature_matrix
from models.types import UserHistory


def histories_by_user(events: EventTable, dataset: Dataset) -> dict[int, UserHistory]:
    """user index -> that user's events (time order, as sorted in the table)."""
    if len(events) == 0:
        return {}
    order = np.argsort(events.user, kind="stable")
    users = events.user[order]
    starts = np.flatnonzero(np.concatenate([[True], users[1:] != users[:-1]]))
    ends = np.append(starts[1:], len(users))
    features = {name: dataset.user_features[name] for name in sorted(dataset.user_features)}
    result: dict[int, UserHistory] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        rows = order[start:end]
        user = int(users[start])
        result[user] = history_from_rows(events, rows, features, user)
    return result


def item_categories(dataset: Dataset) -> np.ndarray:
    return np.asarray(dataset.catalogue.category, dtype=np.int64)


def target_probabilities(events: EventTable, num_items: int) -> torch.Tensor:
    """f_j / F over training events (exact counts, models.md 4.2); [num_items] float64."""
    counts = np.bincount(events.item.astype(np.int64), minlength=num_items).astype(np.float64)
    counts[:FIRST_REAL_ID] = 0.0
    return torch.as_tensor(counts / max(counts.sum(), 1.0))


def request_items_for(dataset: Dataset) -> int:
    """Items per request when a preset leaves ``max_items_per_session`` at 0 (auto), chosen from the log's
    shape by ``models.data.defaults.choose_items_per_request``: 1 for rating logs (a sitting is hundreds of
    ratings entered one at a time; measured on ML-100K, docs/retrieval.md "Items per request") and for logs
    of mostly one session per user; otherwise the 20-item chunks of models.md 1.7.
    """
    return int(defaults_for(dataset.events).items_per_request.value)


def encoder_config_for(dataset: Dataset, base: EncoderConfig) -> EncoderConfig:
    """Fill the vocabulary sizes and funnel of ``base`` from a dataset, and resolve an automatic (0)
    ``max_items_per_session`` with ``request_items_for``. With one item per request (rating logs) the dense
    item-token term repeats the context tokens' targets and category side information measured worse, so
    both are switched off; with ``fold_context`` the layout becomes one token per rating, so the preset's
    ``max_tokens`` (sized for two tokens per rating) is halved: the same ratings, half the tokens."""
    values = base.to_dict()
    if values["max_items_per_session"] == 0:
        values["max_items_per_session"] = request_items_for(dataset)
        if values["max_items_per_session"] == 1 and values["fold_context"] and base.is_session:
            # presets size max_tokens for two tokens per rating; folded, the same ratings take half
            values["max_tokens"] = max(values["max_tokens"] // 2, 1)
        if values["max_items_per_session"] == 1:
            values["item_query_weight"] = 0.0
            # measured on ML-100K (docs/retrieval.md): first-genre side information in the item vectors
            # made training peak earlier and lowered NDCG@10; it helps on the sparse commerce logs
            values["item_side_info"] = False
    values.update(
        num_items=dataset.num_items,
        num_categories=max(dataset.num_categories, int(dataset.catalogue.category.max(initial=1)) + 1),
        num_scenes=max(dataset.num_scenes, int(dataset.events.scene.max(initial=1)) + 1),
        num_devices=max(dataset.num_devices, int(dataset.events.device.max(initial=1)) + 1),
        user_feature_sizes={
            name: int(values.max(initial=1)) + 1 for name, values in sorted(dataset.user_features.items())
        },
    )
    config = EncoderConfig.from_dict(values)
    config.set_funnel(dataset.funnel)
    return config


@dataclass
class PaddedBatch:
    tokens: dict[str, np.ndarray]  # [B, T] fields
    user_features: np.ndarray  # [B, F]


class LayoutStore:
    """Training layouts of many users (no request token: every session's own context token is a query)."""

    def __init__(
        self, histories: dict[int, UserHistory], config: EncoderConfig, item_category: np.ndarray
    ) -> None:
        users = sorted(u for u, h in histories.items() if len(h) >= 2)
        chosen = [histories[u] for u in users]
        layouts = [build_layout(h, None, config, item_category) for h in chosen]
        self.users = np.array(users, dtype=np.int64)
        self.jagged = stack_layouts(layouts, user_feature_matrix(config, chosen))

    def __len__(self) -> int:
        return len(self.users)

    def batch(self, rows: np.ndarray) -> PaddedBatch:
        offsets = self.jagged.offsets
        starts, ends = offsets[rows], offsets[rows + 1]
        lengths = ends - starts
        flat = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
        flat = flat + np.arange(int(lengths.sum()))
        sub = JaggedTokens(
            values={name: values[flat] for name, values in self.jagged.values.items()},
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            user_features=self.jagged.user_features[rows],
        )
        return PaddedBatch(pad_jagged(sub), sub.user_features)

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[PaddedBatch]:
        """Length-bucketed: users sorted by (noisy) length, cut into batches, batch order shuffled."""
        lengths = self.jagged.lengths.astype(np.float64)
        order = np.argsort(lengths * rng.uniform(0.9, 1.1, len(lengths)), kind="stable")
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        for index in rng.permutation(len(chunks)):
            yield self.batch(chunks[index])
