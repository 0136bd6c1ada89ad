"""What a model must provide to be evaluated: a factory that trains/fits it and a batch scorer.

A model plugs in by registering ``"module:function"`` in ``models.evaluate.registry``, where the function
takes a ``FitInput`` and returns a ``Scorer``. The harness hands the scorer the same ``UserHistory`` /
``RequestContext`` types serving uses (``models.inference``), so an offline score is a serving score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from models.data.schema import Dataset, EventTable
from models.data.splits import Split
from models.types import RequestContext, UserHistory


class Scorer(Protocol):
    """Scores the whole catalogue for a batch of requests."""

    def score_users(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        """Returns [B, num_items] float32 (higher is better). Columns 0 and 1 (pad, unknown) are ignored;
        the harness masks excluded items itself, so a scorer need not."""
        ...


@dataclass(frozen=True)
class EncoderBudget:
    """How a trained retriever is sized and budgeted under ``tandem eval`` (CLI flags, not the environment).

    preset: tiny | quick | default; epochs / max_minutes: per model and seed (None = the preset's);
    overrides: ``EncoderConfig`` / ``TrainConfig`` fields by name, for ablations."""

    preset: str = "default"
    epochs: int | None = None
    max_minutes: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    # once validation has chosen the epoch, this many more on train + validation before testing (the
    # data the baselines are fitted on); 0 = test the validated weights as they are
    continue_epochs: int = 0
    # validation cases (one per held-out user) that pick the epoch; more of them, a steadier score to stop on
    valid_users: int = 1000


@dataclass
class FitInput:
    """What a model may learn from under one protocol.

    ``train_events``: every event the protocol allows for training. Leave-last-out: all but each user's
    last event (the HSTU protocol A: the second-to-last is trained on). Next-session: every event before the
    test cut. A supplied split's test rows are never in it. ``valid_events``: the validation targets
    (leave-last-out: each user's second-to-last event, which is also inside ``train_events``; next-session:
    events in the validation period, also inside ``train_events``); a model that early-stops on them must
    hold them out of its own training.
    """

    dataset: Dataset
    split: Split
    protocol: str  # "leave-last-out" or "next-session"
    seed: int
    max_history: int = 200
    encoder: EncoderBudget = field(default_factory=EncoderBudget)
    exclude_seen: bool | None = None  # does the test exclude history items? None = the protocol's rule

    @property
    def train_events(self) -> EventTable:
        return self.dataset.events.take(self.split.trainable)

    @property
    def valid_events(self) -> EventTable:
        return self.dataset.events.take(self.split.valid)


class ModelFactory(Protocol):
    def __call__(self, fit: FitInput) -> Scorer: ...
