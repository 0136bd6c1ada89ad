"""Most-popular baseline: recency-weighted, per scene, and time-aware (only events before the query time).

Score of item i for a request at time q in scene s:
    share_all(i, q) + scene_weight * share_scene(i, q, s),
where share(i, q) = Σ_{events e of i, t_e < q} 2^{-(q - t_e) / half_life} / Σ over all items (a share, so the
time factor of q cancels and old data never overflows). Unknown scene (1) uses the global share only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.baselines.top_k import top_k_items
from models.data.schema import FIRST_REAL_ID, UNKNOWN_ID, EventTable
from models.scorer import FitInput
from models.types import RequestContext, UserHistory

LOG_FLOOR = -700.0  # exp() underflows below about -745; older events count as ~0 either way


@dataclass(frozen=True)
class PopularityConfig:
    half_life_days: float = 7.0
    scene_weight: float = 1.0


class PopularityScorer:
    """Time-aware recency-weighted popularity. events: the training events (any order)."""

    def __init__(self, events: EventTable, num_items: int, num_scenes: int, config: PopularityConfig):
        if config.half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive, got {config.half_life_days}")
        self.config = config
        self.num_items = num_items
        self.num_scenes = num_scenes
        order = np.argsort(events.timestamp, kind="stable")
        self.timestamp = events.timestamp[order]
        self.item = events.item[order].astype(np.int64)
        self.scene = events.scene[order].astype(np.int64)
        tau = config.half_life_days * 86400 / np.log(2)
        reference = float(self.timestamp[-1]) if len(self.timestamp) else 0.0
        self.weight = np.exp(np.maximum((self.timestamp - reference) / tau, LOG_FLOOR))

    def score_at(self, times: np.ndarray, scenes: np.ndarray) -> np.ndarray:
        """times, scenes: [B] -> [B, num_items] float32 using only events strictly before each time."""
        n, b = self.num_items, len(times)
        out = np.zeros((b, n), dtype=np.float32)
        total = np.zeros(n)
        per_scene = np.zeros(self.num_scenes * n)
        position = 0
        for query in np.argsort(times, kind="stable").tolist():
            stop = int(np.searchsorted(self.timestamp, times[query], side="left"))
            if stop > position:
                items, weights = self.item[position:stop], self.weight[position:stop]
                total += np.bincount(items, weights, minlength=n)
                per_scene += np.bincount(
                    self.scene[position:stop] * n + items, weights, minlength=len(per_scene)
                )
                position = stop
            score = total / total.sum() if total.sum() > 0 else total.copy()
            scene = int(scenes[query])
            if scene > UNKNOWN_ID and scene < self.num_scenes and self.config.scene_weight > 0:
                row = per_scene[scene * n : (scene + 1) * n]
                if row.sum() > 0:
                    score = score + self.config.scene_weight * row / row.sum()
            out[query] = score
        return out

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        times = np.array([c.timestamp for c in contexts], dtype=np.int64)
        scenes = np.array([c.scene for c in contexts], dtype=np.int64)
        return self.score_at(times, scenes)

    def top_k(self, timestamp: int, scene: int, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """Serving: the k best item indices (best first) at ``timestamp`` in ``scene``, minus ``exclude``."""
        return top_k_items(self.score_at(np.array([timestamp]), np.array([scene]))[0], k, exclude)


def popularity_after(
    events: EventTable, num_items: int, num_scenes: int, config: PopularityConfig
) -> np.ndarray:
    """[num_items] float32: the global (no scene) share just after the last of ``events`` (rows 0/1 = 0).
    What the bundle serves as its popularity order and the ``popular`` candidate source."""
    scorer = PopularityScorer(events, num_items, num_scenes, config)
    query_time = int(events.timestamp.max()) + 1 if len(events) else 0
    scores = scorer.score_at(np.array([query_time]), np.array([UNKNOWN_ID]))[0].astype(np.float32)
    scores[:FIRST_REAL_ID] = 0.0
    return scores


def build_popularity(fit: FitInput, config: PopularityConfig | None = None) -> PopularityScorer:
    """Registry entry: fit on the protocol's training events."""
    dataset = fit.dataset
    return PopularityScorer(
        fit.train_events, dataset.num_items, dataset.num_scenes, config or PopularityConfig()
    )
