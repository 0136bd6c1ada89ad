import numpy as np

from models.data.schema import EventTable
from models.ranker.retrieval import CooccurrenceRetriever, fit_cooccurrence
from models.types import RequestContext, UserHistory


def _events(user: list[int], item: list[int]) -> EventTable:
    n = len(user)
    zeros = np.zeros(n, dtype=np.int64)
    return EventTable(
        user=np.asarray(user),
        item=np.asarray(item),
        timestamp=np.arange(n),
        action=zeros + 1,
        value=np.ones(n, np.float32),
        session=zeros + 1,
        scene=zeros + 1,
        device=zeros + 1,
        hour=zeros,
        dow=zeros,
    )


def _history(items: list[int]) -> UserHistory:
    arr = np.asarray(items, dtype=np.int64)
    ones = np.ones_like(arr)
    return UserHistory(arr, ones, ones.astype(np.float32), np.arange(len(arr)), ones, ones)


def test_cooccurrence_pairs_stay_within_users_and_window() -> None:
    # user 2: 2 3 4 5 ; user 3: 5 6 -> with window 1: (2,3) (3,4) (4,5) (5,6), never (3,5) nor across users
    table = fit_cooccurrence(_events([2, 2, 2, 2, 3, 3], [2, 3, 4, 5, 5, 6]), num_items=8, window=1, top_m=3)
    assert set(table.neighbours[3][table.weights[3] > 0].tolist()) == {2, 4}
    assert set(table.neighbours[5][table.weights[5] > 0].tolist()) == {4, 6}
    assert table.popularity[5] == 2


def test_retriever_prefers_neighbours_of_recent_items_and_can_exclude_seen() -> None:
    table = fit_cooccurrence(_events([2, 2, 3, 3, 4, 4], [2, 3, 2, 3, 6, 7]), num_items=9, window=1, top_m=4)
    retriever = CooccurrenceRetriever(table)
    top = retriever.retrieve([_history([2])], k=3)[0]
    assert top[0] == 3
    assert len(top) == 3 and 0 not in top and 1 not in top
    excluded = CooccurrenceRetriever(table, exclude_seen=True).retrieve([_history([2, 3])], k=5)[0]
    assert 2 not in excluded and 3 not in excluded


def test_encoder_retriever_returns_the_encoders_exact_top_k(tmp_path) -> None:
    import torch

    from models.encoder.model import RetrievalEncoder
    from models.encoder.serving import load_user_encoder, save_user_encoder
    from models.ranker.retrieval import EncoderRetriever
    from tests.models.encoder.test_model import CATEGORY, random_history, tiny_config

    torch.manual_seed(0)
    model = RetrievalEncoder(tiny_config("hstu")).eval()
    encoder = load_user_encoder(save_user_encoder(model, tmp_path / "e.pt", CATEGORY))
    rng = np.random.default_rng(3)
    histories = [random_history(rng, n) for n in (5, 12, 30)]
    lists = EncoderRetriever(encoder, exclude_seen=True, batch_size=2).retrieve(histories, 10)
    items = encoder.item_vectors()
    for history, top in zip(histories, lists, strict=True):
        assert len(top) == 10 and len(set(top.tolist())) == 10
        assert (top >= 2).all() and not set(top.tolist()) & set(history.item.tolist())
        context = RequestContext(
            int(history.timestamp[-1]) + 1, int(history.scene[-1]), int(history.device[-1])
        )
        scores = encoder.encode([history], [context])[0] @ items.T
        scores[:2] = -np.inf
        scores[history.item] = -np.inf
        np.testing.assert_array_equal(top, np.argsort(-scores, kind="stable")[:10])
