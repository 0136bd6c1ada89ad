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
from models.protocols import evaluate, leave_last_out_task
from models.scorer import FitInput


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


def test_baseline_candidate_source_and_ranker_anchors_read_one_fit() -> None:
    from models.candidates.generator import fit_sources
    from models.candidates.sources import CandidateRequest
    from models.ranker.retrieval import cooccurrence_scores, fit_cooccurrence
    from models.types import RequestContext, UserHistory

    d = sequences([[1, 2, 3, 4], [2, 3, 5], [1, 3, 2, 6, 4], [5, 6, 1], [7, 1, 2]])
    config = CooccurrenceConfig(window=3, max_neighbours=3)
    baseline = CooccurrenceScorer(d.events, d.num_items, config)
    source = fit_sources(d.events, d.num_items, d.num_scenes, config)["cooccurrence"]
    anchors = fit_cooccurrence(d.events, d.num_items, window=3, top_m=3)
    for item in range(2, d.num_items):
        one = np.array([item], dtype=np.int64)
        similar = baseline.score_items([one])[0] - config.popularity_weight * baseline.popularity
        listed = source.candidates(CandidateRequest(UserHistory.empty(), RequestContext(0, anchors=one)), 10)
        kept = anchors.weights[item] > 0
        neighbours, weights = anchors.neighbours[item][kept], anchors.weights[item][kept]
        # the same neighbours with the same weights, best first, in all three
        assert listed.items.tolist() == neighbours.tolist()
        assert listed.scores.tolist() == weights.tolist()
        np.testing.assert_allclose(similar[listed.items], listed.scores, rtol=1e-6)
        assert np.count_nonzero(similar > 1e-9) == len(listed)
        np.testing.assert_allclose(cooccurrence_scores(anchors, one)[listed.items], listed.scores, rtol=1e-6)
    assert anchors.popularity[idx(d, 1)] == 4
