"""The loaded artifact bundle as the request path needs it, and the holder that swaps it atomically.

A request takes ``holder.current`` once and uses that snapshot to the end, so a reload never mixes two
bundles inside one request and never drops one: the new bundle is loaded and warmed up off the event loop,
then published with a single attribute assignment; the old one is freed when its last request finishes.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core import metrics
from app.services.items import RankedItem
from app.stores.base import StoredEvent
from models.bundle.load import ServableBundle
from models.candidates.rules import ItemTables, ServingRules
from models.candidates.served import ServedPipeline
from models.candidates.sources import CandidateRequest, ItemSearch
from models.data.schema import FIRST_REAL_ID, UNKNOWN_ID
from models.index import ItemIndex
from models.types import RequestContext, UserHistory

log = logging.getLogger("tandem.bundle")

BundleLoader = Callable[[Path], ServableBundle]


def _index_of(names: list[str]) -> dict[str, int]:
    """Vocabulary list (position k = index k + FIRST_REAL_ID) -> name to index."""
    return {str(name): position + FIRST_REAL_ID for position, name in enumerate(names)}


class ServingBundle:
    """A bundle plus the lookups serving derives from it once at load time."""

    def __init__(self, bundle: ServableBundle, history_length: int = 200):
        self.bundle = bundle
        manifest = bundle.manifest
        self.encoder = bundle.encoder
        self.ranker = bundle.ranker
        self.index = bundle.index
        self.sources = bundle.sources
        self.model_version = bundle.model_version  # verified from the model files' content
        self.index_version = bundle.index_version
        # what answers a known user, as served: "+ranker" only where the ranker runs (the gate served it
        # and the bundle ships it), whatever else a manifest says; /readyz, the admin route, the metrics
        self.ranker_served = manifest.serving.ranker_served and bundle.ranker is not None
        self.served_path = manifest.served_path.removesuffix("+ranker") + (
            "+ranker" if self.ranker_served else ""
        )
        self.ranker_kind = manifest.serving.ranker_kind if bundle.ranker is not None else None
        self.ranker_gain = manifest.serving.ranker_gain
        self.catalogue = bundle.catalogue
        self.item_index: dict[str, int] = bundle.item_index
        self.user_index: dict[str, int] = bundle.user_index
        self.num_items = int(self.catalogue.num_items)
        vocabularies = manifest.vocabularies
        self.scene_index = _index_of(vocabularies.get("scene", []))
        self.device_index = _index_of(vocabularies.get("device", []))
        self.category_index = _index_of(vocabularies.get("category", []))
        self.category_names = {index: name for name, index in self.category_index.items()}
        self.item_category = np.asarray(self.catalogue.category, dtype=np.int64)
        popularity = np.asarray(bundle.popularity, dtype=np.float32).copy()
        popularity[:FIRST_REAL_ID] = -np.inf
        self.popularity = popularity
        order = np.argsort(-popularity, kind="stable")
        self.popular_order = order[np.isfinite(popularity[order])].astype(np.int64)
        # [num_items, d] unit rows (rows 0/1 zero) for cold start, similar items and MMR; None when baseline.
        self.item_vectors: np.ndarray | None = (
            np.asarray(self.encoder.item_vectors(), dtype=np.float32) if self.encoder is not None else None
        )
        # what the serving rules read about every item (filters, MMR, the popularity top-up), built once
        self.item_tables = ItemTables(self.item_category, self.popular_order, popularity, self.item_vectors)
        self._pipelines: dict[int, ServedPipeline] = {}
        self.offline: dict[str, Any] = dict(manifest.offline)
        self.merge = manifest.serving.merge
        # Recent histories of training users: seeds the store, and serves the online path when it is down.
        self.history_length = history_length
        self.fallback_histories: dict[str, UserHistory] = {}
        for raw_user, history in bundle.recent_histories():
            self.fallback_histories[str(raw_user)] = _tail(history, history_length)

    def pipeline(self, total: int) -> ServedPipeline:
        """The served pipeline (sources -> merge -> ranker -> rules) for lists of ``total`` candidates,
        built once per length (a test double's bundle may build a new one per call)."""
        pipeline = self._pipelines.get(total)
        if pipeline is None:
            pipeline = self._pipelines[total] = self.bundle.served_pipeline(total)
        return pipeline

    # ------------------------------------------------------------------ id mapping
    def item_of(self, raw_item: str | int) -> int | None:
        """Raw item id -> item index, None when the bundle does not know it."""
        return self.item_index.get(str(raw_item))

    def raw_item(self, item: int) -> str:
        return str(self.catalogue.raw_id[item])

    def ranked_item(self, item: int, rank: int, score: float, source: str) -> RankedItem:
        """An answer row: raw id plus the catalogue's title and category name (None when absent)."""
        titles = self.catalogue.title
        title = str(titles[item]) if item < len(titles) and titles[item] else None
        category = self.category_names.get(int(self.item_category[item]))
        return RankedItem(self.raw_item(item), rank, round(score, 6), source, title, category)

    def scene_of(self, name: str | None) -> int:
        return self.scene_index.get(name, UNKNOWN_ID) if name is not None else UNKNOWN_ID

    def device_of(self, name: str | None) -> int:
        return self.device_index.get(name, UNKNOWN_ID) if name is not None else UNKNOWN_ID

    def history_from_events(self, events: list[StoredEvent]) -> UserHistory:
        """Stored events (raw ids, any order) -> UserHistory of item indices, oldest first. All [E]."""
        if not events:
            return UserHistory.empty()
        ordered = sorted(events, key=operator.itemgetter(3))[-self.history_length :]  # by timestamp
        items, actions, values, timestamps, scenes, devices = zip(*ordered, strict=True)
        return UserHistory(
            item=_indices(items, self.item_index),
            action=np.asarray(actions, dtype=np.int64),
            value=np.asarray(values, dtype=np.float32),
            timestamp=np.asarray(timestamps, dtype=np.int64),
            scene=_indices(scenes, self.scene_index),
            device=_indices(devices, self.device_index),
        )

    def events_from_history(self, history: UserHistory) -> list[StoredEvent]:
        """The inverse, for seeding the store from the bundle (scene/device names when the vocab has them)."""
        scene_names = {index: name for name, index in self.scene_index.items()}
        device_names = {index: name for name, index in self.device_index.items()}
        return [
            StoredEvent(
                item=self.raw_item(int(history.item[row])),
                action=int(history.action[row]),
                value=float(history.value[row]),
                timestamp=int(history.timestamp[row]),
                scene=scene_names.get(int(history.scene[row])),
                device=device_names.get(int(history.device[row])),
            )
            for row in range(len(history))
        ]

    def seed_records(self) -> Iterator[tuple[str, list[StoredEvent]]]:
        for raw_user, history in self.fallback_histories.items():
            yield raw_user, self.events_from_history(history)

    # ------------------------------------------------------------------ warm-up
    def warm_up(self, candidate_count: int = 300) -> float:
        """One request through ``ServedPipeline.recommend`` (encoder, sources, merge, ranker, rules) on a
        real history, at the list length requests will use (a compiled ranker exports its shape here, not
        on a user's request); returns the seconds it took. A failure raises: the bundle is not served."""
        started = time.perf_counter()
        history = next(iter(self.fallback_histories.values()), UserHistory.empty())
        # without a history, an anchor gives the ranker something to rank by, so it is warmed all the same
        anchors = self.popular_order[:1] if len(history) == 0 else np.zeros(0, dtype=np.int64)
        context = RequestContext(timestamp=int(time.time()), anchors=anchors)
        vector = self.encoder.encode([history], [context]) if self.encoder is not None else None
        request = CandidateRequest(
            history=history,
            context=context,
            user_vector=vector[0] if vector is not None and self.index is not None else None,
        )
        rules = ServingRules(k=10, exclude_seen=None, items=self.item_tables)
        self.pipeline(candidate_count).recommend(request, rules)
        return time.perf_counter() - started


def _tail(history: UserHistory, length: int) -> UserHistory:
    if len(history) <= length:
        return history
    return UserHistory(
        item=history.item[-length:],
        action=history.action[-length:],
        value=history.value[-length:],
        timestamp=history.timestamp[-length:],
        scene=history.scene[-length:],
        device=history.device[-length:],
        user_features=history.user_features,
    )


def load_bundle(
    path: Path,
    ranker_backend: str = "eager",
    threads: int = 1,
    milvus: MilvusTarget | None = None,
) -> ServableBundle:
    """The default loader: ``models.bundle.load.Bundle.load`` (``ranker_backend``: see ``load_ranker``).
    ``milvus``: the ANN source searches the bundle's item vectors in Milvus instead of its faiss index
    (``models.index.milvus``; the collection is published when missing)."""
    from models.bundle.load import Bundle

    bundle = Bundle.load(path, ranker_backend=ranker_backend, threads=threads)
    if milvus is not None and bundle.index is not None:
        from models.candidates.sources import AnnSource

        bundle.sources["ann"] = AnnSource(milvus_search(bundle.index, milvus))
    return bundle


def milvus_search(index: ItemIndex, milvus: MilvusTarget) -> ItemSearch:
    """The search of ``index``'s vectors in Milvus (``models.index.milvus.open_milvus_search``: publishes the
    collection when missing, indexed like ``index`` with its tuned knobs); a failed search counts as
    ``tandem_stage_failures_total{stage="ann"}``. Raises ``MilvusUnavailable`` naming the URI and the
    collection."""
    from models.index.milvus import MilvusIndex, open_milvus_search

    build_params = index.metadata.get("build_params", {})
    settings = index.settings
    return open_milvus_search(
        milvus.uri,
        milvus.prefix,
        index.vectors(np.arange(index.size)),
        index.version,
        milvus.timeout_s,
        on_error=lambda _: metrics.STAGE_FAILURES.labels("ann").inc(),
        index=MilvusIndex.like(index.kind, build_params, settings.nprobe, settings.ef_search),
    )


def _indices(names: tuple[str | None, ...], index: dict[str, int]) -> np.ndarray:
    """[E] int64 indices of raw names (``UNKNOWN_ID`` for None and for names the vocabulary lacks)."""
    lookup = index.get
    return np.asarray([UNKNOWN_ID if name is None else lookup(name, UNKNOWN_ID) for name in names], np.int64)


@dataclass(frozen=True)
class MilvusTarget:
    """Where the ANN source searches when ``TANDEM_INDEX_BACKEND=milvus``."""

    uri: str
    prefix: str
    timeout_s: float


class BundleHolder:
    """Holds the serving bundle; ``reload`` swaps it without interrupting requests."""

    def __init__(
        self, loader: BundleLoader = load_bundle, history_length: int = 200, candidate_count: int = 300
    ):
        self.loader = loader
        self.history_length = history_length
        self.candidate_count = candidate_count
        self._current: ServingBundle | None = None
        self.path: Path | None = None
        self._lock = asyncio.Lock()

    @property
    def current(self) -> ServingBundle:
        if self._current is None:
            raise RuntimeError("no bundle loaded yet")
        return self._current

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def _load_and_warm(self, path: Path) -> ServingBundle:
        import torch

        with torch.inference_mode():
            serving = ServingBundle(self.loader(path), self.history_length)
            seconds = serving.warm_up(self.candidate_count)
        log.info(
            "bundle ready",
            extra={"bundle_path": str(path), "model_version": serving.model_version, "warm_up_s": seconds},
        )
        return serving

    async def load(self, path: Path, expected_version: str | None = None) -> ServingBundle:
        """Load (in a thread), warm up, then publish. Concurrent reloads run one after the other.

        With ``expected_version`` a bundle whose verified model version differs is refused (``ValueError``)
        and the current one keeps serving: another process verified other content under that path."""
        async with self._lock:
            serving = await asyncio.to_thread(self._load_and_warm, path)
            if expected_version is not None and serving.model_version != expected_version:
                raise ValueError(
                    f"{path}: model version {serving.model_version}, not {expected_version} (files changed?)"
                )
            self._current, self.path = serving, path
            metrics.set_bundle_info(serving.model_version, serving.index_version, serving.served_path)
            return serving
