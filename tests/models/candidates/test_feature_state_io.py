from pathlib import Path

import numpy as np

from models.candidates.feature_state import FeatureState, PairTable, StaticInfo, pair_values
from models.candidates.feature_state_io import load_feature_state, save_feature_state
from models.candidates.features import candidate_features
from models.candidates.merge import MergeConfig, merge_lists
from models.candidates.training_requests import fit_offset, offset_requests, source_lists
from tests.models.candidates.feature_data import side_dataset


def test_a_saved_feature_state_loads_equal_and_gives_the_same_features(tmp_path: Path) -> None:
    dataset = side_dataset(num_users=25, num_items=50, num_events=700, seed=5)
    static = StaticInfo.from_dataset(dataset)
    fit = fit_offset(dataset, static, 0)
    vectors = np.random.default_rng(0).normal(size=(dataset.num_items, 4)).astype(np.float32)
    state = FeatureState(**{**fit.state.__dict__, "item_vectors": vectors})
    save_feature_state(state, tmp_path)
    loaded = load_feature_state(tmp_path)
    assert loaded.static.funnel == state.static.funnel
    assert loaded.static.multi_category == state.static.multi_category
    assert set(loaded.static.user_features) == set(state.static.user_features)
    np.testing.assert_array_equal(loaded.item_vectors, vectors)
    config = MergeConfig(("cooccurrence", "transitions", "popular"), (15, 15, 15), (1.0, 1.0, 1.0), total=15)
    requests = offset_requests(dataset, 0, 30)[:5]
    for request, lists in zip(requests, source_lists(fit, requests, config), strict=True):
        merged = merge_lists(lists, config)
        r = request.candidate_request
        user_vector = vectors[r.history.item[-1]]
        expected = candidate_features(r.context.timestamp, r.history, merged, state, user_vector)
        got = candidate_features(r.context.timestamp, r.history, merged, loaded, user_vector)
        np.testing.assert_array_equal(got, expected)
        assert expected.shape[0] == len(merged)


def test_pair_values_equal_a_dictionary_lookup_with_repeats_in_either_side() -> None:
    rng = np.random.default_rng(5)
    num_items = 40
    keys = np.unique(rng.integers(0, num_items * num_items, 300))
    table = PairTable(keys.astype(np.int64), rng.random(len(keys)).astype(np.float32))
    lookup = dict(zip(keys.tolist(), table.values.tolist(), strict=True))
    a = rng.integers(0, num_items, 12)  # repeats on purpose
    b = rng.integers(0, num_items, 30)
    expected = np.array([[lookup.get(int(x) * num_items + int(y), 0.0) for y in b] for x in a], np.float32)
    np.testing.assert_array_equal(pair_values(table, a, b, num_items), expected)
    order = np.argsort(b, kind="stable")
    np.testing.assert_array_equal(pair_values(table, a, b, num_items, order), expected)
    assert pair_values(table, a[:0], b, num_items).shape == (0, 30)
