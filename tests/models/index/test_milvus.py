"""The Milvus item index against milvus-lite embedded (a ``.db`` file): ``make scale``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.index.builder import build_index
from models.index.milvus import MilvusItemSearch, collection_name, open_milvus_search, publish_collection

pytestmark = pytest.mark.scale


@pytest.fixture(autouse=True)
def _milvus_installed() -> None:
    """Only when a test runs (``make scale`` installs the extra; make test deselects these)."""
    pytest.importorskip("pymilvus", reason="make scale installs the scale extra")


def _vectors(items: int = 300, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(items, dim)).astype(np.float32)
    vectors[:2] = 0.0  # padding and unknown rows
    return vectors


def test_milvus_search_finds_what_the_exact_faiss_index_finds(tmp_path: Path) -> None:
    vectors = _vectors()
    index = build_index(vectors, "flat")
    search = open_milvus_search(str(tmp_path / "m.db"), "t", vectors, index.version)
    queries = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    exclude = [set(), {5, 6, 7}, set(range(2, 60)), set(), {10}]
    got_items, got_scores = search.search(queries, 10, exclude)
    want_items, want_scores = index.search(queries, 10, exclude)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-4)
    assert not any(set(row.tolist()) & excluded for row, excluded in zip(got_items, exclude, strict=True))
    np.testing.assert_array_equal(search.vectors(np.array([3, 4])), vectors[[3, 4]])


def test_a_published_collection_is_reused_and_a_racing_publisher_loses_cleanly(tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(str(tmp_path / "m.db"))
    vectors = _vectors()
    name = collection_name("t", "flat-abc.1")
    assert name == "t_items_flat_abc_1"
    publish_collection(client, name, vectors)
    publish_collection(client, name, vectors)  # exists with the right rows: used as it is
    assert client.list_collections() == [name]
    with pytest.raises(ValueError, match="rows"):  # a collection of another size under that name
        publish_collection(client, name, _vectors(items=100))
    # the rename refuses an existing name: a second publisher keeps the first one's collection
    client.create_collection("other", dimension=16)
    with pytest.raises(Exception):  # noqa: B017 - pymilvus raises its own MilvusException
        client.rename_collection("other", name)


def test_a_failing_search_degrades_to_no_candidates_and_is_reported(tmp_path: Path) -> None:
    vectors = _vectors()
    search = open_milvus_search(str(tmp_path / "m.db"), "t", vectors, "v1")
    errors: list[Exception] = []
    broken = MilvusItemSearch(search.client, "missing_collection", vectors, "v1", on_error=errors.append)
    items, scores = broken.search(np.ones((2, 16), np.float32), 5)
    assert (items == -1).all() and np.isneginf(scores).all() and len(errors) == 2
