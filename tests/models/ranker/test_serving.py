from pathlib import Path

import numpy as np

from models.data.schema import RATING_FUNNEL
from models.ranker.anchors import AnchorSources
from models.ranker.retrieval import CooccurrenceTable
from models.ranker.serving import TorchCandidateRanker, load_ranker, save_ranker
from models.types import RequestContext, UserHistory
from tests.models.ranker.fakes import SIZES, tiny_config, tiny_model


def _sources() -> AnchorSources:
    rng = np.random.default_rng(0)
    neighbours = rng.integers(2, SIZES.num_items, size=(SIZES.num_items, 4))
    table = CooccurrenceTable(
        neighbours, np.ones((SIZES.num_items, 4), np.float32), np.ones(SIZES.num_items, np.float32)
    )
    return AnchorSources(table, popular_latest=np.array([5, 6, 7]))


def _request(seed: int) -> tuple[UserHistory, RequestContext]:
    rng = np.random.default_rng(seed)
    items = rng.integers(2, SIZES.num_items, size=6)
    history = UserHistory(
        item=items,
        action=np.full(6, 6),
        value=rng.integers(1, 6, size=6).astype(np.float32),
        timestamp=np.arange(6) * 100,
        scene=np.ones(6, np.int64),
        device=np.ones(6, np.int64),
        user_features={"age": 2, "gender": 1},
    )
    return history, RequestContext(timestamp=10_000, scene=2, anchors=np.array([3, 4]))


def test_checkpoint_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    config = tiny_config(group_size=4)
    ranker = TorchCandidateRanker(tiny_model(config, seed=3), _sources(), RATING_FUNNEL, "v-test")
    history, context = _request(1)
    candidates = np.arange(2, 30)
    before = ranker.score(history, context, candidates)
    loaded = load_ranker(
        save_ranker(tmp_path / "ranker.pt", ranker.model, ranker.sources, RATING_FUNNEL, "v-test")
    )
    assert loaded.version == "v-test"
    assert np.array_equal(loaded.score(history, context, candidates), before)
    assert before.shape == (28,) and before.dtype == np.float32


def test_score_batch_matches_single_requests_and_handles_edge_cases() -> None:
    ranker = TorchCandidateRanker(tiny_model(tiny_config(group_size=1)), _sources(), RATING_FUNNEL, "v")
    requests = [_request(seed) for seed in range(3)]
    candidates = [np.arange(2, 12), np.arange(5, 8), np.array([9, 99])]  # 99: outside the catalogue
    batch = ranker.score_batch([r[0] for r in requests], [r[1] for r in requests], candidates)
    for (history, context), items, scores in zip(requests, candidates, batch, strict=True):
        assert np.allclose(ranker.score(history, context, items), scores, atol=1e-5)
    assert ranker.score(*requests[0], np.zeros(0, np.int64)).shape == (0,)
    assert ranker.score(UserHistory.empty(), RequestContext(timestamp=0), np.array([2, 3])).shape == (2,)


def test_a_source_aware_ranker_scores_without_source_ranks(tmp_path) -> None:
    """Callers that do not know the sources (the serving warm-up) still get scores: found by none."""
    import numpy as np
    import torch

    from models.data.schema import RATING_FUNNEL
    from models.ranker.anchors import AnchorSources
    from models.ranker.config import FeatureSizes, preset
    from models.ranker.model import OnePieceRanker
    from models.ranker.retrieval import CooccurrenceTable
    from models.ranker.serving import TorchCandidateRanker
    from models.types import RequestContext, UserHistory

    config, _ = preset("tiny", candidate_sources=("ann", "cooccurrence"))
    sizes = FeatureSizes(num_items=30, num_categories=3)
    model = OnePieceRanker(config, sizes, torch.zeros(30, dtype=torch.int64))
    table = CooccurrenceTable(
        np.zeros((30, 3), np.int64), np.zeros((30, 3), np.float32), np.ones(30, np.float32)
    )
    ranker = TorchCandidateRanker(model, AnchorSources(table, np.array([2, 3]), None), RATING_FUNNEL, "v")
    z = np.zeros(3, dtype=np.int64)
    history = UserHistory(np.array([4, 5, 6]), z + 1, np.ones(3, np.float32), np.arange(3), z + 1, z + 1)
    candidates = np.array([7, 8, 9])
    without = ranker.score(history, RequestContext(timestamp=10), candidates)
    absent = ranker.score(history, RequestContext(timestamp=10), candidates, np.full((3, 2), -1))
    found = ranker.score(history, RequestContext(timestamp=10), candidates, np.zeros((3, 2), np.int64))
    assert without.shape == (3,) and np.allclose(without, absent)
    assert not np.allclose(found, absent)  # the ranks are read
