import numpy as np
import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.splits import TEST, TRAIN
from models.ranker.samples import split_time


def test_the_cut_is_the_time_quantile_or_the_supplied_test_start() -> None:
    config = SyntheticConfig(num_users=20, num_items=40, num_events=500, num_clusters=4, seed=0)
    events = generate_synthetic(config).events
    quantile = split_time(events, 0.1)
    assert np.mean(events.timestamp >= quantile) == pytest.approx(0.1, abs=0.02)
    labels = np.full(len(events.item), TRAIN, dtype=np.int8)
    labels[events.timestamp >= np.median(events.timestamp)] = TEST  # a supplied split: the later half
    assert split_time(events, 0.1, labels) == int(events.timestamp[labels == TEST].min())
    assert split_time(events, 0.1, np.full_like(labels, TRAIN)) == quantile  # no test rows: the quantile
    with pytest.raises(ValueError, match="test_fraction"):
        split_time(events, 1.5)
