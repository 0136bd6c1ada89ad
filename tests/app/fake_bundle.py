"""A tiny deterministic bundle satisfying models.bundle.load.ServableBundle (as its ``Bundle`` does),
for serving tests.

Four categories of fifteen items; item vectors cluster by category, so a user's vector (recency-weighted
mean of their recent items' vectors) retrieves their category first, and new events in another category
move it there. The ranker scores candidates by the newest history item's vector. ``version`` changes the
reported model version (reload tests) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.bundle.format import Manifest, ServingChoice
from models.candidates.merge import default_merge
from models.candidates.served import ServedPipeline
from models.candidates.sources import (
    AnnSource,
    CandidateSource,
    CategorySource,
    PopularSource,
    RecentItemsSource,
)
from models.data.schema import FIRST_REAL_ID, Catalogue
from models.recipe.trained import served_pipeline
from models.types import RequestContext, UserHistory

NUM_CATEGORIES = 4
ITEMS_PER_CATEGORY = 15
NUM_USERS = 12
DIM = 8
CATEGORY_NAMES = [f"c{c}" for c in range(NUM_CATEGORIES)]


def item_raw_id(position: int) -> str:
    return f"i{position}"


def category_of_position(position: int) -> int:
    return position // ITEMS_PER_CATEGORY


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class FakeEncoder:
    def __init__(self, item_vectors: np.ndarray, version: str):
        self._item_vectors = item_vectors
        self.version = version
        self.dim = item_vectors.shape[1]
        self.calls = 0

    def encode(self, histories: list[UserHistory], contexts: list[RequestContext]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(histories), self.dim), dtype=np.float32)
        for row, (history, context) in enumerate(zip(histories, contexts, strict=True)):
            recent = history.item[-5:]
            if recent.size:
                weights = np.linspace(0.5, 1.0, recent.size, dtype=np.float32)[:, None]
                out[row] = (self._item_vectors[recent] * weights).sum(axis=0)
            elif context.anchors.size:
                out[row] = self._item_vectors[context.anchors].sum(axis=0)
            else:
                out[row, 0] = 1.0
        return _unit(out)

    def item_vectors(self) -> np.ndarray:
        return self._item_vectors


class FakeRanker:
    def __init__(self, item_vectors: np.ndarray, version: str):
        self._item_vectors = item_vectors
        self.version = version

    def score(self, history: UserHistory, context: RequestContext, candidates: np.ndarray) -> np.ndarray:
        anchor = history.item[-1] if len(history) else (context.anchors[0] if context.anchors.size else 2)
        return (self._item_vectors[candidates] @ self._item_vectors[anchor]).astype(np.float32)

    candidate_sources: tuple[str, ...] = ()  # reads no per-source ranks (models.candidates.served)

    def score_batch(
        self,
        histories: list[UserHistory],
        contexts: list[RequestContext],
        candidates: list[np.ndarray],
        source_ranks: list[np.ndarray] | None = None,
    ) -> list[np.ndarray]:
        return [self.score(h, c, x) for h, c, x in zip(histories, contexts, candidates, strict=True)]


class ExactIndex:
    """Brute-force inner product with the ItemIndex.search contract."""

    def __init__(self, item_vectors: np.ndarray, version: str):
        self._item_vectors = item_vectors
        self.version = version
        self.size, self.dim = item_vectors.shape

    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = queries @ self._item_vectors.T  # [B, num_items]
        scores[:, :FIRST_REAL_ID] = -np.inf
        for row, excluded in enumerate(exclude or []):
            if excluded:
                scores[row, sorted(excluded)] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(scores, order, axis=1)
        items = np.where(np.isfinite(top), order, -1).astype(np.int64)
        return items, top.astype(np.float32)


class FakeBundle:
    def __init__(self, path: Path, version: str = "v1", seed: int = 0, ranker_served: bool = True):
        rng = np.random.default_rng(seed)
        num_real = NUM_CATEGORIES * ITEMS_PER_CATEGORY
        centers = _unit(rng.normal(size=(NUM_CATEGORIES, DIM)))
        positions = np.arange(num_real)
        real_vectors = _unit(
            centers[positions // ITEMS_PER_CATEGORY] + 0.25 * rng.normal(size=(num_real, DIM))
        )
        self.item_vectors_matrix = np.vstack([np.zeros((FIRST_REAL_ID, DIM), np.float32), real_vectors])
        self.path = path
        self.manifest = Manifest(
            model_version=f"fake-{version}",
            index_version=f"index-{version}",
            dataset="fake",
            data_fingerprint="fake",
            served_path="session_encoder+ranker" if ranker_served else "session_encoder",
            serving=ServingChoice(merge={}, ranker_served=ranker_served),
            files={},
            checkpoint_sha256={},
            file_sha256={},
            created_at="2026-12-06T00:00:00Z",
            vocabularies={"scene": ["detail", "home"], "device": ["ios", "web"], "category": CATEGORY_NAMES},
        )
        self.catalogue = Catalogue(
            raw_id=["<pad>", "<unknown>", *[item_raw_id(int(p)) for p in positions]],
            title=["", "", *[f"item {p}" for p in positions]],
            category=np.asarray([0, 1, *(FIRST_REAL_ID + positions // ITEMS_PER_CATEGORY)], dtype=np.int32),
        )
        self.item_index = {raw: row for row, raw in enumerate(self.catalogue.raw_id) if row >= FIRST_REAL_ID}
        self.user_index = {f"u{u}": FIRST_REAL_ID + u for u in range(NUM_USERS)}
        popularity = np.concatenate([[0.0, 0.0], rng.uniform(1.0, 100.0, size=num_real)]).astype(np.float32)
        self.popularity = popularity
        self.encoder = FakeEncoder(self.item_vectors_matrix, f"fake-{version}")
        self.ranker = FakeRanker(self.item_vectors_matrix, f"fake-ranker-{version}")
        self.index = ExactIndex(self.item_vectors_matrix, f"index-{version}")
        self.sources: dict[str, CandidateSource] = {
            "ann": AnnSource(self.index),
            "category": CategorySource(self.catalogue.category, popularity),
            "recent": RecentItemsSource(),
            "popular": PopularSource(popularity, "popular"),
        }
        self._histories = {}
        for user in range(NUM_USERS):
            category = user % NUM_CATEGORIES
            picks = rng.choice(ITEMS_PER_CATEGORY, size=8, replace=False) + category * ITEMS_PER_CATEGORY
            count = picks.size
            self._histories[f"u{user}"] = UserHistory(
                item=(picks + FIRST_REAL_ID).astype(np.int64),
                action=np.full(count, 2, dtype=np.int64),
                value=np.ones(count, dtype=np.float32),
                timestamp=(1_700_000_000 + 60 * np.arange(count)).astype(np.int64),
                scene=np.full(count, 3, dtype=np.int64),
                device=np.full(count, 2, dtype=np.int64),
            )

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def index_version(self) -> str:
        return self.manifest.index_version

    def served_pipeline(self, total: int) -> ServedPipeline:
        """The untuned merge of ANN and popularity, the ranker over it where the manifest serves it."""
        merge = default_merge(list(self.sources), total)
        return served_pipeline(self.sources, merge, self.ranker, self.manifest.serving.ranker_served, total)

    def recent_histories(self) -> Iterator[tuple[str, UserHistory]]:
        yield from self._histories.items()

    @staticmethod
    def write(directory: Path, version: str, ranker_served: bool = True) -> Path:
        """``ranker_served=False``: the ranker is shipped, the gate refused it (merged order served)."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "fake.json").write_text(json.dumps({"version": version, "ranker_served": ranker_served}))
        return directory

    @classmethod
    def load(cls, path: Path) -> FakeBundle:
        spec = path / "fake.json"
        if not spec.is_file():
            raise FileNotFoundError(f"{spec}: not a fake bundle")
        values = json.loads(spec.read_text())
        return cls(path, values["version"], ranker_served=values.get("ranker_served", True))
