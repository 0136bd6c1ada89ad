"""MovieLens in its original layouts: ML-1M (``::``-separated .dat files) and ML-100K (``u.*`` files).

Every rating becomes an ``Action.RATE`` event with the rating in ``value``. Genres, title and year are item
side information (category = first genre); gender, age band and occupation are user features.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models.data.builder import RawEvents, RawItems, RawUsers, SessionConfig, build_dataset
from models.data.errors import BadRows, DataError
from models.data.loaders.text_table import Column, read_delimited
from models.data.schema import RATING_FUNNEL, Action, Dataset

ML_1M_RATINGS_NAMES = ("ratings.dat", "ratings.dat.gz", "ratings-users-1-2998.dat.gz")
YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")
AGE_BANDS = np.array([18, 25, 35, 45, 50, 56])  # ML-1M age bands: 1 (<18), 18, 25, 35, 45, 50, 56+
AGE_BAND_LABELS = np.array([1, 18, 25, 35, 45, 50, 56])

RATING_COLUMNS = [
    Column("user", "int"),
    Column("item", "int"),
    Column("rating", "int"),
    Column("timestamp", "int"),
]


def find_ml1m_ratings(directory: Path) -> Path:
    """The first of ratings.dat, ratings.dat.gz, ratings-users-1-2998.dat.gz present in ``directory``."""
    for name in ML_1M_RATINGS_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise DataError(
        directory / ML_1M_RATINGS_NAMES[0], f"file not found (nor {', '.join(ML_1M_RATINGS_NAMES[1:])})"
    )


def _rating_events(ratings: dict[str, np.ndarray], path: Path, bad_rows: BadRows) -> RawEvents:
    keep = np.ones(len(ratings["rating"]), dtype=bool)
    for i in np.flatnonzero((ratings["rating"] < 1) | (ratings["rating"] > 5)):
        bad_rows.report(
            path, int(ratings["line"][i]), "rating", "expected a rating 1-5", str(ratings["rating"][i])
        )
        keep[i] = False
    r = {k: v[keep] for k, v in ratings.items()}
    return RawEvents(
        user=r["user"],
        item=r["item"],
        timestamp=r["timestamp"],
        action=np.full(len(r["user"]), Action.RATE, dtype=np.int8),
        value=r["rating"].astype(np.float32),
        order=r["line"],
    )


def _year_from_titles(titles: np.ndarray) -> np.ndarray:
    years = [YEAR_IN_TITLE.search(t) for t in titles.tolist()]
    return np.array([int(m.group(1)) if m else 0 for m in years], dtype=np.int16)


def load_ml1m(
    directory: Path,
    bad_rows: BadRows,
    sessions: SessionConfig | None = None,
    ratings_path: Path | None = None,
    progress: bool = False,
) -> Dataset:
    """Reads ratings(.dat|.dat.gz|-users-1-2998.dat.gz), movies.dat (latin-1) and users.dat."""
    ratings_path = ratings_path or find_ml1m_ratings(directory)
    ratings = read_delimited(ratings_path, RATING_COLUMNS, "::", bad_rows, progress=progress)
    movies = read_delimited(
        directory / "movies.dat",
        [Column("item", "int"), Column("title"), Column("genres")],
        "::",
        bad_rows,
        encoding="latin-1",
    )
    users = read_delimited(
        directory / "users.dat",
        [Column("user", "int"), Column("gender"), Column("age"), Column("occupation"), Column("zip")],
        "::",
        bad_rows,
    )
    genres = movies["genres"]
    items = RawItems(
        raw_id=movies["item"],
        title=movies["title"],
        category=np.array([g.split("|")[0] for g in genres.tolist()], dtype=object),
        genres=genres,
        year=_year_from_titles(movies["title"]),
    )
    user_table = RawUsers(
        raw_id=users["user"],
        features={"gender": users["gender"], "age": users["age"], "occupation": users["occupation"]},
    )
    events = _rating_events(ratings, ratings_path, bad_rows)
    return build_dataset("ml-1m", events, RATING_FUNNEL, "rating", items, user_table, sessions)


def _ml100k_genre_names(path: Path, bad_rows: BadRows) -> list[str]:
    table = read_delimited(path, [Column("genre"), Column("index", "int")], "|", bad_rows)
    return [str(g) for g in table["genre"][np.argsort(table["index"])].tolist()]


def load_ml100k(
    directory: Path, bad_rows: BadRows, sessions: SessionConfig | None = None, progress: bool = False
) -> Dataset:
    """Reads u.data (tab-separated), u.item (latin-1, pipe-separated, 19 genre flags), u.user, u.genre."""
    ratings_path = directory / "u.data"
    ratings = read_delimited(ratings_path, RATING_COLUMNS, "\t", bad_rows, progress=progress)
    genre_names = _ml100k_genre_names(directory / "u.genre", bad_rows)
    flag_columns = [Column(f"genre_{g}", "int") for g in range(len(genre_names))]
    item_columns = [Column("item", "int"), Column("title"), Column("release"), Column("video"), Column("url")]
    movies = read_delimited(
        directory / "u.item", item_columns + flag_columns, "|", bad_rows, encoding="latin-1"
    )
    flags = np.stack([movies[f"genre_{g}"] for g in range(len(genre_names))], axis=1) > 0
    genres = np.array(["|".join(np.array(genre_names)[row].tolist()) for row in flags], dtype=object)
    first = np.where(flags.any(axis=1), flags.argmax(axis=1), -1)
    category = np.array([genre_names[f] if f >= 0 else "unknown" for f in first.tolist()], dtype=object)
    release_year = np.array(
        [int(r[-4:]) if len(r) >= 4 and r[-4:].isdigit() else 0 for r in movies["release"].tolist()],
        dtype=np.int16,
    )
    items = RawItems(
        raw_id=movies["item"], title=movies["title"], category=category, genres=genres, year=release_year
    )
    users = read_delimited(
        directory / "u.user",
        [Column("user", "int"), Column("age", "int"), Column("gender"), Column("occupation"), Column("zip")],
        "|",
        bad_rows,
    )
    age_band = AGE_BAND_LABELS[np.searchsorted(AGE_BANDS, users["age"], side="right")]
    user_table = RawUsers(
        raw_id=users["user"],
        features={"gender": users["gender"], "age": age_band, "occupation": users["occupation"]},
    )
    events = _rating_events(ratings, ratings_path, bad_rows)
    return build_dataset("ml-100k", events, RATING_FUNNEL, "rating", items, user_table, sessions)
