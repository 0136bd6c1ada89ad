"""``index``: the ANN source's recall@200 and single-query latency, faiss against Milvus, on two catalogues.

- ``ml-1m``: the default bundle's item vectors and its index as built (exact search at this size); the
  queries are the bundle's own user vectors (its session encoder over 300 users' recent histories).
- ``synthetic-1m``: 1M clustered synthetic item vectors (d=64, as ``make bench-index``), the index built
  and tuned as the bundle build does (``build_index``: IVF, nlist and nprobe from its sweep); 300 held-out
  user-like queries.

Milvus holds the same vectors in a collection published as the serving backend publishes it
(``app.services.serving_bundle.milvus_search``: indexed like the faiss index, IVF_FLAT with the same nlist
searched with the tuned nprobe), here in a ``milvus-lite server`` process. Recall is against exact search;
latency is one query at a time (faiss on one thread, as serving calls it; Milvus over gRPC). Target: Milvus
recall >= 0.99 x faiss on both. milvus-lite is not a Milvus server: its latency is no reference for one.

    python -m tools.scale.index_scale [--items 1000000] [--queries 300] [--bundle PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.index import ItemIndex, set_faiss_threads
from models.index.tuning import exact_top_k, recall_against
from tests.milvus_server import milvus_lite_server
from tools.scale.common import DATA_DIR, bundle_or_default, write_measurement

NAME = "index"
K = 200


def timed_search(search: Any, queries: np.ndarray, k: int = K) -> tuple[np.ndarray, float]:
    """One query at a time -> (items [Q, k], p50 milliseconds)."""
    found, timings = [], []
    for query in queries:
        started = time.perf_counter()
        items, _ = search.search(query[None, :], k)
        timings.append((time.perf_counter() - started) * 1e3)
        found.append(items[0])
    return np.stack(found), round(statistics.median(timings), 3)


def compare(index: ItemIndex, queries: np.ndarray, milvus_uri: str, prefix: str) -> dict[str, Any]:
    """faiss ``index`` and its Milvus mirror on ``queries`` [Q, d] -> the section's numbers."""
    from app.services.serving_bundle import MilvusTarget, milvus_search

    vectors = index.vectors(np.arange(index.size))
    truth = exact_top_k(vectors, queries, K)
    set_faiss_threads(1)
    faiss_found, faiss_p50 = timed_search(index, queries)
    started = time.perf_counter()
    mirror = milvus_search(index, MilvusTarget(milvus_uri, prefix, timeout_s=30.0))
    publish_s = time.perf_counter() - started
    milvus_found, milvus_p50 = timed_search(mirror, queries)
    faiss_recall = recall_against(faiss_found, truth)
    milvus_recall = recall_against(milvus_found, truth)
    return {
        "items": int(index.num_real_items),
        "faiss_kind": index.kind,
        "milvus_index": vars(mirror.index),  # type: ignore[attr-defined]
        "faiss_recall_at_200": round(faiss_recall, 4),
        "milvus_recall_at_200": round(milvus_recall, 4),
        "faiss_p50_ms": faiss_p50,
        "milvus_p50_ms": milvus_p50,
        "milvus_publish_s": round(publish_s, 1),
        "queries": int(queries.shape[0]),
        "met": milvus_recall >= 0.99 * faiss_recall,
    }


def ml_1m_case(bundle_path: Path, queries: int) -> tuple[ItemIndex, np.ndarray]:
    """The default bundle's index and its user vectors for the first ``queries`` users with events."""
    from models.bundle.load import Bundle
    from models.types import RequestContext

    bundle = Bundle.load(bundle_path)
    if bundle.index is None or bundle.encoder is None:
        raise SystemExit(f"{bundle_path}: no encoder or index (build the default bundle)")
    histories = []
    for _, history in bundle.recent_histories():
        histories.append(history)
        if len(histories) == queries:
            break
    contexts = [RequestContext(timestamp=int(h.timestamp[-1]) + 1) for h in histories]
    vectors = np.concatenate(
        [
            bundle.encoder.encode(histories[n : n + 64], contexts[n : n + 64])
            for n in range(0, len(histories), 64)
        ]
    )
    return bundle.index, vectors.astype(np.float32)


def synthetic_case(items: int, queries: int) -> tuple[ItemIndex, np.ndarray]:
    """1M clustered item vectors, indexed as the build does, and held-out user-like queries."""
    from models.index import build_index
    from models.index.synthetic_vectors import clustered_item_vectors, user_like_queries

    vectors = clustered_item_vectors(items + 2, 64, num_clusters=256, spread=0.35, seed=0)
    index = build_index(vectors, "auto")  # tunes on its own seed-1 sample queries
    return index, user_like_queries(vectors, queries, seed=1234)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.scale.index_scale", description=__doc__)
    parser.add_argument("--bundle", type=Path, default=None, help="default: the default bundle (built)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args(argv)
    bundle = bundle_or_default(args.bundle, args.data_dir)
    section: dict[str, Any] = {"k": K, "setup": "milvus-lite server process; faiss on 1 thread"}
    with (
        tempfile.TemporaryDirectory(prefix="tandem-index-") as root,
        milvus_lite_server(Path(root)) as server,
    ):
        print("ml-1m: the default bundle's index and user vectors", flush=True)
        section["ml-1m"] = compare(*ml_1m_case(bundle, args.queries), server.uri, "scale_ml1m")
        print(f"synthetic-1m: {args.items} items, building and tuning the index", flush=True)
        section["synthetic-1m"] = compare(*synthetic_case(args.items, args.queries), server.uri, "scale_1m")
    section["met"] = all(section[name]["met"] for name in ("ml-1m", "synthetic-1m"))
    command = "python -m tools.scale.index_scale " + " ".join(sys.argv[1:] if argv is None else argv)
    write_measurement(NAME, section, command.strip())
    return 0 if section["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
