"""The replay: any ``ServedPipeline`` answers every test request, scored as users would receive it.

The pipeline may be one the recipe has just trained or one loaded from a bundle directory; both are built
by the same constructor (``models.recipe.trained.served_pipeline``), so a bundle replayed from disk gives
the offline metrics its manifest records. A target no source found is a miss. Rows: each source alone
(``kind`` source), the merged order, the ranker the gate kept over the merged order when there is one
(``ranker_over_merged``) and every trained ranker (``ranker_gbdt``, ``ranker_onepiece``), and what is
served (``pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from models.candidates.merge import MergeConfig
from models.candidates.served import MergedRanker, ServedPipeline
from models.candidates.sources import CandidateSource
from models.data.schema import Dataset
from models.inference import CandidateRanker, UserEncoder
from models.protocols import EvalTask
from models.recipe.lists import PIPELINE_METRICS, candidate_requests, list_values, served_items
from models.recipe.merge_stage import candidate_union, merged_lists
from models.recipe.periods import PipelinePeriods
from models.recipe.settings import RecipeSettings
from models.recipe.train import train_pipeline
from models.recipe.trained import TrainedPipeline, served_pipeline


@dataclass
class ReplayResult:
    """Per row: metric -> mean over the test requests, its kind, and NDCG@10 of every request [U] (NaN
    without a target; paired intervals across rows). ``test_unions``: per test request, the union of the
    source lists [C] and every source's score of each [C, S] (with ``keep_candidates``)."""

    metrics: dict[str, dict[str, float]]
    kinds: dict[str, str]
    per_request: dict[str, np.ndarray]
    test_unions: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def replay(
    sources: dict[str, CandidateSource],
    merge: MergeConfig,
    encoder: UserEncoder | None,
    ranker: CandidateRanker | MergedRanker | None,
    ranker_served: bool,
    task: EvalTask,
    progress: bool = False,
    keep_candidates: bool = False,
    rankers: dict[str, Any] | None = None,
    ablations: dict[str, Any] | None = None,
) -> ReplayResult:
    """Answers every request of ``task`` with the served pipeline of these parts and scores the rows.
    ``rankers``: every trained ranker by kind (``ranker`` among them), each scored over the merged order
    as a row ``ranker_<kind>``; ``ablations``: rankers on a subset of the features, rows of kind
    ``ablation`` under their own names."""
    served = served_pipeline(sources, merge, ranker, ranker_served)
    generator = served.generator
    vectors = None
    if encoder is not None and len(task):
        vectors = encoder.encode(task.histories, task.contexts)
    requests = candidate_requests(task, vectors)
    lists = [
        generator.source_lists(r)
        for r in tqdm(requests, desc="candidates (test)", disable=not progress, leave=False)
    ]
    unions = {
        i: candidate_union(generator, requests[i], lists[i])
        for i in (range(len(requests)) if keep_candidates else [])
    }
    merged = merged_lists(generator, requests, lists, generator.config, unions)
    rows: dict[str, list[np.ndarray]] = {}
    kinds: dict[str, str] = {}
    for column, name in enumerate(generator.config.sources):
        rows[name] = [request_lists[column].items for request_lists in lists]
        kinds[name] = "source"
    if "popular_plain" in sources:
        plain = sources["popular_plain"]
        rows["popular_plain"] = [plain.candidates(r, generator.config.total).items for r in requests]
        kinds["popular_plain"] = "source"
    rows["merged"] = [m.items for m in merged]
    kinds["merged"] = "merged"
    if ranker is not None:
        rows["ranker_over_merged"] = served_items(ServedPipeline(generator, ranker), requests, merged)
        kinds["ranker_over_merged"] = "ranker"
    for kind, other in (rankers or {}).items():
        reused = other is ranker and "ranker_over_merged" in rows
        rows[f"ranker_{kind}"] = (
            rows["ranker_over_merged"]
            if reused
            else served_items(ServedPipeline(generator, other), requests, merged)
        )
        kinds[f"ranker_{kind}"] = "ranker"
    scored = {id(other): f"ranker_{kind}" for kind, other in (rankers or {}).items()}
    for name, ablated in (ablations or {}).items():
        same = scored.get(id(ablated))  # a feature set the gate was offered: its ranker row already
        rows[name] = (
            rows[same] if same else served_items(ServedPipeline(generator, ablated), requests, merged)
        )
        kinds[name] = "ablation"
    rows["pipeline"] = served_items(served, requests, merged)
    kinds["pipeline"] = "pipeline"
    metrics: dict[str, dict[str, float]] = {}
    per_request: dict[str, np.ndarray] = {}
    for name, row_lists in rows.items():
        values = list_values(row_lists, task)
        metrics[name] = {metric: float(np.nanmean(values[metric])) for metric in PIPELINE_METRICS}
        per_request[name] = values["NDCG@10"]
    return ReplayResult(metrics, kinds, per_request, [unions[i] for i in sorted(unions)])


