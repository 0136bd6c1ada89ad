"""ANN index over item vectors: exact when small, HNSW/IVF above a size threshold, tuned by measurement.

from models.index import build_index, ItemIndex
index = build_index(item_vectors)            # [N, d] float32, rows 0/1 padding/unknown
items, scores = index.search(user_vectors, k=200, exclude=[seen_items])
index.save(path); ItemIndex.load(path)
"""

from models.index.builder import IndexBuildConfig, build_index
from models.index.item_index import ItemIndex, SearchSettings, vectors_version
from models.index.tuning import set_faiss_threads

__all__ = [
    "IndexBuildConfig",
    "ItemIndex",
    "SearchSettings",
    "build_index",
    "set_faiss_threads",
    "vectors_version",
]
