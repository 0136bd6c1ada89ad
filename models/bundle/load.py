"""Loading a bundle: ``Bundle.load(dir)`` verifies every file, then reads the parts as they were saved;
``bundle.served_pipeline(total)`` is the one way serving, the warm-up, the replay and the benchmarks get
the served pipeline of a bundle. ``ServableBundle`` is what serving reads (any test double may satisfy
it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from models.bundle.format import HISTORY_COLUMNS, Manifest, verify_bundle
from models.bundle.ranker_io import load_any_ranker
from models.bundle.sources_io import load_sources
from models.candidates.merge import MergeConfig
from models.candidates.served import MergedRanker, ServedPipeline
from models.candidates.sources import CandidateSource, ItemSearch
from models.data.histories import history_from_rows
from models.data.schema import Catalogue
from models.data.storage import read_catalogue
from models.index import ItemIndex
from models.inference import CandidateRanker, UserEncoder
from models.recipe.trained import served_pipeline
from models.types import UserHistory


@runtime_checkable
class ServableBundle(Protocol):
    """The door between training and serving: what serving reads from a loaded bundle.

    ``Bundle`` satisfies it, and so does any test double; serving holds this type, never ``Any``. Members
    are read-only properties, so an implementation may hold narrower types."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def item_index(self) -> dict[str, int]:
        """raw item id -> item index"""
        ...

    @property
    def user_index(self) -> dict[str, int]: ...

    @property
    def popularity(self) -> np.ndarray:
        """[num_items] float32, 0 for rows 0/1"""
        ...

    @property
    def encoder(self) -> UserEncoder | None: ...

    @property
    def ranker(self) -> CandidateRanker | MergedRanker | None: ...

    @property
    def index(self) -> ItemSearch | None: ...

    @property
    def sources(self) -> dict[str, CandidateSource]:
        """name -> fitted candidate source (``ann`` over the index when there is one)"""
        ...

    @property
    def model_version(self) -> str:
        """Verified from the model files' content: vectors cached under another version are stale."""
        ...

    @property
    def index_version(self) -> str: ...

    def served_pipeline(self, total: int) -> ServedPipeline:
        """sources -> merge -> (ranker, when the gate served it) for lists of at most ``total``."""
        ...

    def recent_histories(self) -> Iterator[tuple[str, UserHistory]]:
        """(raw user id, recent events oldest first) for the users the bundle knows."""
        ...


@dataclass
class Bundle:
    """A loaded bundle (``models.bundle.format`` describes each file)."""

    path: Path
    manifest: Manifest
    catalogue: Catalogue
    item_index: dict[str, int]  # raw item id -> item index
    user_index: dict[str, int]  # raw user id -> user index (training users)
    popularity: np.ndarray  # [num_items] float32, 0 for rows 0/1
    sources: dict[str, CandidateSource]
    model_version: str  # recomputed from the files' bytes at load, never read from the manifest alone
    encoder: UserEncoder | None = None
    ranker: CandidateRanker | MergedRanker | None = None
    index: ItemIndex | None = None
    _history_table: pa.Table | None = field(default=None, repr=False)
    _user_features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _user_raw_id: list[str] = field(default_factory=list, repr=False)
    _pipelines: dict[int, ServedPipeline] = field(default_factory=dict, repr=False)

    @property
    def index_version(self) -> str:
        return self.manifest.index_version

    @property
    def merge(self) -> MergeConfig:
        return MergeConfig.from_dict(dict(self.manifest.serving.merge))

    def served_pipeline(self, total: int) -> ServedPipeline:
        if total not in self._pipelines:
            self._pipelines[total] = served_pipeline(
                self.sources, self.merge, self.ranker, self.manifest.serving.ranker_served, total
            )
        return self._pipelines[total]

    def recent_histories(self) -> Iterator[tuple[str, UserHistory]]:
        """(raw user id, last <= 200 events, oldest first) for every user with events, in user order."""
        if self._history_table is None or self._history_table.num_rows == 0:
            return
        columns = {name: self._history_table.column(name).to_numpy() for name in HISTORY_COLUMNS}
        users = columns["user"]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        stops = np.r_[starts[1:], users.shape[0]]
        for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
            user = int(users[start])
            yield (
                self._user_raw_id[user],
                history_from_rows(columns, slice(start, stop), self._user_features, user),
            )

    @classmethod
    def load(cls, path: str | Path, ranker_backend: str = "eager", threads: int = 1) -> Bundle:
        """Verifies and loads a bundle directory (weights only, no pickled code).

        ranker_backend/threads: how the ranker scores one request (``models.ranker.serving.load_ranker``)
        and how the encoder encodes one user (``models.encoder.compiled``); ``eager``: plain PyTorch."""
        from models.encoder.serving import load_user_encoder

        path = Path(path)
        manifest = Manifest.read(path)
        verified_version = verify_bundle(path, manifest)
        files = manifest.files
        catalogue = read_catalogue(path / "catalogue.parquet")
        users = pq.read_table(path / "users.parquet")
        user_raw_id = [str(u) for u in users.column("raw_id").to_pylist()]
        features = {
            name: users.column(name).to_numpy().astype(np.int32)
            for name in users.column_names
            if name not in ("user", "raw_id")
        }
        index = ItemIndex.load(path / str(files["index"])) if files.get("index") else None
        encoder = load_user_encoder(path / str(files["encoder"])) if files.get("encoder") else None
        if encoder is not None and ranker_backend != "eager":
            encoder.export(ranker_backend, threads)  # the online path's one-user forward
        ranker = None
        if files.get("ranker"):
            ranker = load_any_ranker(path / str(files["ranker"]), ranker_backend, threads)
        popularity = pq.read_table(path / "catalogue.parquet", columns=["popularity"]).column("popularity")
        return cls(
            path=path,
            manifest=manifest,
            catalogue=catalogue,
            item_index={raw: row for row, raw in enumerate(catalogue.raw_id) if row >= 2},
            user_index={raw: row for row, raw in enumerate(user_raw_id) if row >= 2},
            popularity=popularity.to_numpy().astype(np.float32),
            sources=load_sources(path, index),
            model_version=verified_version,
            encoder=encoder,
            ranker=ranker,
            index=index,
            _history_table=pq.read_table(path / "recent_events.parquet"),
            _user_features=features,
            _user_raw_id=user_raw_id,
        )
