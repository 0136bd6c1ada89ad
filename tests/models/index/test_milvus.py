"""The Milvus item index against milvus-lite, embedded (a ``.db`` file) and as a server process
(``tests.milvus_server``): ``make scale``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from models.index.builder import build_index
from models.index.milvus import MilvusItemSearch, collection_name, open_milvus_search, publish_collection
from tests.milvus_server import MODES, milvus_uri

pytestmark = pytest.mark.scale
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _milvus_installed() -> None:
    """Only when a test runs (``make scale`` installs the extra; make test deselects these)."""
    pytest.importorskip("pymilvus", reason="make scale installs the scale extra")


@pytest.fixture(params=MODES)
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A milvus-lite ``.db`` path (embedded), or the URI of a milvus-lite server process."""
    with milvus_uri(request.param, tmp_path) as value:
        yield value


def _vectors(items: int = 300, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(items, dim)).astype(np.float32)
    vectors[:2] = 0.0  # padding and unknown rows
    return vectors


def test_milvus_search_finds_what_the_exact_faiss_index_finds(uri: str) -> None:
    vectors = _vectors()
    index = build_index(vectors, "flat")
    search = open_milvus_search(uri, "t", vectors, index.version)
    queries = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32)
    exclude = [set(), {5, 6, 7}, set(range(2, 60)), set(), {10}]
    got_items, got_scores = search.search(queries, 10, exclude)
    want_items, want_scores = index.search(queries, 10, exclude)
    np.testing.assert_array_equal(got_items, want_items)
    np.testing.assert_allclose(got_scores, want_scores, rtol=1e-4, atol=1e-4)
    assert not any(set(row.tolist()) & excluded for row, excluded in zip(got_items, exclude, strict=True))
    np.testing.assert_array_equal(search.vectors(np.array([3, 4])), vectors[[3, 4]])


def test_a_published_collection_is_reused_and_a_racing_publisher_loses_cleanly(uri: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    vectors = _vectors()
    name = collection_name("t", "flat-abc.1")
    assert name == "t_items_flat_abc_1"
    publish_collection(client, name, vectors)
    publish_collection(client, name, vectors)  # exists with the right rows: used as it is
    assert client.list_collections() == [name]
    with pytest.raises(ValueError, match=f"{name}: 298 rows, the bundle has 98 items"):  # another size
        publish_collection(client, name, _vectors(items=100))
    with pytest.raises(ValueError, match=f"{name}: dimension 16, the bundle's is 8"):  # another dimension
        publish_collection(client, name, _vectors(dim=8))
    # the rename refuses an existing name: a second publisher keeps the first one's collection
    client.create_collection("other", dimension=16)
    with pytest.raises(Exception):  # noqa: B017 - pymilvus raises its own MilvusException
        client.rename_collection("other", name)


def test_a_failing_search_degrades_to_no_candidates_and_is_reported(uri: str) -> None:
    vectors = _vectors()
    search = open_milvus_search(uri, "t", vectors, "v1")
    errors: list[Exception] = []
    broken = MilvusItemSearch(search.client, "missing_collection", vectors, "v1", on_error=errors.append)
    items, scores = broken.search(np.ones((2, 16), np.float32), 5)
    assert (items == -1).all() and np.isneginf(scores).all() and len(errors) == 2


# Runs in another process: opens the bundle's collection at argv[1] with the vectors of argv[2] and prints
# the top 3 of item 5's vector; with argv[3] == "find", publishing again fails the process.
OTHER_PROCESS = """
import sys
import numpy as np
import models.index.milvus as milvus

def published_again(*args, **kwargs):
    raise AssertionError("the collection was published again")

if sys.argv[3] == "find":
    milvus._build = published_again
vectors = np.load(sys.argv[2])
search = milvus.open_milvus_search(sys.argv[1], "t", vectors, "v1", timeout_s=10.0)
print(search.search(vectors[5:6], 3)[0][0].tolist())
"""


def _other_process(uri: str, vectors: Path, mode: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", OTHER_PROCESS, uri, str(vectors), mode]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)


def test_a_second_process_finds_the_collection_the_first_published(uri: str, tmp_path: Path) -> None:
    from pymilvus import MilvusClient

    vectors = _vectors()
    np.save(tmp_path / "vectors.npy", vectors)
    first = _other_process(uri, tmp_path / "vectors.npy", "publish")
    assert first.returncode == 0, first.stderr
    second = _other_process(uri, tmp_path / "vectors.npy", "find")
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout and first.stdout.startswith("[5, ")
    client = MilvusClient(uri)  # no temporary collection left behind
    assert client.list_collections() == [collection_name("t", "v1")]
    third = _other_process(uri, tmp_path / "vectors.npy", "find")  # while this process holds a client
    if uri.startswith("http://"):
        assert third.returncode == 0 and third.stdout == first.stdout, third.stderr
    else:  # milvus-lite embedded: one process per .db file (replicas need a server)
        assert third.returncode != 0 and "another process holds the lock" in third.stderr


def test_an_ivf_bundle_index_is_mirrored_as_ivf_flat_with_its_tuned_nprobe(uri: str) -> None:
    from models.index import IndexBuildConfig
    from models.index.milvus import MilvusIndex
    from models.index.synthetic_vectors import clustered_item_vectors, user_like_queries
    from models.index.tuning import exact_top_k, recall_against

    vectors = clustered_item_vectors(4002, 16, num_clusters=32, seed=0)
    config = IndexBuildConfig(flat_max_items=1000, recall_k=50, sample_queries=100, latency_queries=10)
    index = build_index(vectors, "auto", config=config)
    assert index.kind == "ivf"
    spec = MilvusIndex.like("ivf", index.metadata["build_params"], index.settings.nprobe)
    search = open_milvus_search(uri, "t", vectors, index.version, timeout_s=10.0, index=spec)
    description = search.client.describe_index(search.collection, "vector")
    assert description["index_type"] == "IVF_FLAT"
    assert search._search_params(50) == {"nprobe": index.settings.nprobe}
    queries = user_like_queries(vectors, 60, seed=7)
    truth = exact_top_k(vectors, queries, 50)
    faiss_recall = recall_against(index.search(queries, 50)[0], truth)
    milvus_recall = recall_against(search.search(queries, 50)[0], truth)
    assert milvus_recall >= 0.9 * faiss_recall and milvus_recall > 0.5
