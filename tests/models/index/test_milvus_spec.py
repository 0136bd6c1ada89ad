"""The Milvus index that mirrors a bundle's faiss index (no Milvus needed)."""

from __future__ import annotations

import numpy as np

from models.index.milvus import MilvusIndex, MilvusItemSearch


def test_each_faiss_kind_maps_to_its_milvus_index_and_tuned_knob() -> None:
    assert MilvusIndex.like("flat", {}) == MilvusIndex("FLAT", {}, {})
    assert MilvusIndex.like("ivf", {"nlist": 2048, "train_points": 9}, nprobe=16) == MilvusIndex(
        "IVF_FLAT", {"nlist": 2048}, {"nprobe": 16}
    )
    hnsw = MilvusIndex.like("hnsw", {"M": 32, "ef_construction": 80}, ef_search=120)
    assert hnsw == MilvusIndex("HNSW", {"M": 32, "efConstruction": 80}, {"ef": 120})


def test_hnsw_searches_with_ef_at_least_k() -> None:
    hnsw = MilvusIndex("HNSW", {"M": 8, "efConstruction": 40}, {"ef": 64})
    search = MilvusItemSearch(None, "c", np.zeros((4, 2)), "v", index=hnsw)
    assert search._search_params(10) == {"ef": 64} and search._search_params(200) == {"ef": 200}
    assert MilvusItemSearch(None, "c", np.zeros((4, 2)), "v")._search_params(10) == {}
