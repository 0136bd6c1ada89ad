import numpy as np

from models.baselines.cooccurrence import (
    CooccurrenceConfig,
    CooccurrenceScorer,
    build_cooccurrence,
    cooccurrence_matrix,
)
from models.baselines.popularity import build_popularity
from models.data.builder import RawEvents, build_dataset
from models.data.schema import COMMERCE_FUNNEL, Action, Dataset
from models.data.splits import leave_last_out
from models.evaluate.protocols import evaluate, leave_last_out_task
from models.evaluate.scorer import FitInput


def sequences(seqs: list[list[int]]) -> Dataset:
    users = np.concatenate([np.full(len(s), u) for u, s in enumerate(seqs)])
    items = np.concatenate([np.array(s) for s in seqs])
    times = np.concatenate([np.arange(len(s)) * 60 for s in seqs])
    raw = RawEvents(user=users, item=items, timestamp=times, action=np.full(len(items), Action.VIEW, np.int8))
    return build_dataset("co", raw, COMMERCE_FUNNEL, "commerce")


def idx(d: Dataset, raw: int) -> int:
    return d.catalogue.raw_id.index(str(raw))


def test_matrix_counts_window_pairs_symmetrically() -> None:
    d = sequences([[1, 2, 3], [1, 2], [4, 5]])
    m = cooccurrence_matrix(d.events, d.num_items, CooccurrenceConfig(window=1))
    dense = np.zeros((d.num_items, d.num_items))
    for row in range(d.num_items):
        dense[row, m.indices[m.indptr[row] : m.indptr[row + 1]]] = m.data[m.indptr[row] : m.indptr[row + 1]]
    np.testing.assert_allclose(dense, dense.T)
    a, b, c = idx(d, 1), idx(d, 2), idx(d, 3)
    assert dense[a, b] == np.float32(2 / np.sqrt(2 * 2))  # co-occurred twice, each seen twice
    assert dense[a, c] == 0  # two apart, window 1
    assert dense[idx(d, 3), idx(d, 4)] == 0  # different users never pair


def test_scores_follow_history_and_prune() -> None:
    d = sequences([[1, 2], [1, 2], [3, 4], [1, 5]])
    scorer = CooccurrenceScorer(d.events, d.num_items, CooccurrenceConfig(window=1, max_neighbours=1))
    assert scorer.top_k(np.array([idx(d, 1)]), 1, exclude=np.array([idx(d, 1)])).tolist() == [idx(d, 2)]
    assert scorer.top_k(np.array([idx(d, 3)]), 1).tolist() == [idx(d, 4)]
    row = idx(d, 1)
    assert scorer.matrix.indptr[row + 1] - scorer.matrix.indptr[row] == 1  # item 1 had two neighbours
    empty = scorer.score_items([np.zeros(0, np.int64)])
    assert empty.shape == (1, d.num_items) and empty.max() > 0  # popularity tie-breaker only


def test_beats_random_and_popularity_on_synthetic(tiny_synthetic: Dataset) -> None:
    split = leave_last_out(tiny_synthetic.events)
    fit = FitInput(tiny_synthetic, split, "leave-last-out", seed=0)
    task = leave_last_out_task(tiny_synthetic, split)
    n = tiny_synthetic.num_items
    co = np.nanmean(evaluate(build_cooccurrence(fit), task, n, progress=False)["NDCG@10"])
    pop = np.nanmean(evaluate(build_popularity(fit), task, n, progress=False)["NDCG@10"])
    assert co > pop > 0  # planted clusters: neighbours of the last items predict the next one


def test_arrays_round_trip() -> None:
    d = sequences([[1, 2, 3], [2, 3, 4]])
    config = CooccurrenceConfig(window=2)
    scorer = CooccurrenceScorer(d.events, d.num_items, config)
    again = CooccurrenceScorer.from_arrays(scorer.arrays(), config)
    history = [np.array([idx(d, 2), idx(d, 3)])]
    np.testing.assert_array_equal(again.score_items(history), scorer.score_items(history))
