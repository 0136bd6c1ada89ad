import numpy as np
import pytest

from models.baselines.transitions import TransitionConfig, transition_matrix
from models.candidates.generator import fit_sources, transition_source
from models.candidates.sources import CandidateRequest
from models.data.schema import Dataset
from models.types import RequestContext
from tests.models.baselines.test_cooccurrence import idx, sequences
from tests.models.candidates.test_sources import history


def dense(d: Dataset, config: TransitionConfig) -> np.ndarray:
    m = transition_matrix(d.events, d.num_items, config)
    out = np.zeros((d.num_items, d.num_items))
    for row in range(d.num_items):
        out[row, m.indices[m.indptr[row] : m.indptr[row + 1]]] = m.data[m.indptr[row] : m.indptr[row + 1]]
    return out


def test_successors_keep_the_order_weigh_by_distance_and_share_by_the_source_count() -> None:
    d = sequences([[1, 2, 3], [1, 2], [4, 5]])
    t = dense(d, TransitionConfig(window=2, smoothing=1.0))
    one, two, three = idx(d, 1), idx(d, 2), idx(d, 3)
    assert t[one, two] == pytest.approx(2 / (2 + 1))  # 1 -> 2 twice at distance 1; item 1 seen twice
    assert t[one, three] == pytest.approx(0.5 / (2 + 1))  # once at distance 2
    assert t[two, one] == 0 and t[three, one] == 0  # never followed by an earlier item
    assert t[three, idx(d, 4)] == 0  # users never chain into each other
    assert dense(d, TransitionConfig(window=1))[one, three] == 0  # two apart, window 1


def test_rows_keep_their_strongest_successors_first() -> None:
    d = sequences([[1, 2], [1, 2], [1, 3], [1, 4], [1, 4], [1, 4]])
    m = transition_matrix(d.events, d.num_items, TransitionConfig(window=1, max_neighbours=2))
    one = idx(d, 1)
    row = m.indices[m.indptr[one] : m.indptr[one + 1]]
    assert row.tolist() == [idx(d, 4), idx(d, 2)]  # 3 successors, the weakest (3) cut
    assert np.all(np.diff(m.data[m.indptr[one] : m.indptr[one + 1]]) <= 0)


def test_same_session_only_drops_pairs_across_sessions() -> None:
    d = sequences([[1, 2, 3]])
    d.events.session[:] = np.array([0, 0, 1])
    within = dense(d, TransitionConfig(window=1, same_session_only=True))
    assert within[idx(d, 1), idx(d, 2)] > 0 and within[idx(d, 2), idx(d, 3)] == 0


def test_the_source_recommends_what_followed_the_recent_items() -> None:
    d = sequences([[1, 2, 3], [1, 2, 3], [2, 5], [7, 1]])
    source = fit_sources(d.events, d.num_items, d.num_scenes)["transitions"]
    assert source.name == "transitions"
    request = CandidateRequest(history([idx(d, 1)]), RequestContext(0), exclude=np.array([idx(d, 1)]))
    found = source.candidates(request, 5)
    assert found.items[0] == idx(d, 2)  # what came right after item 1 most often
    assert idx(d, 7) not in found.items.tolist()  # 7 came before 1, never after
    scores = source.score_items(request, np.array([idx(d, 2), idx(d, 7)]))
    assert scores[0] == found.scores[0] and scores[1] == 0
    empty = CandidateRequest(history([]), RequestContext(0))
    assert len(source.candidates(empty, 5)) == 0


def test_transition_source_reads_the_fitted_rows_with_the_configured_decay() -> None:
    d = sequences([[1, 2], [3, 4]])
    config = TransitionConfig(window=1, history_decay=0.5)
    source = transition_source(transition_matrix(d.events, d.num_items, config), config)
    request = CandidateRequest(history([idx(d, 3), idx(d, 1)]), RequestContext(0))  # item 1 newest
    scores = source.score_items(request, np.array([idx(d, 2), idx(d, 4)]))
    assert scores[1] == pytest.approx(0.5 * scores[0])  # same share, one step older
