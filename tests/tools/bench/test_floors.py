import pytest

from tools.bench.floors import floor_sums

FLOORS = {
    "http_ms": 0.1,
    "store_read_ms": 0.05,
    "candidates_ms": 0.8,
    "features_ms": 0.5,
    "ranker_ms": 0.7,
    "json_ms": 0.01,
    "encoder_ms": 0.9,
}


@pytest.mark.parametrize(("served", "cache"), [(True, 2.16), (False, 0.96)])
def test_the_floor_sum_counts_the_ranker_only_where_it_is_served(served: bool, cache: float) -> None:
    sums = floor_sums({**FLOORS, "ranker_served": served})
    assert sums == (pytest.approx(cache), pytest.approx(cache + 0.9))
