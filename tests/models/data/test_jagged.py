import numpy as np
import pytest

from models.data.jagged import JaggedBatch, length_bucketed_batches, offsets_from_lengths, user_sequences
from models.data.schema import Dataset


def batch() -> JaggedBatch:
    return JaggedBatch({"item": np.array([1, 2, 3, 4, 5, 6])}, offsets_from_lengths(np.array([3, 0, 2, 1])))


def test_rows_take_and_last() -> None:
    b = batch()
    assert len(b) == 4 and b.lengths.tolist() == [3, 0, 2, 1]
    assert b.row(2, "item").tolist() == [4, 5]
    taken = b.take(np.array([3, 0]))
    assert taken.columns["item"].tolist() == [6, 1, 2, 3] and taken.offsets.tolist() == [0, 1, 4]
    assert b.last(2).columns["item"].tolist() == [2, 3, 4, 5, 6]


def test_padded_keeps_most_recent() -> None:
    values, mask = batch().padded("item", max_length=2, pad_value=0)
    assert values.tolist() == [[2, 3], [0, 0], [4, 5], [6, 0]]
    assert mask.tolist() == [[True, True], [False, False], [True, True], [True, False]]


def test_mismatched_offsets_rejected() -> None:
    with pytest.raises(ValueError, match="offsets say"):
        JaggedBatch({"item": np.arange(3)}, np.array([0, 4]))


def test_user_sequences_match_table(tiny_synthetic: Dataset) -> None:
    seqs = user_sequences(tiny_synthetic.events, tiny_synthetic.num_users)
    assert len(seqs) == tiny_synthetic.num_users
    user = int(tiny_synthetic.events.user[0])
    rows = tiny_synthetic.events.user == user
    np.testing.assert_array_equal(seqs.row(user, "item"), tiny_synthetic.events.item[rows])


def test_bucketed_batches_cover_rows_once_and_group_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 100, 1000)
    batches = list(length_bucketed_batches(lengths, 32, seed=1, bucket_batches=10))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == np.flatnonzero(lengths >= 1).tolist()
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    assert spread < 30  # random batches of 32 would span most of 0..99
    again = list(length_bucketed_batches(lengths, 32, seed=1, bucket_batches=10))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
