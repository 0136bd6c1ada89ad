"""``ItemIndex``: inner-product search over item vectors, with exclusion sets and over-fetch.

The faiss index holds only the real items (rows ``FIRST_REAL_ID`` .. N-1 of the item table), so padding and
the unknown item can never be returned; a faiss label ``j`` is item index ``j + FIRST_REAL_ID``.

Searching is safe from several threads at once: per-call search parameters (``efSearch`` / ``nprobe``) are
passed to faiss as ``SearchParameters`` instead of being written into the shared index.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from models.data.positions import members
from models.data.schema import FIRST_REAL_ID

IndexKind = Literal["flat", "hnsw", "ivf"]
INDEX_FILE = "index.faiss"
META_FILE = "index.json"
FORMAT_VERSION = 1
# Each retry multiplies the fetch size by this much; 4 keeps the retries to two or three in practice.
RETRY_GROWTH = 4


@dataclass
class SearchSettings:
    """Query-time knobs. ``ef_search`` applies to HNSW, ``nprobe`` to IVF; both grow when a retry needs it."""

    ef_search: int = 0
    nprobe: int = 0
    # Extra results fetched on the first try beyond k (+ up to k for exclusions), as a fraction of k.
    over_fetch: float = 0.25


def vectors_version(item_vectors: np.ndarray) -> str:
    """Content hash of an item-vector table: 16 hex digits of sha256 over shape and float32 bytes."""
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    digest = hashlib.sha256(str(vectors.shape).encode())
    digest.update(vectors.tobytes())
    return digest.hexdigest()[:16]


def _search_parameters(
    kind: IndexKind, settings: SearchSettings, fetch: int
) -> faiss.SearchParameters | None:
    if kind == "hnsw":
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
        # HNSW can only return efSearch results, so a large fetch raises efSearch with it.
        params.efSearch = max(settings.ef_search, fetch)
        return params
    if kind == "ivf":
        params = faiss.SearchParametersIVF()
        params.nprobe = settings.nprobe
        return params
    return None


@dataclass
class ItemIndex:
    """ANN (or exact) inner-product index over ``size`` items of dimension ``dim``.

    ``metadata`` carries what the build measured: parameters, the recall/latency sweep, recall@K against
    exact search on sampled queries, build time. It is saved next to the faiss file.
    """

    faiss_index: Any
    kind: IndexKind
    size: int  # rows of the item table (real items + 2)
    dim: int
    version: str
    settings: SearchSettings = field(default_factory=SearchSettings)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_real_items(self) -> int:
        return self.size - FIRST_REAL_ID

    # ---------------------------------------------------------------- search
    def raw_search(
        self, queries: np.ndarray, fetch: int, settings: SearchSettings | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Plain top-``fetch``, no exclusions. queries [B, d] -> (items [B, fetch] int64, scores [B, fetch]).

        Items are item indices (-1 where faiss found nothing).
        """
        queries = self._checked_queries(queries)
        fetch = min(fetch, self.num_real_items)
        params = _search_parameters(self.kind, settings or self.settings, fetch)
        scores, labels = self.faiss_index.search(queries, fetch, params=params)
        items = np.where(labels >= 0, labels + FIRST_REAL_ID, -1).astype(np.int64)
        return items, scores.astype(np.float32)

    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items per query, skipping each query's exclusion set.

        queries: [B, d] float32; exclude: B sets of item indices (or None).
        Returns (items [B, k] int64, scores [B, k] float32), best first; -1 / -inf pad a row only when
        fewer than k items remain after exclusions. Over-fetches first (k, a margin, and up to k more for
        the exclusions) and retries the rows left short: exact and IVF with a fetch grown by
        ``RETRY_GROWTH`` (IVF also probing more lists) until they fill or the index is exhausted; HNSW
        with the exclusion set applied inside the graph walk (a faiss ID selector), one query at a time.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = self._checked_queries(queries)
        batch = queries.shape[0]
        if exclude is not None and len(exclude) != batch:
            raise ValueError(f"exclude has {len(exclude)} sets for {batch} queries")
        out_items = np.full((batch, k), -1, dtype=np.int64)
        out_scores = np.full((batch, k), -np.inf, dtype=np.float32)
        if batch == 0 or self.num_real_items == 0:
            return out_items, out_scores
        excluded_keys = _exclusion_keys(exclude, self.size)
        longest_exclusion = max((len(s) for s in exclude), default=0) if exclude else 0
        # Most excluded items (a user's seen list) are nowhere near the query, so the first fetch only
        # budgets up to k of them; rows that come back short are retried with a larger fetch.
        first_fetch = int(np.ceil(k * (1 + self.settings.over_fetch))) + min(longest_exclusion, k)
        fetch = min(self.num_real_items, first_fetch)
        settings = SearchSettings(**asdict(self.settings))
        pending = np.arange(batch)
        while True:
            items, scores = self.raw_search(queries[pending], fetch, settings)
            valid = items >= 0
            if excluded_keys.size:
                keys = pending[:, None] * self.size + np.maximum(items, 0)
                valid &= ~members(keys, excluded_keys)
            # Stable order of the valid hits, best first: a row's valid items go to its left edge.
            order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
            taken_items = np.take_along_axis(np.where(valid, items, -1), order, axis=1)
            taken_scores = np.take_along_axis(np.where(valid, scores, -np.inf), order, axis=1)
            width = taken_items.shape[1]
            out_items[pending, :width] = taken_items
            out_scores[pending, :width] = taken_scores
            short = valid.sum(axis=1) < k
            exhausted = fetch >= self.num_real_items and (
                self.kind != "ivf" or settings.nprobe >= self.faiss_index.nlist
            )
            if not short.any() or exhausted:
                return out_items, out_scores
            pending = pending[short]
            if self.kind == "hnsw" and exclude is not None:
                # A larger fetch would mean a larger efSearch (a walk over much of the graph when most of
                # the catalogue is excluded); filtering inside the walk keeps the cost near one search.
                for row in pending.tolist():
                    items_row, scores_row = self._filtered_search(queries[row], k, exclude[row], settings)
                    out_items[row], out_scores[row] = items_row, scores_row
                return out_items, out_scores
            fetch = min(self.num_real_items, fetch * RETRY_GROWTH)
            if self.kind == "ivf":  # probed lists can run dry before the fetch does
                settings.nprobe = min(self.faiss_index.nlist, settings.nprobe * RETRY_GROWTH)

    def _filtered_search(
        self, query: np.ndarray, k: int, excluded: set[int], settings: SearchSettings
    ) -> tuple[np.ndarray, np.ndarray]:
        """HNSW top-k of one query [d] with ``excluded`` item indices filtered during the graph walk."""
        labels = np.fromiter(excluded, dtype=np.int64, count=len(excluded)) - FIRST_REAL_ID
        labels = labels[(labels >= 0) & (labels < self.num_real_items)]
        batch = faiss.IDSelectorBatch(labels)
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing from faiss's stubs
        params.sel = faiss.IDSelectorNot(batch)  # ``batch`` stays referenced until the search returns
        # Excluded nodes still take room in the walk's candidate list, so a dense excluded neighbourhood
        # can leave fewer than k results: grow efSearch until k come back or the graph is covered.
        ef_search = max(settings.ef_search, k)
        while True:
            params.efSearch = ef_search
            scores, found = self.faiss_index.search(query[None, :], k, params=params)
            if (found[0] >= 0).all() or ef_search >= self.num_real_items:
                break
            ef_search = min(self.num_real_items, ef_search * RETRY_GROWTH)
        items = np.where(found[0] >= 0, found[0] + FIRST_REAL_ID, -1).astype(np.int64)
        return items, np.where(items >= 0, scores[0], -np.inf).astype(np.float32)

    def _checked_queries(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must be [B, {self.dim}], got shape {queries.shape}")
        return np.ascontiguousarray(queries)

    # ---------------------------------------------------------------- vectors
    def vectors(self, items: np.ndarray) -> np.ndarray:
        """Stored vectors of item indices [n] -> [n, d] float32; padding/unknown (and -1) give zeros."""
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if ((items >= self.size) | (items < -1)).any():
            raise IndexError(f"item index out of range [0, {self.size})")
        out = np.zeros((items.shape[0], self.dim), dtype=np.float32)
        real = items >= FIRST_REAL_ID
        if real.any():
            labels = items[real] - FIRST_REAL_ID
            out[real] = self.faiss_index.reconstruct_batch(labels)
        return out

    def vector(self, item: int) -> np.ndarray:
        """One stored item vector [d] float32 (zeros for padding/unknown)."""
        return self.vectors(np.array([item]))[0]

    # ---------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Writes ``index.faiss`` and ``index.json`` into ``directory`` (created)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.faiss_index, str(directory / INDEX_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "size": self.size,
            "dim": self.dim,
            "version": self.version,
            "settings": asdict(self.settings),
            "metadata": self.metadata,
        }
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ItemIndex:
        """Reads an index written by ``save``; a missing or inconsistent file raises naming the file."""
        directory = Path(directory)
        meta_path, index_path = directory / META_FILE, directory / INDEX_FILE
        for path in (meta_path, index_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: index file missing")
        try:
            meta = json.loads(meta_path.read_text())
            kind, size, dim = meta["kind"], int(meta["size"]), int(meta["dim"])
            version, settings = str(meta["version"]), SearchSettings(**meta["settings"])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{meta_path}: not a valid index description ({error})") from error
        if kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"{meta_path}: field 'kind' is {kind!r}, expected flat, hnsw or ivf")
        faiss_index: Any = faiss.read_index(str(index_path))
        if faiss_index.d != dim or faiss_index.ntotal != size - FIRST_REAL_ID:
            raise ValueError(
                f"{index_path}: holds {faiss_index.ntotal} vectors of dim {faiss_index.d}, "
                f"{meta_path} says {size - FIRST_REAL_ID} of dim {dim}"
            )
        if kind == "ivf":
            faiss_index.make_direct_map()  # reconstruct() needs it; not persisted by write_index
        return cls(faiss_index, kind, size, dim, version, settings, meta.get("metadata", {}))


def _exclusion_keys(exclude: list[set[int]] | None, size: int) -> np.ndarray:
    """Exclusion sets -> sorted int64 keys ``row * size + item`` so one search checks a whole batch."""
    if not exclude:
        return np.zeros(0, dtype=np.int64)
    keys = []
    for row, items in enumerate(exclude):
        ids = np.fromiter(items, dtype=np.int64, count=len(items))
        keys.append(row * size + ids[(ids >= 0) & (ids < size)])  # out-of-range ids cannot be returned anyway
    return np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
