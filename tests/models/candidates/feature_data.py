"""A tiny dataset with everything the candidate features read: several categories per item, years, user
features, ratings beside commerce actions (shared by the feature and training-request tests)."""

from __future__ import annotations

import dataclasses

import numpy as np

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import RATING_FUNNEL, Action, Dataset, EventTable

GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def side_dataset(num_users: int = 40, num_items: int = 90, num_events: int = 1500, seed: int = 3) -> Dataset:
    config = SyntheticConfig(
        num_users=num_users, num_items=num_items, num_events=num_events, num_clusters=6, seed=seed
    )
    dataset = generate_synthetic(config)
    rng = np.random.default_rng(seed)
    n = dataset.num_items
    genres = ["", ""] + [
        "|".join(sorted(rng.choice(GENRES, size=int(rng.integers(0, 4)), replace=False).tolist()))
        for _ in range(n - 2)
    ]
    first = [g.split("|")[0] if g else "" for g in genres]
    category = np.array([GENRES.index(f) + 2 if f else 1 for f in first], dtype=np.int32)
    category[0] = 0
    year = np.where(rng.random(n) < 0.8, rng.integers(1950, 2000, size=n), 0).astype(np.int16)
    catalogue = dataclasses.replace(dataset.catalogue, genres=genres, category=category, year=year)
    events = dataset.events
    rate = rng.random(len(events)) < 0.5
    action = np.where(rate, int(Action.RATE), events.action).astype(np.int8)
    value = np.where(rate, rng.integers(1, 6, size=len(events)), 1.0).astype(np.float32)
    events = dataclasses.replace(events, action=action, value=value)
    users = dataset.num_users
    features = {
        "gender": rng.integers(2, 4, size=users),
        "age": rng.integers(2, 9, size=users),
        "occupation": rng.integers(2, 20, size=users),
    }
    manifest = {**dataset.manifest, "vocabularies": {"category": list(GENRES)}}
    return dataclasses.replace(
        dataset,
        catalogue=catalogue,
        events=events,
        user_features=features,
        manifest=manifest,
        funnel=RATING_FUNNEL,
        num_categories=len(GENRES) + 2,
    )


def unrated_events(dataset: Dataset) -> EventTable:
    """The dataset's events with every action a click: a log without ratings (no item values)."""
    return dataclasses.replace(
        dataset.events, action=np.full(len(dataset.events), int(Action.CLICK), dtype=np.int8)
    )
