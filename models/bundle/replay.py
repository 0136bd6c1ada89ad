"""A bundle loaded from disk, replayed on a test period (``models.evaluate.replay``)."""

from __future__ import annotations

from models.bundle.load import Bundle
from models.evaluate.replay import ReplayResult, replay
from models.protocols import EvalTask


def replay_bundle(bundle: Bundle, task: EvalTask, progress: bool = False) -> ReplayResult:
    """The bundle's served pipeline on ``task``, with the ranker it ships (the one the gate kept) as
    ``ranker_over_merged`` and ``ranker_<kind>``; a ranker the recipe trained and did not ship has no row."""
    serving = bundle.manifest.serving
    shipped = {} if bundle.ranker is None else {serving.ranker_kind or "ranker": bundle.ranker}
    return replay(
        bundle.sources,
        bundle.merge,
        bundle.encoder,
        bundle.ranker,
        serving.ranker_served,
        task,
        progress,
        rankers=shipped,
    )
