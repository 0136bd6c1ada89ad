import numpy as np
import pytest

from models.data.schema import FIRST_REAL_ID
from models.index import IndexBuildConfig, ItemIndex, build_index
from models.index.synthetic_vectors import clustered_item_vectors, user_like_queries
from models.index.tuning import exact_top_k, recall_against

# Small but not trivial: 3,000 items in 24 clusters, 60 sample queries.
NUM_ITEMS, DIM = 3_002, 16
CONFIG = IndexBuildConfig(
    recall_k=50, sample_queries=60, latency_queries=5, hnsw_m=16, hnsw_ef_construction=40
)


@pytest.fixture(scope="module")
def item_vectors() -> np.ndarray:
    return clustered_item_vectors(NUM_ITEMS, DIM, num_clusters=24, seed=3)


@pytest.fixture(scope="module")
def queries(item_vectors: np.ndarray) -> np.ndarray:
    return user_like_queries(item_vectors, 40, seed=11)


@pytest.fixture(scope="module", params=["flat", "hnsw", "ivf"])
def index(request: pytest.FixtureRequest, item_vectors: np.ndarray) -> ItemIndex:
    return build_index(item_vectors, request.param, config=CONFIG)


def test_flat_search_equals_brute_force(item_vectors: np.ndarray, queries: np.ndarray) -> None:
    index = build_index(item_vectors, "flat", config=CONFIG)
    items, scores = index.search(queries, 20)
    real = item_vectors[FIRST_REAL_ID:]
    expected = np.argsort(-(queries @ real.T), axis=1, kind="stable")[:, :20] + FIRST_REAL_ID
    np.testing.assert_array_equal(items, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ item_vectors.T, items, axis=1), rtol=1e-5)
    assert index.metadata["recall"]["recall_at_k"] == 1.0


def test_ann_recall_against_exact_on_fresh_queries(
    index: ItemIndex, item_vectors: np.ndarray, queries: np.ndarray
):
    # The build tuned efSearch / nprobe for recall 0.96 on its own sample; on different queries from the
    # same distribution the tuned setting should still land close to it. 0.9 leaves room for sampling
    # noise over 40 queries without letting a broken index (recall ~ k / N = 0.02) through.
    found, _ = index.search(queries, 50)
    recall = recall_against(found, exact_top_k(item_vectors, queries, 50))
    assert recall >= 0.9
    assert index.metadata["recall"]["target_met"]
    assert len(index.metadata["sweep"]) >= 1


def test_auto_kind_follows_size_threshold(item_vectors: np.ndarray) -> None:
    small = build_index(item_vectors, "auto", config=CONFIG)
    assert small.kind == "flat"
    big = build_index(
        item_vectors, "auto", config=IndexBuildConfig(**{**vars(CONFIG), "flat_max_items": 1000})
    )
    assert big.kind == "ivf"


def test_padding_rows_never_returned(index: ItemIndex, item_vectors: np.ndarray) -> None:
    # A query equal to -v scores the zero rows (0) above every real item whose dot product is negative.
    query = -item_vectors[FIRST_REAL_ID : FIRST_REAL_ID + 1]
    items, _ = index.search(query, 100)
    assert (items >= FIRST_REAL_ID).all()


def test_exclusions_with_over_fetch_return_k_valid_items(index: ItemIndex, queries: np.ndarray) -> None:
    k = 30
    # Exclude each query's own top-400: the first fetch (k + margin + k) is eaten entirely, so the short
    # rows must be retried with larger fetches.
    plain, _ = index.search(queries[:8], 400)
    exclude = [set(row.tolist()) for row in plain]
    exclude[3] = set()  # one row without exclusions in the same batch
    items, scores = index.search(queries[:8], k, exclude=exclude)
    for row in range(8):
        assert (items[row] >= FIRST_REAL_ID).all()
        assert len(set(items[row].tolist())) == k
        assert not set(items[row].tolist()) & exclude[row]
        assert (np.diff(scores[row]) <= 1e-6).all()
    if index.kind == "flat":  # exact: the unexcluded row is the plain top-k
        np.testing.assert_array_equal(items[3], plain[3, :k])


def test_everything_excluded_pads_with_minus_one(item_vectors: np.ndarray) -> None:
    tiny = item_vectors[:12]  # 10 real items
    index = build_index(tiny, "flat", config=CONFIG)
    exclude = [set(range(FIRST_REAL_ID, 10))]  # 8 of 10 excluded
    items, scores = index.search(tiny[5:6], 5, exclude=exclude)
    assert sorted(items[0, :2].tolist()) == [10, 11]
    assert (items[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()


def test_save_load_round_trip_gives_identical_results(
    index: ItemIndex, queries: np.ndarray, tmp_path
) -> None:
    before = index.search(queries, 25, exclude=[{5, 6, 7}] * len(queries))
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    after = loaded.search(queries, 25, exclude=[{5, 6, 7}] * len(queries))
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])
    assert (loaded.version, loaded.kind, loaded.settings) == (index.version, index.kind, index.settings)
    assert loaded.metadata == index.metadata


def test_vectors_reconstruct_the_table(index: ItemIndex, item_vectors: np.ndarray) -> None:
    rows = np.array([0, 1, 2, 500, NUM_ITEMS - 1])
    np.testing.assert_allclose(index.vectors(rows), item_vectors[rows], atol=1e-6)
    np.testing.assert_allclose(index.vector(7), item_vectors[7], atol=1e-6)


def test_bad_input_is_rejected(index: ItemIndex, tmp_path) -> None:
    with pytest.raises(ValueError, match="queries must be"):
        index.search(np.zeros((2, DIM + 1), dtype=np.float32), 5)
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.zeros((1, DIM), dtype=np.float32), 0)
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        ItemIndex.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="NaN"):
        build_index(np.full((10, 4), np.nan, dtype=np.float32))


def test_excluding_most_of_the_catalogue_still_fills_k(index: ItemIndex, queries: np.ndarray) -> None:
    # Every even item and every item of the query's plain top-300 are excluded: far more than any
    # over-fetch budget, so HNSW must filter inside its walk and IVF/exact must widen the search.
    plain, _ = index.search(queries[:3], 300)
    exclude = [set(range(0, NUM_ITEMS, 2)) | set(row.tolist()) for row in plain]
    items, scores = index.search(queries[:3], 10, exclude=exclude)
    for row in range(3):
        assert (items[row] >= FIRST_REAL_ID).all() and len(set(items[row].tolist())) == 10
        assert not set(items[row].tolist()) & exclude[row]
        assert np.isfinite(scores[row]).all()
