"""Measuring an index: exact ground truth, recall@K against it, query latency, and parameter sweeps.

Recall@K of an ANN index is ``|ANN top-K ∩ exact top-K| / K`` averaged over queries, both computed over the
real items only (padding/unknown rows are never candidates).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import faiss
import numpy as np

from models.data.schema import FIRST_REAL_ID
from models.index.item_index import ItemIndex, SearchSettings


@dataclass
class SweepPoint:
    """One setting of a query-time parameter and what it measured."""

    param: str  # "ef_search" | "nprobe" | "exact"
    value: int
    recall_at_k: float
    single_query_ms_p50: float  # one query per call, 1 faiss thread
    single_query_ms_p99: float
    batch_query_ms: float  # wall time per query inside one batched call of all sample queries

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def set_faiss_threads(threads: int) -> None:
    """Sets faiss's OpenMP thread count for this process (a global setting; faiss has no per-call one)."""
    faiss.omp_set_num_threads(max(1, int(threads)))


def exact_top_k(item_vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute-force top-k by inner product over real items. [N, d], [Q, d] -> [Q, k] int64 item indices."""
    flat = faiss.IndexFlatIP(item_vectors.shape[1])
    flat.add(np.ascontiguousarray(item_vectors[FIRST_REAL_ID:], dtype=np.float32))
    k = min(k, flat.ntotal)
    _, labels = flat.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return np.where(labels >= 0, labels + FIRST_REAL_ID, -1).astype(np.int64)


def recall_against(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of |found ∩ truth| / |truth|. found [Q, k'], truth [Q, k] item indices (-1 ignored)."""
    if truth.shape[0] == 0:
        return 1.0
    hits = np.zeros(truth.shape[0])
    for row, (got, want) in enumerate(zip(found, truth, strict=True)):
        want = want[want >= 0]
        hits[row] = np.intersect1d(got[got >= 0], want).size / max(want.size, 1)
    return float(hits.mean())


def _single_query_ms(index: ItemIndex, queries: np.ndarray, k: int, settings: SearchSettings) -> np.ndarray:
    timings = np.empty(queries.shape[0])
    for row in range(queries.shape[0]):
        start = time.perf_counter()
        index.raw_search(queries[row : row + 1], k, settings)
        timings[row] = (time.perf_counter() - start) * 1e3
    return timings


def measure_point(
    index: ItemIndex,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    settings: SearchSettings,
    *,
    param: str,
    value: int,
    latency_queries: int = 100,
    batch_threads: int = 1,
) -> SweepPoint:
    """Recall@k against ``truth`` and latency (single queries at 1 thread; one batch at ``batch_threads``)."""
    set_faiss_threads(batch_threads)
    start = time.perf_counter()
    found, _ = index.raw_search(queries, k, settings)
    batch_ms = (time.perf_counter() - start) * 1e3 / max(queries.shape[0], 1)
    set_faiss_threads(1)
    single = _single_query_ms(index, queries[:latency_queries], k, settings)
    return SweepPoint(
        param=param,
        value=value,
        recall_at_k=round(recall_against(found, truth), 5),
        single_query_ms_p50=round(float(np.percentile(single, 50)), 4),
        single_query_ms_p99=round(float(np.percentile(single, 99)), 4),
        batch_query_ms=round(batch_ms, 4),
    )


def sweep(
    index: ItemIndex,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    values: list[int],
    *,
    latency_queries: int = 100,
    batch_threads: int = 1,
) -> list[SweepPoint]:
    """Measures ``index`` at each value of its query-time knob (efSearch for HNSW, nprobe for IVF)."""
    param = {"hnsw": "ef_search", "ivf": "nprobe", "flat": "exact"}[index.kind]
    points = []
    for value in values:
        settings = replace(index.settings, **({param: value} if param != "exact" else {}))
        points.append(
            measure_point(
                index,
                queries,
                truth,
                k,
                settings,
                param=param,
                value=value,
                latency_queries=latency_queries,
                batch_threads=batch_threads,
            )
        )
    return points


def cheapest_meeting(points: list[SweepPoint], target_recall: float) -> tuple[SweepPoint, bool]:
    """The smallest knob value whose recall reaches the target; else the best-recall point.

    Cost grows with the knob (more graph nodes visited / lists scanned), and the value is less noisy to
    compare than a measured latency, so "smallest value" is "cheapest". Returns (point, target_met).
    """
    meeting = [p for p in points if p.recall_at_k >= target_recall]
    if meeting:
        return min(meeting, key=lambda p: p.value), True
    return max(points, key=lambda p: (p.recall_at_k, -p.value)), False
