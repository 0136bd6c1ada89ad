"""Training the ranker on retriever-built groups (models.md 3.6, our version).

Per training request and epoch: candidates = up to ``train_max_positives`` of the session's items + hard
negatives drawn from the (frozen) retriever's top-``retrieval_depth`` + ``train_uniform_negatives`` random
items; they are split into random groups of C. Labels per task: funnel level of the item in the session
>= the task's level (items that stopped earlier in the funnel are negatives of the deeper tasks).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from models.data.positions import positions_in
from models.data.schema import FIRST_REAL_ID, Dataset, EventTable, Funnel
from models.ranker.anchors import AnchorSources, PopularityTimeline
from models.ranker.config import FeatureSizes, RankerConfig, TrainConfig
from models.ranker.features import RequestFeatures, collate, request_features
from models.ranker.losses import ranking_loss
from models.ranker.model import OnePieceRanker
from models.ranker.retrieval import CandidateRetriever, fit_cooccurrence
from models.ranker.samples import RankingRequest
from models.train.loop import LoopSettings, TrainState, run_epochs


@dataclass
class EncodedRequests:
    """Requests turned into model features plus what candidate sampling needs."""

    features: list[RequestFeatures]
    positive_item: list[np.ndarray]
    positive_level: list[np.ndarray]
    retrieved: list[np.ndarray]
    # per request [len(retrieved), S]: rank of each retrieved item in each candidate source (-1 = absent);
    # required when the model reads config.candidate_sources
    source_ranks: list[np.ndarray] | None = None
    # per request [len(retrieved), F] float32 features of each retrieved item; required when the model
    # reads config.candidate_features (a sampled candidate outside ``retrieved`` reads zeros)
    candidate_features: list[np.ndarray] | None = None


def feature_sizes(dataset: Dataset) -> FeatureSizes:
    fields = tuple(
        (name, int(column.max()) + 1 if len(column) else 2)
        for name, column in sorted(dataset.user_features.items())
    )
    return FeatureSizes(
        num_items=dataset.num_items,
        num_categories=max(dataset.num_categories, int(dataset.catalogue.category.max()) + 1),
        num_scenes=dataset.num_scenes,
        num_devices=dataset.num_devices,
        user_feature_sizes=fields,
    )


def fit_anchor_sources(
    train_events: EventTable, all_events: EventTable, num_items: int, config: RankerConfig
) -> AnchorSources:
    """Co-occurrence from training events; popularity timeline over all events (queried strictly before
    each request's day); the serving popular group = the last days of the training events."""
    cooccurrence = fit_cooccurrence(train_events, num_items)
    timeline = PopularityTimeline.from_events(all_events, num_items, config.popular_days, config.anchor_len)
    last = PopularityTimeline.from_events(train_events, num_items, config.popular_days, config.anchor_len)
    latest = last.popular_before(int(train_events.timestamp.max()) + 86_400)
    return AnchorSources(cooccurrence=cooccurrence, popular_latest=latest, timeline=timeline)


def encode_requests(
    config: RankerConfig,
    sizes: FeatureSizes,
    funnel: Funnel,
    sources: AnchorSources,
    requests: Sequence[RankingRequest],
    retrieved: list[np.ndarray],
    progress: bool = False,
) -> EncodedRequests:
    """Features of every request; ``retrieved`` = the frozen retriever's lists, one per request."""
    features = [
        request_features(config, sizes, funnel, sources, r.history, r.context)
        for r in tqdm(requests, desc="ranker features", disable=not progress, leave=False)
    ]
    return EncodedRequests(
        features, [r.positive_item for r in requests], [r.positive_level for r in requests], retrieved
    )


def retrieve_for(
    retriever: CandidateRetriever, requests: Sequence[RankingRequest], depth: int, chunk: int = 512
) -> list[np.ndarray]:
    """The retriever's top-``depth`` per request (in chunks, so a batched retriever stays bounded)."""
    out: list[np.ndarray] = []
    for begin in range(0, len(requests), chunk):
        out += retriever.retrieve([r.history for r in requests[begin : begin + chunk]], depth)
    return out


def sample_candidates(
    rng: np.random.Generator,
    config: RankerConfig,
    num_items: int,
    positive_item: np.ndarray,
    positive_level: np.ndarray,
    retrieved: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (items [<= train_candidates] int64, funnel level per item [same] int64, 0 = negative)."""
    if config.train_positives_in_retrieved:
        found = np.isin(positive_item, retrieved)
        if found.any():  # keep the serving distribution: every candidate comes from the retriever
            positive_item, positive_level = positive_item[found], positive_level[found]
    take = min(len(positive_item), config.train_max_positives)
    chosen = rng.choice(len(positive_item), size=take, replace=False)
    items, levels = positive_item[chosen], positive_level[chosen]
    top = retrieved[: config.retrieval_depth]  # the serving list's head, where the order matters
    hard_pool = top[~np.isin(top, positive_item)]
    num_hard = min(len(hard_pool), config.train_candidates - take - config.train_uniform_negatives)
    hard = rng.choice(hard_pool, size=max(num_hard, 0), replace=False)
    num_uniform = config.train_candidates - take - len(hard)
    uniform = rng.integers(FIRST_REAL_ID, num_items, size=num_uniform)
    uniform = uniform[~np.isin(uniform, positive_item)]
    negatives = np.concatenate([hard, uniform]).astype(np.int64)
    return np.concatenate([items, negatives]), np.concatenate([levels, np.zeros(len(negatives), np.int64)])


def gather_rows(table: np.ndarray, positions: np.ndarray, fill: float = -1) -> np.ndarray:
    """table [n, S], positions [m] (-1 = absent) -> [m, S] rows of ``table`` (its dtype), ``fill`` rows
    where absent."""
    out = np.full((len(positions), table.shape[1]), fill, dtype=table.dtype)
    found = positions >= 0
    out[found] = table[positions[found]]
    return out


def task_labels(levels: list[np.ndarray], tasks: tuple[int, ...], width: int) -> torch.Tensor:
    """Per-request levels -> [B, num_tasks, width] float labels (level >= task level)."""
    padded = np.zeros((len(levels), width), dtype=np.int64)
    for row, level in enumerate(levels):
        padded[row, : len(level)] = level
    thresholds = np.asarray(tasks, dtype=np.int64)[None, :, None]
    return torch.from_numpy((padded[:, None, :] >= thresholds).astype(np.float32))


def train_ranker(
    model: OnePieceRanker,
    data: EncodedRequests,
    train_config: TrainConfig,
    progress: bool = True,
    validate: Callable[[OnePieceRanker], dict[str, float]] | None = None,
) -> TrainState:
    """AdamW over shuffled requests with the shared loop (``models.train.loop``); returns its state, whose
    ``history`` has one record per epoch.

    With ``validate`` (model -> {metric: value}, NDCG@10 picks the epoch) every epoch is scored, the model
    ends on the best epoch's weights, and training stops after ``train_config.patience`` epochs without a
    better score; without it, the epoch with the lowest training loss is kept."""
    config = model.config
    torch.manual_seed(train_config.seed)
    rng = np.random.default_rng(train_config.seed)
    generator = torch.Generator().manual_seed(train_config.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=train_config.learning_rate,
        betas=(0.9, 0.98),
        weight_decay=train_config.weight_decay,
    )
    count = len(data.features)
    if count == 0:
        raise ValueError("no training requests (is the time split leaving any history before the cut?)")

    def batches(_: int) -> Iterator[list[int]]:
        order = rng.permutation(count)
        for begin in range(0, count, train_config.batch_size):
            yield order[begin : begin + train_config.batch_size].tolist()

    def step(rows: list[int]) -> float:
        sampled = [
            sample_candidates(
                rng,
                config,
                model.sizes.num_items,
                data.positive_item[i],
                data.positive_level[i],
                data.retrieved[i],
            )
            for i in rows
        ]
        ranks = [positions_in(s[0], data.retrieved[i]) for s, i in zip(sampled, rows, strict=True)]
        source_ranks = None
        if data.source_ranks is not None:
            source_ranks = [gather_rows(data.source_ranks[i], r) for r, i in zip(ranks, rows, strict=True)]
        candidate_features = None
        if data.candidate_features is not None:
            candidate_features = [
                gather_rows(data.candidate_features[i], r, 0.0) for r, i in zip(ranks, rows, strict=True)
            ]
        batch = collate(
            config,
            [data.features[i] for i in rows],
            [s[0] for s in sampled],
            generator,
            ranks,
            source_ranks,
            candidate_features,
        )
        labels = task_labels([s[1] for s in sampled], config.tasks, batch.candidate_item.shape[1])
        output = model(batch)
        loss, _ = ranking_loss(
            output.task_logits,
            labels,
            batch.group,
            config.contrastive_weight,
            config.contrastive_temperature,
            config.contrastive_scope,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    settings = LoopSettings(
        epochs=train_config.epochs,
        patience=train_config.patience,
        min_epochs=train_config.min_epochs,
        max_minutes=train_config.max_minutes,
        progress=progress,
        label="ranker",
    )
    steps_per_epoch = -(-count // train_config.batch_size)
    return run_epochs(model, batches, step, settings, validate, steps_per_epoch=steps_per_epoch)
