import numpy as np

from models.train.examples import build_targets, item_token_targets, session_targets


def test_item_tokens_predict_the_next_session():
    # one user: [c1 a b c2 d c3 e f c4] with items a=5 b=6 d=7 e=8 f=9; c4 has no items (not a query)
    tok_type = np.array([[1, 2, 2, 1, 2, 1, 2, 2, 1]])
    padded = {
        "tok_type": tok_type,
        "sess": np.array([[1, 1, 1, 2, 2, 3, 3, 3, 4]]),
        "item": np.array([[0, 5, 6, 0, 7, 0, 8, 9, 0]]),
        "level": np.where(tok_type == 2, 1, 0),
        "scene": np.full((1, 9), 2),
    }
    session = session_targets(padded, max_items=20)
    assert session.cols.tolist() == [0, 3, 5]
    assert session.items[:, :2].tolist() == [[5, 6], [7, 0], [8, 9]]
    dense = item_token_targets(padded, session)
    # a, b -> items of session 2; d -> items of session 3; e, f have no following query
    assert dense.cols.tolist() == [1, 2, 4]
    assert dense.items[:, :2].tolist() == [[7, 0], [7, 0], [8, 9]]
    assert dense.scene.tolist() == [2, 2, 2]


def test_folded_tokens_predict_the_next_tokens_item():
    # two users: tokens [(-, c1) (a, c2) (b, c3) (c, -)] and [(-, c1) (d, -)], items a=5 b=6 c=7 d=8
    padded = {
        "tok_type": np.array([[3, 3, 3, 3], [3, 3, 0, 0]]),
        "item": np.array([[0, 5, 6, 7], [0, 8, 0, 0]]),
        "level": np.array([[0, 1, 2, 1], [0, 3, 0, 0]]),
        "scene": np.array([[1, 2, 2, 0], [4, 0, 0, 0]]),
    }
    targets = build_targets(padded, is_session=True, max_items=1, folded=True)
    assert targets.rows.tolist() == [0, 0, 0, 1] and targets.cols.tolist() == [0, 1, 2, 0]
    assert targets.items[:, 0].tolist() == [5, 6, 7, 8]
    assert targets.levels[:, 0].tolist() == [1, 2, 1, 3]
    assert targets.next_items[:, 0].tolist() == [6, 7, 0, 0]  # multi-session head: the request after
    assert targets.scene.tolist() == [1, 2, 2, 4]  # the query's own request
