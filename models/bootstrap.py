"""Paired bootstrap over test requests: how sure is a ratio of two rows' mean metric?

Both rows were scored on the same requests, so the requests are resampled together (Efron & Tibshirani,
1993, ch. 13 percentile intervals). The seeds' values of one request are averaged first: the interval is
about which users were tested, not about training noise (that is the report's ± std). Where one user has
several requests (the ranker period's validation requests), their values may move together, so the user
is what is resampled (a cluster bootstrap, Davison & Hinkley, 1997, section 3.8): resampling the requests
one by one gives an interval too narrow by up to the square root of the requests per user (fully when a
user's requests move as one; on ML-1M's gate they barely do, docs/pipeline.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioInterval:
    """mean(numerator) / mean(denominator) over requests, with a percentile interval."""

    ratio: float
    low: float
    high: float
    level: float
    resamples: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "ratio": self.ratio,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "resamples": self.resamples,
        }

    def text(self) -> str:
        interval = f"{self.low:.3f}-{self.high:.3f}"
        return f"{self.ratio:.3f} ({self.level:.0%} interval over test requests {interval})"


def paired_ratio_interval(
    numerator: np.ndarray,
    denominator: np.ndarray,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> RatioInterval:
    """numerator, denominator: [seeds, U] (or [U]) per-request values of two rows on the same requests,
    NaN where a request has no target; groups: [U] the user (any int label) of each request, resampled
    as a whole, or None (each request its own) -> the ratio of their means with a paired percentile
    interval."""
    top = np.atleast_2d(np.asarray(numerator, dtype=np.float64)).mean(axis=0)
    bottom = np.atleast_2d(np.asarray(denominator, dtype=np.float64)).mean(axis=0)
    if top.shape != bottom.shape:
        raise ValueError(f"rows scored on different requests: {top.shape} vs {bottom.shape}")
    if groups is not None and np.shape(groups) != top.shape:
        raise ValueError(f"groups {np.shape(groups)} do not match the requests {top.shape}")
    keep = ~(np.isnan(top) | np.isnan(bottom))
    top, bottom = top[keep], bottom[keep]
    if top.size == 0 or bottom.sum() <= 0:
        raise ValueError("no request with a target, or the denominator row is zero everywhere")
    if groups is not None:  # one row per user: the sums of its requests (the ratio of sums is unchanged)
        _, label = np.unique(np.asarray(groups)[keep], return_inverse=True)
        top, bottom = np.bincount(label, weights=top), np.bincount(label, weights=bottom)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, top.size, size=(resamples, top.size))
    ratios = top[picks].sum(axis=1) / np.maximum(bottom[picks].sum(axis=1), 1e-12)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return RatioInterval(float(top.sum() / bottom.sum()), float(low), float(high), level, resamples)
