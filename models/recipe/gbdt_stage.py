"""The GBDT ranker stage: LightGBM LambdaMART over the merged top ``gbdt_depth`` of the ranker period's
requests, each request's features computed from the fit it is served from (``models.recipe.period_fits``)
with the served pipeline's own feature path (``MergedReranker.features_batch``).

Training requests: the ranker period's training users, every candidate of the merged head a row (label 1
for a target, 0 else; no negative sampling), requests whose targets the head misses dropped (no gradient).
Validation: the validation users; LightGBM stops early on them, and the gate (``ranker_gate``) judges the
model cut every ``gbdt_checkpoint_rounds`` rounds, cross-fitted over folds of those users, on NDCG@10 of the
served list computed like the test's (``list_values``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from models.candidates.feature_state import FeatureState
from models.candidates.features import ablation_columns, feature_names
from models.candidates.merge import MergedCandidates
from models.candidates.served import head_of, reranked_head
from models.candidates.sources import CandidateRequest
from models.protocols import EvalTask
from models.ranker.gbdt import GbdtConfig, train_gbdt
from models.ranker.gbdt_serving import MergedReranker, request_features
from models.recipe.lists import list_values
from models.recipe.ranker_stage import pick_epoch
from models.recipe.settings import RecipeSettings


@dataclass
class QueryRows:
    """Requests flattened into rows (``models.ranker.gbdt.RankingData``): features [R, F] float32, label [R]
    float32, group [Q + 1] int64 offsets; rows [Q]: each query's ranker-period row."""

    features: np.ndarray
    label: np.ndarray
    group: np.ndarray
    rows: np.ndarray

    def select(self, keep: np.ndarray) -> QueryRows:
        sizes = np.diff(self.group)
        flat = np.repeat(keep, sizes)
        group = np.concatenate([[0], np.cumsum(sizes[keep])]).astype(np.int64)
        return QueryRows(self.features[flat], self.label[flat], group, self.rows[keep])

    def columns(self, keep: np.ndarray) -> QueryRows:
        """The same queries with only the feature columns ``keep`` [F_k]."""
        return QueryRows(self.features[:, keep], self.label, self.group, self.rows)

    @property
    def found(self) -> np.ndarray:
        """[Q] bool: a target is among the query's rows."""
        owner = np.repeat(np.arange(len(self.rows)), np.diff(self.group))
        return np.bincount(owner, self.label, minlength=len(self.rows)) > 0


def query_rows(
    task: EvalTask,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    states: list[FeatureState],
    rows: np.ndarray,
    depth: int,
    progress: bool = False,
) -> QueryRows:
    """The features and labels of ``rows``' merged heads (top ``depth``), as served (``request_features``
    with each request's own fit's state, states [len(task)])."""
    blocks, labels, sizes = [], [], []
    for row in tqdm(rows.tolist(), desc="ranker features", disable=not progress, leave=False):
        head = head_of(merged[row], depth)
        blocks.append(request_features(requests[row], head, states[row]))
        targets = task.targets[row][task.target_mask[row]]
        labels.append(np.isin(head.items, targets).astype(np.float32))
        sizes.append(len(head))
    width = len(feature_names(merged[0].sources)) if merged else 0
    return QueryRows(
        np.concatenate(blocks) if blocks else np.zeros((0, width), np.float32),
        np.concatenate(labels) if labels else np.zeros(0, np.float32),
        np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        rows.astype(np.int64),
    )


def gbdt_config(settings: RecipeSettings, seed: int) -> GbdtConfig:
    return GbdtConfig(
        learning_rate=settings.gbdt_learning_rate,
        max_rounds=settings.gbdt_max_rounds,
        early_stopping_rounds=settings.gbdt_patience,
        num_threads=settings.threads,
        seed=seed,
    )


def gbdt_kind(feature_set: str) -> str:
    """The gate's name of the GBDT on ``feature_set`` (``models.candidates.features.ABLATIONS``): ``gbdt``
    for all features, else ``gbdt_<feature_set>`` (its report row: ``ranker_<kind>``)."""
    return "gbdt" if feature_set == "all" else f"gbdt_{feature_set}"


@dataclass
class GbdtModel:
    """One GBDT offered to the gate. reranker: the model cut at the checkpoint validation picks;
    epoch_values [C, V]: NDCG@10 of every validation request's served list at each checkpoint (what the gate
    cross-fits); checkpoints [C]: round counts; info: numbers for the manifest."""

    reranker: MergedReranker
    epoch_values: np.ndarray
    checkpoints: list[int]
    info: dict[str, Any]


@dataclass
class GbdtStage:
    """models: by gate kind (``gbdt_kind``), the GBDT on each of ``settings.gbdt_feature_sets``, all from
    the same requests and rows; ablations: by name (``models.candidates.features.ABLATIONS``), the same
    training on a subset of the features, early-stopped by LightGBM (the reports' ablation rows; a feature
    set the gate is offered is not trained twice: its model is the row)."""

    models: dict[str, GbdtModel]
    ablations: dict[str, MergedReranker] = field(default_factory=dict)


