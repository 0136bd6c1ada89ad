import numpy as np

from models.train.examples import item_token_targets, session_targets


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
