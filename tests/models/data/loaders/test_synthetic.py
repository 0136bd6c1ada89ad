import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic, synthetic_truth
from models.data.schema import FIRST_REAL_ID, Action, Dataset


def test_deterministic_by_seed() -> None:
    config = SyntheticConfig(num_users=50, num_items=200, num_events=2000, num_clusters=5, seed=3)
    first, second = generate_synthetic(config), generate_synthetic(config)
    np.testing.assert_array_equal(first.events.item, second.events.item)
    np.testing.assert_array_equal(first.events.timestamp, second.events.timestamp)
    other = generate_synthetic(
        SyntheticConfig(num_users=50, num_items=200, num_events=2000, num_clusters=5, seed=4)
    )
    assert not np.array_equal(first.events.item[:100], other.events.item[:100])


def test_sizes_follow_arguments(tiny_synthetic: Dataset) -> None:
    assert tiny_synthetic.num_users == 300 + FIRST_REAL_ID
    assert tiny_synthetic.num_items == 800 + FIRST_REAL_ID
    assert 18_000 < len(tiny_synthetic.events) < 22_000
    assert tiny_synthetic.num_scenes == 4 + FIRST_REAL_ID and tiny_synthetic.num_devices == 3 + FIRST_REAL_ID


def test_sessions_concentrate_in_one_cluster(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    views = events.take(events.action == Action.VIEW)
    category = tiny_synthetic.catalogue.category[views.item]
    key = views.user.astype(np.int64) * 10_000 + views.session
    _, session_index = np.unique(key, return_inverse=True)
    counts = np.zeros((session_index.max() + 1, tiny_synthetic.num_categories))
    np.add.at(counts, (session_index, category), 1)
    big = counts.sum(1) >= 5
    top_share = (counts.max(1) / counts.sum(1))[big].mean()
    assert top_share > 0.6  # 20 clusters: a random session would put ~1/20 + noise in its top cluster


def test_intents_drift_but_persist(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    views = events.take(events.action == Action.VIEW)
    category = tiny_synthetic.catalogue.category[views.item]
    key = views.user.astype(np.int64) * 10_000 + views.session
    sessions, session_index = np.unique(key, return_inverse=True)
    counts = np.zeros((len(sessions), tiny_synthetic.num_categories))
    np.add.at(counts, (session_index, category), 1)
    main = counts.argmax(1)
    same_user = (sessions[1:] // 10_000) == (sessions[:-1] // 10_000)
    kept = (main[1:] == main[:-1])[same_user].mean()
    assert 0.5 < kept < 0.95  # mostly the same intent as the previous session, sometimes a new one


def test_funnel_rates_are_ordered(tiny_synthetic: Dataset) -> None:
    counts = np.bincount(tiny_synthetic.events.action, minlength=len(Action))
    assert counts[Action.VIEW] > counts[Action.CART] > counts[Action.PURCHASE] > 0
    events = tiny_synthetic.events
    # Every purchase follows a cart of the same user and item.
    cart_keys = set(
        zip(
            events.user[events.action == Action.CART].tolist(),
            events.item[events.action == Action.CART].tolist(),
            strict=True,
        )
    )
    buys = zip(
        events.user[events.action == Action.PURCHASE].tolist(),
        events.item[events.action == Action.PURCHASE].tolist(),
        strict=True,
    )
    assert all(key in cart_keys for key in buys)


def test_scenes_change_cart_rate(tiny_synthetic: Dataset) -> None:
    events = tiny_synthetic.events
    rates = []
    for scene in range(FIRST_REAL_ID, tiny_synthetic.num_scenes):
        in_scene = events.scene == scene
        rates.append(
            np.count_nonzero(in_scene & (events.action == Action.CART))
            / np.count_nonzero(in_scene & (events.action == Action.VIEW))
        )
    assert max(rates) > 1.5 * min(rates)


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="num_clusters"):
        SyntheticConfig(num_items=5, num_clusters=10)


def test_the_truth_describes_the_draws_behind_the_data() -> None:
    config = SyntheticConfig(num_users=200, num_items=400, num_events=20_000, num_clusters=8, seed=5)
    dataset, truth = synthetic_truth(config)
    np.testing.assert_array_equal(dataset.events.item, generate_synthetic(config).events.item)
    assert truth.view_probs(truth.next_intent_probs(3)).sum() == pytest.approx(1.0)
    jump = 0.06 / 8
    assert truth.next_intent_probs(0)[[0, 1, 7, 4]] == pytest.approx(
        [0.7 + jump, 0.12 + jump, 0.12 + jump, jump]
    )
    # a session's views land in its intent cluster about in_cluster_prob of the time
    events = dataset.events.take(dataset.events.action == Action.VIEW)
    raw_item = np.asarray([int(dataset.catalogue.raw_id[i]) for i in events.item.tolist()])
    raw_user = np.asarray([int(dataset.user_raw_id[u]) for u in events.user.tolist()])
    first = np.searchsorted(truth.session_user, raw_user)
    stop = np.searchsorted(truth.session_user, raw_user, side="right")
    session = np.asarray(
        [
            f + np.searchsorted(truth.session_start[f:s], t, side="right") - 1
            for f, s, t in zip(first.tolist(), stop.tolist(), events.timestamp.tolist(), strict=True)
        ]
    )
    in_intent = truth.item_cluster[raw_item] == truth.intent[session]
    assert abs(in_intent.mean() - (config.in_cluster_prob + 0.15 / 8)) < 0.03
    # and the in-cluster probabilities order the items as the counts do
    counts = np.bincount(raw_item, minlength=config.num_items)
    top = np.argsort(-truth.in_cluster_prob)[:40]
    assert counts[top].mean() > 2 * counts.mean()  # 2.8x on this draw; equal if unrelated