def train_gbdt_stage(
    task: EvalTask,
    requests: list[CandidateRequest],
    merged: list[MergedCandidates],
    states: list[FeatureState],
    train_rows: np.ndarray,
    valid_rows: np.ndarray,
    settings: RecipeSettings,
    seed: int,
    serve_state: FeatureState,
) -> GbdtStage:
    """states [len(task)]: each request's feature state (its fit's); serve_state: the state the returned
    rerankers hold until the recipe refits them. -> the trained stage."""
    sources = merged[0].sources
    names = feature_names(sources)
    depth, progress = settings.gbdt_depth, settings.progress
    train = query_rows(task, requests, merged, states, train_rows, depth, progress)
    train = train.select(train.found)
    valid = query_rows(task, requests, merged, states, valid_rows, depth, progress)
    config = gbdt_config(settings, seed)
    models = {}
    for feature_set in settings.gbdt_feature_sets or ("all",):
        columns = None if feature_set == "all" else ablation_columns(sources, feature_set)
        models[gbdt_kind(feature_set)] = _checkpointed_gbdt(
            task, merged, train, valid, names, columns, settings, config, serve_state
        )
    ablations = {}
    if seed < settings.gbdt_ablation_seeds:
        summary = models["gbdt"].info if "gbdt" in models else {}
        for ablation in settings.gbdt_ablations:
            columns = ablation_columns(sources, ablation)
            offered = models.get(gbdt_kind(ablation))
            if offered is not None:
                ablations[ablation] = offered.reranker
                summary[f"ablation_{ablation}"] = {
                    "features": len(columns),
                    "rounds_kept": offered.info["rounds_kept"],
                }
                continue
            model, ablated = train_gbdt(
                train.columns(columns),
                valid.select(valid.found).columns(columns),
                [names[i] for i in columns],
                config,
            )
            ablations[ablation] = MergedReranker(model, serve_state, depth, columns)
            summary[f"ablation_{ablation}"] = {
                "features": len(columns),
                "rounds_kept": ablated.best_iteration,
            }
    return GbdtStage(models, ablations)


def _checkpointed_gbdt(
    task: EvalTask,
    merged: list[MergedCandidates],
    train: QueryRows,
    valid: QueryRows,
    names: tuple[str, ...],
    columns: np.ndarray | None,
    settings: RecipeSettings,
    config: GbdtConfig,
    serve_state: FeatureState,
) -> GbdtModel:
    """The GBDT on the feature ``columns`` [F_k] (None: all), early-stopped by LightGBM on the validation
    requests with a target in their head, then cut at the checkpoint whose served lists score best on every
    validation request."""
    if columns is not None:
        train, valid = train.columns(columns), valid.columns(columns)
        names = tuple(names[i] for i in columns.tolist())
    full, info = train_gbdt(train, valid.select(valid.found), list(names), config, keep_all=True)
    step = max(1, settings.gbdt_checkpoint_rounds)
    checkpoints = sorted({*range(step, info.rounds_run + 1, step), info.best_iteration, info.rounds_run})
    staged = full.staged_scores(valid.features, checkpoints)
    epoch_values = np.stack(
        [served_ndcg(task, merged, valid, scores, settings.gbdt_depth) for scores in staged]
    )
    best = checkpoints[pick_epoch(np.nanmean(epoch_values, axis=1), np.zeros(len(checkpoints)))]
    chosen = full.truncated(best)
    summary = {
        "features": len(names),
        "train_requests": len(train.rows),
        "train_rows": len(train.label),
        "valid_requests": len(valid.rows),
        "rounds_run": info.rounds_run,
        "lightgbm_best_round": info.best_iteration,
        "rounds_kept": best,
        "config": asdict(config),
        "top_gain": chosen.gain_shares(10),
        "checkpoints": checkpoints,
    }
    reranker = MergedReranker(chosen, serve_state, settings.gbdt_depth, columns)
    return GbdtModel(reranker, epoch_values, checkpoints, summary)


def served_ndcg(
    task: EvalTask, merged: list[MergedCandidates], valid: QueryRows, scores: np.ndarray, depth: int
) -> np.ndarray:
    """NDCG@10 [V] of each validation request's served list (head in ``scores`` order, tail after), as
    ``list_values`` computes the test's."""
    lists = [np.zeros(0, np.int64)] * len(task)
    for q, row in enumerate(valid.rows.tolist()):
        head = scores[valid.group[q] : valid.group[q + 1]]
        lists[row] = reranked_head(merged[row], head)[0].items
    return list_values(lists, task, valid.rows)["NDCG@10"]
