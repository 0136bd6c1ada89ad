import gzip
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from models.data.errors import BadRows, DataError
from models.data.loaders.movielens import load_ml1m, load_ml100k
from models.data.schema import FIRST_REAL_ID, UNKNOWN_ID, Action

SAMPLE_LINES = 3000


def head_lines(path: Path, count: int, encoding: str = "latin-1") -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding=encoding) as handle:
        return "".join(itertools.islice(handle, count))


@pytest.fixture
def ml1m_sample(shared_data_dir: Path, tmp_path: Path) -> Path:
    source = shared_data_dir / "ml-1m"
    text = head_lines(source / "ratings-users-1-2998.dat.gz", SAMPLE_LINES)
    with gzip.open(tmp_path / "ratings.dat.gz", "wt", encoding="latin-1") as handle:
        handle.write(text)
    shutil.copy(source / "movies.dat", tmp_path / "movies.dat")
    shutil.copy(source / "users.dat", tmp_path / "users.dat")
    return tmp_path


def test_ml1m_sample_is_typed_and_sorted(ml1m_sample: Path) -> None:
    dataset = load_ml1m(ml1m_sample, BadRows())
    events = dataset.events
    assert len(events) == SAMPLE_LINES
    assert np.all(events.action == Action.RATE)
    assert set(np.unique(events.value).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert events.item.min() >= FIRST_REAL_ID and events.user.min() >= FIRST_REAL_ID
    order = np.lexsort((events.timestamp, events.user))
    np.testing.assert_array_equal(order, np.arange(len(events)))
    # The catalogue holds every movie of movies.dat (3,883), decoded as latin-1.
    assert dataset.num_items == 3883 + FIRST_REAL_ID
    assert any("Misérables" in title for title in dataset.catalogue.title)
    toy_story = dataset.catalogue.raw_id.index("1")
    assert dataset.catalogue.title[toy_story] == "Toy Story (1995)"
    assert dataset.catalogue.year is not None and dataset.catalogue.year[toy_story] == 1995
    assert dataset.catalogue.genres[toy_story] == "Animation|Children's|Comedy"
    categories = dataset.manifest["vocabularies"]["category"]
    assert categories[dataset.catalogue.category[toy_story] - FIRST_REAL_ID] == "Animation"
    user_one = dataset.user_raw_id.index("1")
    genders = dataset.manifest["vocabularies"]["user_features"]["gender"]
    assert genders[dataset.user_features["gender"][user_one] - FIRST_REAL_ID] == "F"


def test_ml1m_reads_shipped_subset_name(ml1m_sample: Path) -> None:
    (ml1m_sample / "ratings.dat.gz").rename(ml1m_sample / "ratings-users-1-2998.dat.gz")
    assert len(load_ml1m(ml1m_sample, BadRows()).events) == SAMPLE_LINES


def test_ml1m_plain_ratings_and_bad_rating(ml1m_sample: Path) -> None:
    (ml1m_sample / "ratings.dat.gz").unlink()
    (ml1m_sample / "ratings.dat").write_text(
        "1::1193::5::978300760\n1::661::9::978302109\n", encoding="latin-1"
    )
    with pytest.raises(DataError) as caught:
        load_ml1m(ml1m_sample, BadRows())
    assert "ratings.dat:2" in str(caught.value) and "'rating'" in str(caught.value)
    bad = BadRows(skip=True)
    assert len(load_ml1m(ml1m_sample, bad).events) == 1
    assert bad.total == 1


def test_ml1m_missing_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"ratings\.dat: file not found"):
        load_ml1m(tmp_path, BadRows())


def test_ml100k_sample(shared_data_dir: Path, tmp_path: Path) -> None:
    source = shared_data_dir / "ml-100k"
    (tmp_path / "u.data").write_text(head_lines(source / "u.data", SAMPLE_LINES), encoding="latin-1")
    for name in ("u.item", "u.user", "u.genre"):
        shutil.copy(source / name, tmp_path / name)
    dataset = load_ml100k(tmp_path, BadRows())
    assert len(dataset.events) == SAMPLE_LINES
    assert dataset.num_items == 1682 + FIRST_REAL_ID
    toy_story = dataset.catalogue.raw_id.index("1")
    assert dataset.catalogue.genres[toy_story] == "Animation|Children's|Comedy"
    assert dataset.catalogue.year is not None and dataset.catalogue.year[toy_story] == 1995
    ages = dataset.manifest["vocabularies"]["user_features"]["age"]
    assert set(ages) <= {"1", "18", "25", "35", "45", "50", "56"}
    assert np.all(dataset.user_features["age"][FIRST_REAL_ID:] != UNKNOWN_ID)
