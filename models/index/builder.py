"""``build_index``: item vectors -> a measured ``ItemIndex``.

Small catalogues get exact search (``IndexFlatIP``): below ``flat_max_items`` one exact query costs a
few milliseconds at most on one core (docs/results/bench-cpu.md), so an approximation buys little. Above
it, IVF (``IndexIVFFlat``, inner product) by default, HNSW (``IndexHNSWFlat``) on request: on clustered
vectors at 1M items IVF reached recall@200 0.99 at 0.3 ms per query and builds in seconds, while HNSW
stayed below 0.7 at 3 ms (docs/results/index-synthetic-1m.md). The query-time knob (efSearch / nprobe)
is not a guess: the build sweeps it on sample queries, measures recall@K against exact search and latency,
keeps the smallest setting reaching ``target_recall``, and stores the whole sweep in the index metadata.
Defaults for nlist, M and efConstruction come from the same sweep.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

import faiss
import numpy as np

from models.data.schema import FIRST_REAL_ID
from models.index.item_index import IndexKind, ItemIndex, SearchSettings, vectors_version
from models.index.synthetic_vectors import user_like_queries
from models.index.tuning import cheapest_meeting, exact_top_k, set_faiss_threads, sweep

logger = logging.getLogger(__name__)


@dataclass
class IndexBuildConfig:
    """How to build and tune an index. Sizes count real items (the table minus rows 0/1)."""

    flat_max_items: int = 100_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    ivf_nlist: int = 0  # 0 = power of two nearest 2 * sqrt(items)
    ivf_train_per_list: int = 40  # training points per list (faiss warns below 39)
    recall_k: int = 200
    target_recall: float = 0.96  # a margin over the 0.95 goal: sample queries are not the live ones
    sample_queries: int = 300
    latency_queries: int = 100
    ef_search_multiples: tuple[float, ...] = (1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    nprobe_values: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    build_threads: int = 2  # this machine's cores; set deliberately, restored to 1 after the build
    seed: int = 0


def resolve_kind(num_real_items: int, kind: str, config: IndexBuildConfig) -> IndexKind:
    if kind == "auto":
        return "flat" if num_real_items <= config.flat_max_items else "ivf"
    if kind not in ("flat", "hnsw", "ivf"):
        raise ValueError(f"index kind must be auto, flat, hnsw or ivf, got {kind!r}")
    return kind  # type: ignore[return-value]


def _default_nlist(num_real_items: int) -> int:
    return max(1, 2 ** round(math.log2(max(2.0 * math.sqrt(num_real_items), 1.0))))


def _faiss_index(
    kind: IndexKind, real_vectors: np.ndarray, config: IndexBuildConfig
) -> tuple[Any, dict[str, int]]:
    dim = real_vectors.shape[1]
    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
        params: dict[str, int] = {}
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        params = {"M": config.hnsw_m, "ef_construction": config.hnsw_ef_construction}
    else:
        nlist = config.ivf_nlist or _default_nlist(real_vectors.shape[0])
        # k-means wants >= 39 points per centroid; small catalogues get fewer lists instead of a warning.
        nlist = max(1, min(nlist, real_vectors.shape[0] // 39))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(config.seed)
        train_size = min(real_vectors.shape[0], nlist * config.ivf_train_per_list)
        train = real_vectors[np.sort(rng.choice(real_vectors.shape[0], train_size, replace=False))]
        index.cp.seed = config.seed
        index.train(train)
        params = {"nlist": nlist, "train_points": train_size}
    index.add(real_vectors)
    if kind == "ivf":
        index.make_direct_map()
    return index, params


def _knob_values(kind: IndexKind, k: int, index: Any, config: IndexBuildConfig) -> list[int]:
    if kind == "hnsw":
        return sorted({max(k, round(k * m)) for m in config.ef_search_multiples})
    if kind == "ivf":
        return sorted({min(v, index.nlist) for v in config.nprobe_values})
    return [0]


def build_index(
    item_vectors: np.ndarray,
    kind: Literal["auto", "flat", "hnsw", "ivf"] | str = "auto",
    *,
    config: IndexBuildConfig | None = None,
    queries: np.ndarray | None = None,
    query_source: str = "",
) -> ItemIndex:
    """Builds and tunes an index over an item table.

    item_vectors: [N, d] float32 (row = item index; rows 0/1 are padding/unknown and never indexed).
    queries: [Q, d] sample queries for the recall/latency measurement, ideally real user vectors; when
    None, ``user_like_queries`` (means of random items plus noise) stand in, and the metadata says so.
    """
    config = config or IndexBuildConfig()
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] <= FIRST_REAL_ID:
        raise ValueError(f"item_vectors must be [N > {FIRST_REAL_ID}, d], got shape {vectors.shape}")
    if not np.isfinite(vectors).all():
        raise ValueError("item_vectors contain NaN or infinite values")
    real = vectors[FIRST_REAL_ID:]
    resolved = resolve_kind(real.shape[0], kind, config)
    if queries is None:
        queries = user_like_queries(vectors, config.sample_queries, seed=config.seed + 1)
        query_source = query_source or "synthetic: means of 3 random item vectors plus noise"
    queries = np.ascontiguousarray(queries, dtype=np.float32)[: config.sample_queries]

    set_faiss_threads(config.build_threads)
    start = time.perf_counter()
    faiss_index, build_params = _faiss_index(resolved, real, config)
    build_seconds = time.perf_counter() - start
    index = ItemIndex(faiss_index, resolved, vectors.shape[0], vectors.shape[1], vectors_version(vectors))
    k = min(config.recall_k, real.shape[0])
    if resolved == "hnsw":
        index.settings = SearchSettings(ef_search=k)
    elif resolved == "ivf":
        index.settings = SearchSettings(nprobe=1)

    start = time.perf_counter()
    truth = exact_top_k(vectors, queries, k)
    points = sweep(
        index,
        queries,
        truth,
        k,
        _knob_values(resolved, k, faiss_index, config),
        latency_queries=config.latency_queries,
        batch_threads=config.build_threads,
    )
    chosen, target_met = cheapest_meeting(points, config.target_recall)
    if resolved == "hnsw":
        index.settings = SearchSettings(ef_search=chosen.value)
    elif resolved == "ivf":
        index.settings = SearchSettings(nprobe=chosen.value)
    set_faiss_threads(1)  # serving searches one query per call; callers raise it deliberately
    if not target_met:
        logger.warning(
            "index %s: best recall@%d %.4f below target %.2f",
            resolved,
            k,
            chosen.recall_at_k,
            config.target_recall,
        )
    index.metadata = {
        "kind": resolved,
        "build_params": build_params,
        "build_seconds": round(build_seconds, 3),
        "tune_seconds": round(time.perf_counter() - start, 3),
        "num_real_items": int(real.shape[0]),
        "recall": {
            "k": k,
            "recall_at_k": chosen.recall_at_k,
            "target": config.target_recall,
            "target_met": target_met,
            "queries": int(queries.shape[0]),
            "query_source": query_source or "given by the caller",
        },
        "chosen": chosen.as_dict(),
        "sweep": [point.as_dict() for point in points],
        "config": json.loads(json.dumps(asdict(config))),  # tuples -> lists, as after a save/load
        "faiss_version": faiss.__version__,
    }
    logger.info(
        "built %s index over %d items in %.1fs: recall@%d %.4f, %s=%d, p50 %.3f ms",
        resolved,
        real.shape[0],
        build_seconds,
        k,
        chosen.recall_at_k,
        chosen.param,
        chosen.value,
        chosen.single_query_ms_p50,
    )
    return index
