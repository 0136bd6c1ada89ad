"""The item index in Milvus (``TANDEM_INDEX_BACKEND=milvus``): an ``ItemSearch`` over a collection of a
bundle's item vectors, for deployments that keep their vectors in a Milvus service. faiss stays the default.

One collection per bundle index, ``<prefix>_items_<index_version>``, primary key = the item index, inner
product, indexed like the bundle's faiss index (``MilvusIndex.like``: exact search stays FLAT, IVF becomes
IVF_FLAT with the same nlist searched with the nprobe the build tuned, HNSW keeps M, efConstruction and ef). A
process that loads a bundle whose collection is missing publishes it: a temporary collection, the vectors
inserted, indexed, loaded, the row count checked, then ``rename_collection`` to the final name, which Milvus
refuses when that name exists, so two replicas racing cannot both publish (the loser drops its copy and uses
the winner's). No alias: each process searches its own bundle's collection, so a rollout never mixes two
bundles' item ids. Exclusions go into the search (``id not in [...]``).

Opening fails with ``MilvusUnavailable``, naming the URI and the collection: pymilvus not installed (the
``scale`` extra), the server not answering, or a collection under that name that does not fit the bundle
(another dimension or row count). A process starting with it exits; a reload with it is refused.

A failed or timed-out search does not fail the request: it returns no candidates (the other sources
still answer) and calls ``on_error`` (the service counts it). A search refused because the collection is
released (a restarted milvus-lite server keeps the collection but not its loaded state) loads it again, at
most once every ``RELOAD_EVERY_S``: without that, ANN stayed unavailable until the process restarted.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.data.schema import FIRST_REAL_ID

log = logging.getLogger(__name__)
INSERT_CHUNK = 2000
RELOAD_EVERY_S = 5.0
CONNECT_TIMEOUT_S = 5.0


class MilvusUnavailable(RuntimeError):
    """The Milvus index backend cannot serve a bundle: pymilvus missing, the server unreachable, or the
    bundle's collection of another size or dimension. The message names the URI and the collection."""


@dataclass(frozen=True)
class MilvusIndex:
    """How a collection is indexed and searched: Milvus's index type, its build and search parameters."""

    index_type: str = "FLAT"
    build: dict[str, int] = field(default_factory=dict)
    search: dict[str, int] = field(default_factory=dict)

    @staticmethod
    def like(kind: str, build_params: dict[str, Any], nprobe: int = 0, ef_search: int = 0) -> MilvusIndex:
        """The Milvus counterpart of a faiss index of ``kind`` (``flat``, ``ivf``, ``hnsw``) built with
        ``build_params`` (the index metadata's) and tuned to ``nprobe`` / ``ef_search``."""
        if kind == "ivf":
            return MilvusIndex("IVF_FLAT", {"nlist": int(build_params["nlist"])}, {"nprobe": max(nprobe, 1)})
        if kind == "hnsw":
            build = {"M": int(build_params["M"]), "efConstruction": int(build_params["ef_construction"])}
            return MilvusIndex("HNSW", build, {"ef": max(ef_search, 1)})
        return MilvusIndex()


def collection_name(prefix: str, index_version: str) -> str:
    """``<prefix>_items_<index_version>`` with every character Milvus refuses in a name replaced by ``_``."""
    return re.sub(r"[^0-9A-Za-z_]", "_", f"{prefix}_items_{index_version}")


