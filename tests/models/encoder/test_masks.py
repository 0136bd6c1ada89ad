import numpy as np
import torch

from models.encoder.layout import CONTEXT_TOKEN, ITEM_TOKEN
from models.encoder.masks import causal_mask, session_mask


def brute_force_session_mask(sess: np.ndarray, tok_type: np.ndarray) -> np.ndarray:
    batch, length = sess.shape
    allowed = np.zeros((batch, length, length), dtype=bool)
    for b in range(batch):
        for q in range(length):
            for k in range(length):
                if q == k:
                    allowed[b, q, k] = True
                elif tok_type[b, q] == 0 or tok_type[b, k] == 0:
                    continue
                else:
                    own_context = sess[b, k] == sess[b, q] and tok_type[b, k] == CONTEXT_TOKEN
                    allowed[b, q, k] = sess[b, k] < sess[b, q] or own_context
    return allowed


def random_layouts(rng: np.random.Generator, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    sess = np.zeros((batch, length), dtype=np.int64)
    tok_type = np.zeros((batch, length), dtype=np.int64)
    for b in range(batch):
        position, session = 0, 1
        limit = int(rng.integers(1, length + 1))
        while position < limit:
            size = min(int(rng.integers(0, 5)) + 1, limit - position)  # context + up to 4 items
            tok_type[b, position] = CONTEXT_TOKEN
            tok_type[b, position + 1 : position + size] = ITEM_TOKEN
            sess[b, position : position + size] = session
            position, session = position + size, session + 1
    return sess, tok_type


def test_session_mask_matches_brute_force_on_random_layouts():
    rng = np.random.default_rng(7)
    for _ in range(20):
        sess, tok_type = random_layouts(rng, batch=3, length=17)
        got = session_mask(torch.as_tensor(sess), torch.as_tensor(tok_type)).numpy()
        assert (got == brute_force_session_mask(sess, tok_type)).all()


def test_session_mask_worked_example_from_spec():
    # c1 a1 b1 c2 a2 c3 (models.md 1.4)
    sess = torch.tensor([[1, 1, 1, 2, 2, 3]])
    tok_type = torch.tensor([[1, 2, 2, 1, 2, 1]])
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 0, 1, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(session_mask(sess, tok_type)[0], expected)


def test_causal_mask_ignores_padding_keys():
    tok_type = torch.tensor([[2, 2, 2, 0], [2, 2, 2, 2]])
    mask = causal_mask(tok_type)
    assert torch.equal(mask[1], torch.ones(4, 4, dtype=torch.bool).tril())
    assert not mask[0, 3, :3].any() and mask[0, 3, 3]  # padded query sees only itself
    assert not mask[0, :3, 3].any()
