import pickle

import numpy as np

from models.data.schema import COMMERCE_FUNNEL, RATING_FUNNEL, Action


def test_funnel_levels() -> None:
    action = np.array([Action.PAD, Action.VIEW, Action.CART, Action.FAV, Action.PURCHASE])
    assert COMMERCE_FUNNEL.levels(action, np.ones(5)).tolist() == [0, 1, 2, 2, 3]
    rated = np.full(3, Action.RATE)
    assert RATING_FUNNEL.levels(rated, np.array([3.0, 4.0, 5.0])).tolist() == [1, 2, 3]


def test_funnel_holds_plain_ints() -> None:
    # Checkpoints store the funnel; torch.load(weights_only=True) only accepts builtin types.
    for value in COMMERCE_FUNNEL.click_actions + COMMERCE_FUNNEL.pay_actions:
        assert type(value) is int
    assert b"Action" not in pickle.dumps(COMMERCE_FUNNEL.click_actions)
