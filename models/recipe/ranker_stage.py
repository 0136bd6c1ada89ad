"""The ranker stage: the OnePiece ranker trained on the merged candidates of the ranker period's training
users, and the gate that decides, on its validation users, whether it is served."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from models.bootstrap import paired_ratio_interval
from models.candidates.feature_state import FeatureState
from models.candidates.features import feature_names
from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergedCandidates
from models.candidates.served import ServedPipeline, head_of
from models.candidates.sources import CandidateRequest
from models.data.schema import Dataset
from models.ranker.featured import FeaturedOnePiece
from models.ranker.gbdt_serving import request_features
from models.recipe.lists import list_values, metric_means, served_on_rows
from models.recipe.periods import PipelinePeriods
from models.recipe.settings import RecipeSettings
from models.train.loop import TrainState, improved


def train_ranker(
    dataset: Dataset,
    periods: PipelinePeriods,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    rows: np.ndarray,
    names: tuple[str, ...],
    settings: RecipeSettings,
    seed: int,
    valid_rows: np.ndarray,
    generator: CandidateGenerator,
    states: list[FeatureState] | None = None,
    serve_state: FeatureState | None = None,
) -> tuple[Any, list[dict[str, float]], np.ndarray]:
    """Trains the ranker on the merged candidates of ``rows`` (positives only where a source found them);
    the epoch kept is the one with the best validation NDCG@10 over ``valid_rows``. With
    ``settings.ranker_candidate_features`` its candidate tokens read the GBDT's per-candidate features of
    the merged top ``gbdt_depth`` (states [len(requests)]: each request's fit's feature state;
    serve_state: the one the returned ``FeaturedOnePiece`` holds until refitted). -> (ranker, history,
    per-epoch NDCG@10 of every validation request [E, len(valid_rows)], what the gate cross-fits)."""
    from models.ranker.config import preset
    from models.ranker.model import OnePieceRanker
    from models.ranker.samples import RankingRequest
    from models.ranker.serving import TorchCandidateRanker
    from models.ranker.train import encode_requests, feature_sizes, fit_anchor_sources, train_ranker

    featured = settings.ranker_candidate_features
    if featured and (states is None or serve_state is None):
        raise ValueError("ranker_candidate_features needs every request's feature state")
    depth = settings.gbdt_depth if featured else settings.ranker_negative_depth
    config, train_config = preset(
        settings.ranker_preset,
        candidate_sources=names,
        train_positives_in_retrieved=True,
        train_uniform_negatives=0,
        train_candidates=settings.ranker_train_candidates,
        retrieval_depth=depth,
        use_retrieval_rank=True,  # the merged position: the ranker starts from the order it must beat
        rank_prior=settings.ranker_rank_prior,  # ... and, as a residual on it, returns it before training
        match_features=settings.ranker_match_features,
        item_id_dropout=settings.ranker_item_id_dropout,
        contrastive_scope=settings.ranker_contrastive_scope,
        serving_weights=(1.0, 0.0, 0.0),  # test targets are any interaction: the level-1 head decides
        candidate_features=len(feature_names(names)) if featured else 0,
    )
    train_config = replace(
        train_config,
        epochs=settings.ranker_epochs,
        seed=seed,
        threads=settings.threads,
        learning_rate=settings.ranker_learning_rate,
        weight_decay=settings.ranker_weight_decay,
        patience=settings.ranker_patience,
        min_epochs=settings.ranker_min_epochs,
    )
    task = periods.ranker
    heads = {row: head_of(merged[row], depth) if featured else merged[row] for row in rows.tolist()}
    chosen_rows, chosen = [], []
    for row in rows.tolist():
        mask = task.target_mask[row]
        found = np.isin(task.targets[row][mask], heads[row].items)
        if not found.any():
            continue  # at serving such a request has nothing right to rank
        chosen_rows.append(row)
        chosen.append(
            RankingRequest(
                int(task.users[row]),
                requests[row].history,
                requests[row].context,
                task.targets[row][mask],
                np.maximum(periods.ranker_levels[row][mask], 1),
            )
        )
    if not chosen:
        raise ValueError(f"{dataset.name}: no ranker request has a positive among its candidates")
    if settings.ranker_max_requests and len(chosen) > settings.ranker_max_requests:
        keep = np.sort(
            np.random.default_rng(seed).choice(len(chosen), settings.ranker_max_requests, replace=False)
        )
        chosen = [chosen[i] for i in keep.tolist()]
        chosen_rows = [chosen_rows[i] for i in keep.tolist()]
    steps_per_epoch = -(-len(chosen) // train_config.batch_size)
    epochs = max(train_config.epochs, -(-settings.ranker_min_steps // steps_per_epoch))
    train_config = replace(train_config, epochs=epochs)
    fit_events = periods.fit_events(dataset)
    sizes = feature_sizes(dataset)
    anchors = fit_anchor_sources(fit_events, fit_events, dataset.num_items, config)
    data = encode_requests(
        config, sizes, dataset.funnel, anchors, chosen, [heads[r].items for r in chosen_rows]
    )
    data.source_ranks = [heads[r].source_rank for r in chosen_rows]
    torch.manual_seed(seed)
    model = OnePieceRanker(config, sizes, torch.from_numpy(dataset.catalogue.category))
    ranker: Any = TorchCandidateRanker(model, anchors, dataset.funnel, f"ranker-{dataset.name}-{seed}")
    pipelines: dict[int, tuple[ServedPipeline, np.ndarray]] = {}
    if featured:
        assert states is not None and serve_state is not None
        data.candidate_features = [request_features(requests[r], heads[r], states[r]) for r in chosen_rows]
        model.set_feature_scale(np.concatenate(data.candidate_features))
        torch_ranker, ranker = ranker, FeaturedOnePiece(ranker, serve_state, depth)
        groups: dict[int, list[int]] = {}
        for row in valid_rows.tolist():  # validation requests read their own fit's state
            groups.setdefault(id(states[row]), []).append(row)
        for group in groups.values():
            served = FeaturedOnePiece(torch_ranker, states[group[0]], depth)
            pipelines[id(states[group[0]])] = (ServedPipeline(generator, served), np.asarray(group))

    epoch_values: list[np.ndarray] = []

    def validate(_: OnePieceRanker) -> dict[str, float]:
        if featured:
            lists = [np.zeros(0, np.int64)] * len(task)
            for pipeline, group in pipelines.values():
                served = served_on_rows(pipeline, requests, merged, len(task), group)
                for row in group.tolist():
                    lists[row] = served[row]
        else:
            lists = served_on_rows(ServedPipeline(generator, ranker), requests, merged, len(task), valid_rows)
        values = list_values(lists, task, valid_rows)
        epoch_values.append(values["NDCG@10"])
        return metric_means(values)

    state = train_ranker(model, data, train_config, progress=settings.progress, validate=validate)
    return ranker, state.history, np.stack(epoch_values)


@dataclass
class RankerCandidate:
    """A trained ranker offered to the gate: epoch_values [E, V] NDCG@10 of each validation request's served
    list per epoch (GBDT: per checkpoint), train_losses [E] (the tie-break; None: earlier wins)."""

    ranker: Any
    epoch_values: np.ndarray
    train_losses: np.ndarray | None


def choose_ranker(
    candidates: dict[str, RankerCandidate],
    merged_values: np.ndarray,
    folds: np.ndarray,
    users: np.ndarray,
    settings: RecipeSettings,
) -> tuple[str, bool, dict[str, float]]:
    """Each candidate through ``ranker_gate`` against the merged order (merged_values [V]) on the same folds
    and users. -> (the kind kept: the passing one with the highest cross-fitted ratio, else the highest
    ratio; whether it is served; gate numbers: per kind ``<kind>_gate_ratio`` / ``_gate_low`` /
    ``_served``, and ``gate_ratio``, ``gate_low``, ``gate_requests`` of the kind kept)."""
    numbers: dict[str, float] = {}
    passed: dict[str, bool] = {}
    for kind, candidate in candidates.items():
        losses = candidate.train_losses
        if losses is None:
            losses = np.zeros(len(candidate.epoch_values))
        serve, gate = ranker_gate(
            candidate.epoch_values,
            losses,
            merged_values,
            folds,
            settings.ranker_gate_level,
            settings.ranker_gate_margin,
            users,
        )
        passed[kind] = serve
        numbers.update({f"{kind}_{key}": value for key, value in gate.items()})
        numbers[f"{kind}_served"] = float(serve)
    ratio = {kind: numbers[f"{kind}_gate_ratio"] for kind in candidates}
    pool = [k for k in candidates if passed[k]] or list(candidates)
    kept = max(pool, key=lambda k: ratio[k])
    for key in ("gate_ratio", "gate_low", "gate_requests"):
        if f"{kept}_{key}" in numbers:
            numbers[key] = numbers[f"{kept}_{key}"]
    return kept, passed[kept], numbers


def ranker_gate(
    epoch_values: np.ndarray,
    train_losses: np.ndarray,
    base: np.ndarray,
    folds: np.ndarray,
    level: float,
    margin: float = 0.0,
    users: np.ndarray | None = None,
) -> tuple[bool, dict[str, float]]:
    """Serve the ranker? Cross-fitted against the merged order on every validation request.

    epoch_values [E, V]: NDCG@10 of the ranker's served list per epoch and validation request; train_losses
    [E]: each epoch's training loss (the loop's tie-break); base [V]: the merged order's NDCG@10; folds [V]:
    each request's fold (by user). Each fold is judged at the epoch the other folds pick by the training
    loop's own rule (one fold: the epoch it picks itself). Served when the cross-fitted mean NDCG@10 is above
    the merged order's times 1 + ``margin`` (the gain pays for the ranker's forward pass) and, with ``level``
    > 0, the lower end of the paired bootstrap interval (two-sided ``level``) of ranker / merged NDCG@10 is
    above 1 (the gain is not noise of the validation users). users [V]: each request's user, the unit the
    bootstrap resamples (a user's requests move together); None: each request alone. -> (serve,
    gate_ratio, gate_low, gate_requests)."""
    judged = np.full(base.shape, np.nan)
    for fold in np.unique(folds).tolist():
        judge = folds == fold
        picks = ~judge if (~judge).any() else judge
        scores = np.array([_mean_or_zero(v[picks]) for v in epoch_values])
        judged[judge] = epoch_values[pick_epoch(scores, train_losses), judge]
    numbers = {"gate_requests": float(np.isfinite(base).sum())}
    if level <= 0 or np.nansum(base) <= 0:
        higher = float(np.nanmean(judged)) > float(np.nanmean(base)) * (1.0 + margin)
        return higher, {**numbers, "gate_ratio": float(np.nansum(judged) / max(np.nansum(base), 1e-12))}
    interval = paired_ratio_interval(judged, base, level=level, seed=0, groups=users)
    serve = interval.ratio > 1.0 + margin and interval.low > 1.0
    return serve, {**numbers, "gate_ratio": interval.ratio, "gate_low": interval.low}


def _mean_or_zero(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else 0.0


def pick_epoch(scores: np.ndarray, train_losses: np.ndarray) -> int:
    """Index of the epoch the training loop keeps, given each epoch's validation score [E] and training loss
    [E] (``models.train.loop.improved``: the higher score, an equal one to the lower loss)."""
    state = TrainState()
    best = 0
    for index, (score, loss) in enumerate(zip(scores.tolist(), train_losses.tolist(), strict=True)):
        record = {"val_NDCG@10": score, "train_loss": loss}
        if improved(record, state):
            best, state.best_score, state.best_loss = index, score, loss
    return best


def ranker_period_rows(
    users: np.ndarray, valid_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the ranker period's requests [R] -> (validation rows, training rows), split by user; no
    validation rows when fewer than two users have a request (nothing would be left to train on)."""
    distinct = np.unique(users)
    if len(distinct) < 2:
        return np.zeros(0, np.int64), np.arange(len(users))
    chosen = rng.choice(distinct, size=max(1, int(len(distinct) * valid_share)), replace=False)
    is_valid = np.isin(users, chosen)
    return np.flatnonzero(is_valid), np.flatnonzero(~is_valid)


def user_folds(users: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Requests' users [V] -> each request's fold in [0, folds) [V], every user's requests in one fold
    (all 0 with ``folds`` < 2 or fewer than two users)."""
    distinct = np.unique(users)
    if folds < 2 or len(distinct) < 2:
        return np.zeros(len(users), np.int64)
    fold_of = rng.permutation(len(distinct)) % min(folds, len(distinct))
    return fold_of[np.searchsorted(distinct, users)].astype(np.int64)
