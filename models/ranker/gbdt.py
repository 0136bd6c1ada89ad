"""A LightGBM LambdaMART reranker over the merged candidates' features (``models.candidates.features``).

Training: one query group per request (all of its merged candidates, label 1 for the target), the
``lambdarank`` objective, early stopping on NDCG@``eval_at`` of validation requests built exactly like the
test requests; the budget is a number of boosting rounds, never wall-clock time. The model is kept as
LightGBM's own text format (``model_to_string``, the best iteration only), never pickled, and identified by
the sha256 of that text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import numpy as np


@dataclass(frozen=True)
class GbdtConfig:
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_data_in_leaf: int = 100
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_rounds: int = 1500  # boosting rounds at most
    early_stopping_rounds: int = 100  # stop after this many rounds without a better validation NDCG
    eval_at: int = 10
    truncation_level: int = 30  # lambdarank: pairs are formed with the top this-many of each query
    max_bin: int = 63  # histogram bins per feature (LightGBM's default 255 trains ~2x slower here)
    num_threads: int = 1
    seed: int = 0

    def params(self) -> dict[str, Any]:
        """The LightGBM parameters (deterministic: row-wise histograms, fixed seeds)."""
        return {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [self.eval_at],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": self.bagging_freq,
            "lambda_l2": self.lambda_l2,
            "lambdarank_truncation_level": self.truncation_level,
            "max_bin": self.max_bin,
            "num_threads": self.num_threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }


class RankingData(Protocol):
    """Query groups of rows: features [R, F] float32, label [R] (1 = relevant), group [Q + 1] int64 offsets
    (``models.candidates.training_requests.RequestSet`` is one)."""

    @property
    def features(self) -> np.ndarray: ...

    @property
    def label(self) -> np.ndarray: ...

    @property
    def group(self) -> np.ndarray: ...


class GbdtRanker:
    """A trained booster, held as its model text, and the feature names it reads in column order."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.booster = lgb.Booster(model_str=text)
        self.feature_names = tuple(self.booster.feature_name())
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        self.version = f"gbdt-{self.sha256[:12]}"
        self.compiled: Callable[[np.ndarray], np.ndarray] | None = None

    def split_features(self) -> frozenset[str]:
        """The names of the features at least one split of the model reads (the others never change a
        score)."""
        splits = self.booster.feature_importance("split")
        return frozenset(name for name, count in zip(self.feature_names, splits, strict=True) if count > 0)

    def compile(self) -> bool:
        """Scores with the trees compiled to machine code from now on (``models.ranker.gbdt_compiled``);
        False when that is not possible here (LightGBM keeps scoring)."""
        from models.ranker.gbdt_compiled import compile_trees

        self.compiled = compile_trees(self.text)
        return self.compiled is not None

    @property
    def num_trees(self) -> int:
        return int(self.booster.num_trees())

    def score(self, features: np.ndarray) -> np.ndarray:
        """features [N, F] float32 -> [N] float32 scores (higher is better)."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != len(self.feature_names):
            raise ValueError(f"expected [N, {len(self.feature_names)}] features, got {features.shape}")
        if features.shape[0] == 0:
            return np.zeros(0, np.float32)
        if self.compiled is not None:
            return self.compiled(features).astype(np.float32)
        return np.asarray(self.booster.predict(features, num_threads=1), dtype=np.float32)

    def staged_scores(self, features: np.ndarray, checkpoints: Sequence[int]) -> np.ndarray:
        """features [N, F] -> [C, N] float32 scores of the model cut after each of ``checkpoints`` (round
        counts), each exactly what ``truncated(rounds).score`` gives (one full prediction per cut: summing
        slices would differ in the last bits and reorder near-ties)."""
        features = np.asarray(features, dtype=np.float32)
        out = np.zeros((len(checkpoints), features.shape[0]), np.float32)
        if features.shape[0]:
            for row, stop in enumerate(checkpoints):
                out[row] = self.booster.predict(features, num_iteration=stop, num_threads=1)
        return out

    def truncated(self, rounds: int) -> GbdtRanker:
        """The same model cut after its first ``rounds`` boosting rounds."""
        return GbdtRanker(self.booster.model_to_string(num_iteration=rounds))

    def score_batch(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Several requests' [N_i, F] features in one call -> [N_i] scores each."""
        if not features:
            return []
        sizes = np.cumsum([len(f) for f in features])[:-1]
        return np.split(self.score(np.concatenate(features)), sizes)

    def gain(self) -> dict[str, float]:
        """Total split gain per feature, largest first."""
        gains = self.booster.feature_importance(importance_type="gain")
        order = np.argsort(-gains, kind="stable")
        return {self.feature_names[i]: float(gains[i]) for i in order}

    def gain_shares(self, count: int) -> dict[str, float]:
        """The ``count`` features of largest split gain -> their share of the total gain (4 decimals)."""
        gains = self.gain()
        total = sum(gains.values()) or 1.0
        return {name: round(gain / total, 4) for name, gain in list(gains.items())[:count]}

    def save(self, path: Path | str) -> str:
        """Writes the model text to ``path``; returns its sha256 (hex)."""
        Path(path).write_text(self.text)
        return self.sha256

    @staticmethod
    def from_string(text: str, sha256: str | None = None) -> GbdtRanker:
        """The ranker of a model text; with ``sha256`` the text must match it."""
        if sha256 is not None and hashlib.sha256(text.encode()).hexdigest() != sha256:
            raise ValueError("GBDT model text does not match its sha256")
        return GbdtRanker(text)

    @staticmethod
    def load(path: Path | str, sha256: str | None = None) -> GbdtRanker:
        """Reads a model written by ``save``; with ``sha256`` the text must match it."""
        return GbdtRanker.from_string(Path(path).read_text(), sha256)


def _dataset(data: RankingData, names: Sequence[str], reference: lgb.Dataset | None = None) -> lgb.Dataset:
    return lgb.Dataset(
        np.asarray(data.features, dtype=np.float32),
        label=np.asarray(data.label, dtype=np.float32),
        group=np.diff(data.group),
        feature_name=list(names),
        reference=reference,
        free_raw_data=True,
    )


@dataclass
class TrainInfo:
    best_iteration: int
    best_valid_ndcg: float
    rounds_run: int
    config: dict[str, Any]


def train_gbdt(
    train: RankingData,
    valid: RankingData,
    feature_names: Sequence[str],
    config: GbdtConfig | None = None,
    keep_all: bool = False,
) -> tuple[GbdtRanker, TrainInfo]:
    """LambdaMART on ``train``, early-stopped on NDCG@eval_at of ``valid``; the returned ranker holds the
    best iteration's trees only, unless ``keep_all``: then every round run (``truncated(info.best_iteration)``
    cuts it; the recipe's gate judges several cuts)."""
    config = config or GbdtConfig()
    train_set = _dataset(train, feature_names)
    valid_set = _dataset(valid, feature_names, train_set)
    history: dict[str, Any] = {}
    booster = lgb.train(
        config.params(),
        train_set,
        num_boost_round=config.max_rounds,
        keep_training_booster=keep_all,  # else lgb.train keeps only the best iteration's trees
        valid_sets=[valid_set],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False),
            lgb.record_evaluation(history),
        ],
    )
    best = int(booster.best_iteration) or int(booster.current_iteration())
    curve = history.get("valid", {}).get(f"ndcg@{config.eval_at}", [])
    ranker = GbdtRanker(booster.model_to_string(num_iteration=-1 if keep_all else best))
    info = TrainInfo(best, float(curve[best - 1]) if curve else float("nan"), len(curve), asdict(config))
    return ranker, info