def replay_trained(
    trained: TrainedPipeline, task: EvalTask, progress: bool = False, keep_candidates: bool = False
) -> ReplayResult:
    """The replay of a pipeline the recipe has just trained."""
    return replay(
        trained.sources,
        trained.merge,
        trained.encoder,
        trained.ranker,
        trained.ranker_served,
        task,
        progress,
        keep_candidates,
        trained.rankers(),
        trained.ablations,
    )


@dataclass
class CandidateUnions:
    """What a fusion of the sources can reorder: per request, the union of the source lists (items [C]
    sorted) and every source's score of each (scores [C, S], columns in ``sources`` order). ``valid``: the
    ranker period's validation requests, rows ``valid_rows`` of its task, scored by the sources fitted
    before the test; ``test``: every test request, scored by the sources the test used. ``merge``: the
    tuned merge."""

    sources: tuple[str, ...]
    merge: MergeConfig
    valid_rows: np.ndarray
    valid: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class SeedOutcome:
    """One seed of ``tandem eval --stage pipeline``: the trained pipeline and its replay on the test."""

    trained: TrainedPipeline
    replayed: ReplayResult
    candidates: CandidateUnions | None = None  # with RecipeSettings.keep_candidates

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return self.replayed.metrics

    @property
    def kinds(self) -> dict[str, str]:
        return self.replayed.kinds

    @property
    def per_request(self) -> dict[str, np.ndarray]:
        return self.replayed.per_request

    @property
    def encoder_training(self) -> dict[str, Any] | None:
        return self.trained.training.get("encoder")

    @property
    def seconds(self) -> dict[str, float]:
        return dict(self.trained.training.get("seconds", {}))

    @property
    def merge(self) -> MergeConfig:
        return self.trained.merge

    @property
    def valid(self) -> dict[str, float]:
        return self.trained.valid

    @property
    def ranker_served(self) -> bool:
        return self.trained.ranker_served

    @property
    def ranker_log(self) -> list[dict[str, float]]:
        return list(self.trained.training.get("ranker_epochs", []))

    @property
    def recent_tried(self) -> list[dict[str, Any]]:
        return list(self.trained.training.get("recent_tried", []))

    @property
    def notes(self) -> list[str]:
        return self.trained.notes


def run_seed(
    dataset: Dataset,
    periods: PipelinePeriods,
    seed: int,
    settings: RecipeSettings,
) -> SeedOutcome:
    """Trains the recipe on ``periods`` (cut with ``settings.ranker_events``) and replays what it serves
    on their test requests."""
    trained = train_pipeline(dataset, periods, seed, settings)
    replayed = replay_trained(trained, periods.test, settings.progress, settings.keep_candidates)
    candidates = None
    if settings.keep_candidates:
        valid_rows, valid_unions = trained.training["valid_unions"]
        candidates = CandidateUnions(
            trained.served_pipeline().generator.config.sources,
            trained.merge,
            valid_rows,
            valid_unions,
            replayed.test_unions,
        )
    return SeedOutcome(trained, replayed, candidates)