class MilvusItemSearch:
    """Top-k inner-product search in a published collection; ``vectors`` reads the bundle's own copy."""

    def __init__(
        self,
        client: Any,
        collection: str,
        item_vectors: np.ndarray,
        version: str,
        timeout_s: float = 0.2,
        on_error: Callable[[Exception], None] | None = None,
        index: MilvusIndex | None = None,
    ) -> None:
        """item_vectors [num_items, d]: the bundle's (rows 0 and 1 are padding and unknown, never served)."""
        self.client = client
        self.index = index or MilvusIndex()
        self.collection = collection
        self.item_vectors = np.asarray(item_vectors, dtype=np.float32)
        self.version = version
        self.timeout_s = timeout_s
        self.on_error = on_error
        self._load_tried = -RELOAD_EVERY_S

    def vectors(self, items: np.ndarray) -> np.ndarray:
        """items [n] -> [n, d] stored item vectors."""
        return self.item_vectors[np.asarray(items, dtype=np.int64)]

    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[int]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries [B, d] float32 -> (items [B, k] int64, scores [B, k] float32), best first, -1 / -inf
        padded (also where the search failed)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        queries = np.asarray(queries, dtype=np.float32)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row, query in enumerate(queries):
            excluded = sorted(exclude[row]) if exclude is not None else []
            try:
                hits = self.client.search(
                    self.collection,
                    data=[query.tolist()],
                    limit=k,
                    filter=f"id not in {excluded}" if excluded else "",
                    search_params={"metric_type": "IP", "params": self._search_params(k)},
                    output_fields=["id"],
                    timeout=self.timeout_s,
                )[0]
            except Exception as exc:  # the service degrades to the other sources
                log.warning("milvus search failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})
                if self.on_error is not None:
                    self.on_error(exc)
                self._load_if_released(exc)
                continue
            found = [(int(hit["id"]), float(hit["distance"])) for hit in hits][:k]
            if found:
                items[row, : len(found)] = [item for item, _ in found]
                scores[row, : len(found)] = [score for _, score in found]
        return items, scores

    def _search_params(self, k: int) -> dict[str, int]:
        """The index's search parameters; HNSW's ef grows to k (it returns at most ef results)."""
        params = dict(self.index.search)
        if "ef" in params:
            params["ef"] = max(params["ef"], k)
        return params

    def _load_if_released(self, error: Exception) -> None:
        """Loads the collection again when ``error`` says it is not loaded, at most every RELOAD_EVERY_S."""
        message = str(error).lower()
        now = time.monotonic()
        if not ("released" in message or "not loaded" in message) or now - self._load_tried < RELOAD_EVERY_S:
            return
        self._load_tried = now
        try:
            self.client.load_collection(self.collection, timeout=max(1.0, 10 * self.timeout_s))
            log.warning(
                "milvus collection was released: loaded it again", extra={"collection": self.collection}
            )
        except Exception as exc:
            log.warning("milvus load failed", extra={"error": f"{exc.__class__.__name__}: {exc}"})


def publish_collection(
    client: Any,
    name: str,
    item_vectors: np.ndarray,
    timeout_s: float = 30.0,
    index: MilvusIndex | None = None,
) -> None:
    """Makes sure collection ``name`` holds the real items' vectors (rows >= FIRST_REAL_ID of
    ``item_vectors``) and is loaded: uses it when it exists with the right row count, else builds it under
    a temporary name and renames it (module docstring). Raises ``ValueError`` on a wrong dimension or
    row count (a collection of another bundle, or a half-written one, under that name)."""
    expected = max(len(item_vectors) - FIRST_REAL_ID, 0)
    if not client.has_collection(name, timeout=timeout_s):
        temporary = f"{name}_tmp_{os.getpid()}_{time.time_ns()}"
        _build(client, temporary, item_vectors, timeout_s, index or MilvusIndex())
        try:
            client.rename_collection(temporary, name, timeout=timeout_s)
        except Exception:
            if not client.has_collection(name, timeout=timeout_s):
                client.drop_collection(temporary, timeout=timeout_s)
                raise
            log.info("another process published the collection first", extra={"collection": name})
            client.drop_collection(temporary, timeout=timeout_s)
    dim, want = _dimension(client.describe_collection(name, timeout=timeout_s)), int(item_vectors.shape[1])
    if dim != want:
        raise ValueError(f"milvus collection {name}: dimension {dim}, the bundle's is {want}")
    client.load_collection(name, timeout=timeout_s)
    rows = int(client.get_collection_stats(name, timeout=timeout_s)["row_count"])
    if rows != expected:
        raise ValueError(f"milvus collection {name}: {rows} rows, the bundle has {expected} items")


def _dimension(description: dict[str, Any]) -> int | None:
    """The dimension of the (first) float vector field of a ``describe_collection`` answer."""
    from pymilvus import DataType

    for column in description.get("fields", []):
        if column.get("type") == DataType.FLOAT_VECTOR:
            return int(column.get("params", {}).get("dim", 0))
    return None


def _build(
    client: Any, name: str, item_vectors: np.ndarray, timeout_s: float, index: MilvusIndex | None = None
) -> None:
    from pymilvus import DataType, MilvusClient

    vectors = np.asarray(item_vectors, dtype=np.float32)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    spec = index or MilvusIndex()
    params = client.prepare_index_params()
    params.add_index(
        field_name="vector", index_type=spec.index_type, metric_type="IP", params=dict(spec.build)
    )
    client.create_collection(name, schema=schema, index_params=params, timeout=timeout_s)
    for start in range(FIRST_REAL_ID, len(vectors), INSERT_CHUNK):
        stop = min(start + INSERT_CHUNK, len(vectors))
        rows = [{"id": item, "vector": vectors[item].tolist()} for item in range(start, stop)]
        client.insert(name, rows, timeout=timeout_s)
    client.load_collection(name, timeout=timeout_s)
    rows_in = int(client.get_collection_stats(name, timeout=timeout_s)["row_count"])
    if rows_in != len(vectors) - FIRST_REAL_ID:
        client.drop_collection(name, timeout=timeout_s)
        raise ValueError(
            f"milvus collection {name}: {rows_in} rows inserted of {len(vectors) - FIRST_REAL_ID}"
        )


def open_milvus_search(
    uri: str,
    prefix: str,
    item_vectors: np.ndarray,
    index_version: str,
    timeout_s: float = 0.2,
    on_error: Callable[[Exception], None] | None = None,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    index: MilvusIndex | None = None,
) -> MilvusItemSearch:
    """Connects to ``uri`` (a Milvus server, or a milvus-lite ``.db`` path), publishes the bundle's
    collection when missing, and returns its search. Raises ``MilvusUnavailable`` (module docstring)."""
    name = collection_name(prefix, index_version)
    try:
        from pymilvus import MilvusClient
    except ImportError as exc:
        raise MilvusUnavailable(
            f"the milvus index backend needs pymilvus, not installed here: pip install -e '.[scale]' "
            f"(milvus {uri}, collection {name})"
        ) from exc
    try:
        client = MilvusClient(uri, timeout=connect_timeout_s)
        publish_collection(client, name, item_vectors, index=index)
    except Exception as exc:
        raise MilvusUnavailable(
            f"milvus {uri}, collection {name}: {exc.__class__.__name__}: {_one_line(exc)}"
        ) from exc
    return MilvusItemSearch(client, name, item_vectors, index_version, timeout_s, on_error, index)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())
