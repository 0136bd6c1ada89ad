import itertools
from pathlib import Path

import numpy as np
import pytest

from models.data.datasets import PrepareOptions, default_dataset, load_dataset, prepare_dataset
from models.data.errors import DataError
from models.data.loaders.synthetic import SyntheticConfig
from models.data.schema import EVENT_COLUMNS
from models.data.storage import load_prepared

SMALL = SyntheticConfig(num_users=40, num_items=100, num_events=1500, num_clusters=5, seed=1)
FILES = ("events.parquet", "items.parquet", "users.parquet", "manifest.json")


@pytest.fixture
def taobao_sample(shared_data_dir: Path, tmp_path: Path) -> Path:
    source = shared_data_dir / "taobao-userbehavior" / "UserBehavior-first814users.csv"
    with open(source, encoding="ascii") as handle:
        text = "".join(itertools.islice(handle, 1500))
    path = tmp_path / "raw" / "UserBehavior.csv"
    path.parent.mkdir()
    path.write_text(text, encoding="ascii")
    return path


def test_prepare_twice_gives_identical_bytes(taobao_sample: Path, tmp_path: Path) -> None:
    options = PrepareOptions(input_path=taobao_sample)
    prepare_dataset("taobao", None, tmp_path / "a", options)
    prepare_dataset("taobao", None, tmp_path / "b", options)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_cache_is_reused_until_inputs_change(taobao_sample: Path, tmp_path: Path) -> None:
    options = PrepareOptions(input_path=taobao_sample)
    first, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert not reused
    again, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert reused and len(again.events) == len(first.events)
    for name in EVENT_COLUMNS:
        np.testing.assert_array_equal(getattr(again.events, name), getattr(first.events, name))
    assert again.catalogue.raw_id == first.catalogue.raw_id
    with open(taobao_sample, "a", encoding="ascii") as handle:
        handle.write("999999,1,2,pv,1511544070\n")
    changed, reused = prepare_dataset("taobao", None, tmp_path / "out", options)
    assert not reused and len(changed.events) == len(first.events) + 1
    other_gap = PrepareOptions(input_path=taobao_sample, sessions=options.sessions.__class__(gap_seconds=60))
    assert not prepare_dataset("taobao", None, tmp_path / "out", other_gap)[1]


def test_tampered_output_is_detected(tmp_path: Path) -> None:
    prepare_dataset("synthetic", None, tmp_path, PrepareOptions(synthetic=SMALL))
    with open(tmp_path / "events.parquet", "ab") as handle:
        handle.write(b"x")
    with pytest.raises(DataError, match="sha256 differs"):
        load_prepared(tmp_path)


def test_load_dataset_and_default(tmp_path: Path) -> None:
    dataset = load_dataset("synthetic", None, tmp_path, PrepareOptions(synthetic=SMALL))
    assert (tmp_path / "synthetic" / "manifest.json").is_file()
    assert dataset.manifest["synthetic"]["num_users"] == 40
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("ml-20m", None, tmp_path)
    # An empty data directory means no ML-1M: the default falls back to the synthetic generator.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert default_dataset(empty, tmp_path / "cache").name == "synthetic"


def test_default_dataset_prefers_ml1m(shared_data_dir: Path, tmp_path: Path) -> None:
    assert default_dataset(shared_data_dir, tmp_path).name == "ml-1m"
