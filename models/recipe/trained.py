"""``TrainedPipeline``: what the recipe returns and a bundle stores as it is, without a refit.

Fitted candidate sources (each by name, ``popular_plain`` included for the reports), the session encoder and
its index, the tuned merge, the ranker and the gate's decision, and the numbers that decided them. Its
``served_pipeline`` is the object ``/v1/recommend`` serves once the bundle is loaded, built the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
from models.candidates.served import MergedRanker, ServedPipeline
from models.candidates.sources import CandidateSource
from models.inference import CandidateRanker, UserEncoder


@dataclass(frozen=True)
class PeriodsSpec:
    """How the dataset was cut (``models.recipe.periods.pipeline_periods`` arguments): enough to rebuild
    the very test requests from the data, for a replay of the bundle from disk."""

    protocol: str
    ranker_events: int | None
    exclude_seen: bool
    ranker_windows: int | None = None


@dataclass
class TrainedPipeline:
    """sources: name -> fitted source (on the fit and ranker periods; ``ann`` over ``index`` when an
    encoder was trained); merge: which sources merge and how; ranker_served: the gate's decision;
    valid: validation numbers (per source, merged, rankers, gate); training: per-stage logs and seconds;
    ranker: the ranker the gate kept (served when ``ranker_served``), of kind ``ranker_kind``."""

    dataset: str
    seed: int
    periods: PeriodsSpec
    sources: dict[str, CandidateSource]
    merge: MergeConfig
    encoder: UserEncoder | None = None
    index: Any | None = None  # models.index.ItemIndex over the encoder's item vectors
    ranker: CandidateRanker | MergedRanker | None = None
    ranker_served: bool = False
    # which ranker ``ranker`` is: "gbdt", "gbdt_<feature set>" (models.recipe.gbdt_stage.gbdt_kind) or
    # "onepiece"
    ranker_kind: str | None = None
    # the rankers trained beside it that the gate did not keep, by kind (the replay reports them)
    other_rankers: dict[str, Any] = field(default_factory=dict)
    # feature ablations of the GBDT by name ("gbdt_no_context", ...): report rows only, never served
    ablations: dict[str, Any] = field(default_factory=dict)
    recent: dict[str, Any] | None = None  # the recent-items scoring kept (RecentItemsSource.to_dict)
    valid: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was skipped, and why

    def rankers(self) -> dict[str, Any]:
        """Every trained ranker by kind, the kept one first."""
        kept = {} if self.ranker is None else {self.ranker_kind or "ranker": self.ranker}
        return {**kept, **self.other_rankers}

    def served_pipeline(self, total: int | None = None) -> ServedPipeline:
        """The served order for lists of at most ``total`` candidates (default: the merge's own total)."""
        return served_pipeline(self.sources, self.merge, self.ranker, self.ranker_served, total)

    @property
    def served_path(self) -> str:
        """What answers a known user, as served: ``session_encoder`` or ``baseline:<merged sources>``, with
        ``+ranker`` only when the gate served the ranker (a trained but refused ranker is not named)."""
        base = "session_encoder" if self.encoder is not None else "baseline:" + "+".join(self.merge.sources)
        return base + ("+ranker" if self.ranker_served and self.ranker is not None else "")


def served_pipeline(
    sources: dict[str, CandidateSource],
    merge: MergeConfig,
    ranker: CandidateRanker | MergedRanker | None,
    ranker_served: bool,
    total: int | None = None,
) -> ServedPipeline:
    """The one constructor of a served pipeline, for a trained pipeline and a loaded bundle alike: the
    merge's sources that are present (a bundle without an index has no ``ann``), cut at ``total``."""
    keep = [i for i, name in enumerate(merge.sources) if name in sources]
    config = replace(
        merge,
        sources=tuple(merge.sources[i] for i in keep),
        quotas=tuple(merge.quotas[i] for i in keep),
        weights=tuple(merge.weights[i] for i in keep),
        total=merge.total if total is None else min(total, merge.total),
    )
    return ServedPipeline(CandidateGenerator(list(sources.values()), config), ranker, ranker_served)
