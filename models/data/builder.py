"""Raw columns from any loader -> a typed, sorted, sessionised ``Dataset`` with dense vocabularies."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.data.schema import (
    EVENT_COLUMNS,
    FIRST_REAL_ID,
    UNKNOWN_ID,
    Action,
    Catalogue,
    Dataset,
    EventTable,
    Funnel,
)
from models.data.sessions import DEFAULT_MAX_SESSION_ITEMS, DEFAULT_SESSION_GAP_SECONDS, sessionise
from models.data.splits import split_counts


@dataclass
class RawEvents:
    """Events as read from a source, any order. All arrays [E]; ids are raw (ints or strings)."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray  # int64 unix seconds
    action: np.ndarray  # Action codes
    value: np.ndarray | None = None  # float rating, None -> 1.0
    scene: np.ndarray | None = None  # raw scene names, None -> unknown
    device: np.ndarray | None = None  # raw device names, None -> unknown
    order: np.ndarray | None = None  # original row order (ties in time keep it), None -> arange
    split: np.ndarray | None = None  # supplied split codes (models.data.splits TRAIN/VALID/TEST), or None


@dataclass
class RawItems:
    """Optional item side information keyed by raw item id. All arrays [I]."""

    raw_id: np.ndarray
    title: np.ndarray | None = None
    category: np.ndarray | None = None  # raw category labels
    genres: np.ndarray | None = None  # "|"-joined strings
    year: np.ndarray | None = None  # int, 0 unknown


@dataclass
class RawUsers:
    """Optional static user features keyed by raw user id. Arrays [U]; feature values are raw labels."""

    raw_id: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionConfig:
    gap_seconds: int = DEFAULT_SESSION_GAP_SECONDS
    max_items: int = DEFAULT_MAX_SESSION_ITEMS


def vocabulary(*raw_arrays: np.ndarray | None) -> np.ndarray:
    """Sorted unique raw ids over all arrays (numeric order when the ids are integers). Index of
    ``vocab[k]`` is ``k + FIRST_REAL_ID``."""
    present = [np.asarray(a) for a in raw_arrays if a is not None and len(a)]
    if not present:
        return np.zeros(0, dtype=np.int64)
    joined = np.concatenate(present)
    if joined.dtype == object:  # strings: a set is much faster than sorting Python objects
        return np.array(sorted({str(v) for v in joined.tolist()}), dtype=object)
    return np.unique(joined)


def lookup(vocab: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """raw [N] -> index [N] int64 into ``vocab`` (+FIRST_REAL_ID); ids not in vocab -> UNKNOWN_ID."""
    if len(vocab) == 0:
        return np.full(len(raw), UNKNOWN_ID, dtype=np.int64)
    if vocab.dtype == object or np.asarray(raw).dtype == object:
        index = {str(v): k + FIRST_REAL_ID for k, v in enumerate(vocab.tolist())}
        return np.fromiter((index.get(str(v), UNKNOWN_ID) for v in raw.tolist()), np.int64, len(raw))
    position = np.clip(np.searchsorted(vocab, raw), 0, len(vocab) - 1)
    found = vocab[position] == raw
    return np.where(found, position + FIRST_REAL_ID, UNKNOWN_ID).astype(np.int64)


def count_sessions(events: EventTable) -> int:
    """Number of distinct (user, session) pairs in a table sorted by user."""
    if len(events) == 0:
        return 0
    changes = (np.diff(events.session) != 0) | (np.diff(events.user) != 0)
    return int(np.count_nonzero(changes)) + 1


def _names(vocab: np.ndarray) -> list[str]:
    return [str(v) for v in vocab.tolist()]


def _time_context(timestamp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour 0..23 and weekday 0..6 (Monday = 0; 1970-01-01 was a Thursday)."""
    hour = (timestamp // 3600) % 24
    dow = (timestamp // 86400 + 3) % 7
    return hour.astype(np.int8), dow.astype(np.int8)


def _catalogue(item_vocab: np.ndarray, items: RawItems | None) -> tuple[Catalogue, np.ndarray]:
    num_items = len(item_vocab) + FIRST_REAL_ID
    raw_id = ["<pad>", "<unknown>", *_names(item_vocab)]
    title = list(raw_id)
    category = np.full(num_items, UNKNOWN_ID, dtype=np.int32)
    category[0] = 0
    genres = [""] * num_items
    year = np.zeros(num_items, dtype=np.int16)
    category_vocab = np.zeros(0, dtype=object)
    if items is not None:
        rows = lookup(item_vocab, items.raw_id)
        if items.title is not None:
            for row, text in zip(rows.tolist(), items.title.tolist(), strict=True):
                title[row] = str(text)
        if items.category is not None:
            category_vocab = vocabulary(items.category)
            category[rows] = lookup(category_vocab, items.category)
        if items.genres is not None:
            for row, text in zip(rows.tolist(), items.genres.tolist(), strict=True):
                genres[row] = str(text)
        if items.year is not None:
            year[rows] = items.year.astype(np.int16)
    return Catalogue(raw_id=raw_id, title=title, category=category, genres=genres, year=year), category_vocab


def build_dataset(
    name: str,
    events: RawEvents,
    funnel: Funnel,
    funnel_name: str,
    items: RawItems | None = None,
    users: RawUsers | None = None,
    sessions: SessionConfig | None = None,
) -> Dataset:
    """Builds vocabularies, sorts by (user, timestamp, original order), sessionises and fills context."""
    sessions = sessions or SessionConfig()
    n = len(events.user)
    if n == 0:
        raise ValueError(f"dataset '{name}' has no events")
    user_vocab = vocabulary(events.user)
    item_vocab = vocabulary(events.item, items.raw_id if items is not None else None)
    scene_vocab = vocabulary(events.scene) if events.scene is not None else np.zeros(0, dtype=object)
    device_vocab = vocabulary(events.device) if events.device is not None else np.zeros(0, dtype=object)
    user = lookup(user_vocab, events.user)
    order = events.order if events.order is not None else np.arange(n)
    timestamp = events.timestamp.astype(np.int64)
    sort = np.lexsort((order, timestamp, user))
    user, timestamp = user[sort], timestamp[sort]
    hour, dow = _time_context(timestamp)
    scene = (
        lookup(scene_vocab, events.scene[sort])
        if events.scene is not None
        else np.full(n, UNKNOWN_ID, np.int64)
    )
    device = (
        lookup(device_vocab, events.device[sort])
        if events.device is not None
        else np.full(n, UNKNOWN_ID, np.int64)
    )
    value = events.value[sort] if events.value is not None else np.ones(n)
    columns = {
        "user": user,
        "item": lookup(item_vocab, events.item[sort]),
        "timestamp": timestamp,
        "action": events.action[sort],
        "value": value,
        "session": sessionise(user, timestamp, sessions.gap_seconds, sessions.max_items),
        "scene": scene,
        "device": device,
        "hour": hour,
        "dow": dow,
    }
    table = EventTable(**{k: np.ascontiguousarray(v, dtype=EVENT_COLUMNS[k]) for k, v in columns.items()})
    catalogue, category_vocab = _catalogue(item_vocab, items)
    user_features: dict[str, np.ndarray] = {}
    feature_vocabs: dict[str, list[str]] = {}
    if users is not None:
        rows = lookup(user_vocab, users.raw_id)
        known = rows >= FIRST_REAL_ID
        for feature, raw_values in users.features.items():
            feature_vocab = vocabulary(raw_values)
            column = np.full(len(user_vocab) + FIRST_REAL_ID, UNKNOWN_ID, dtype=np.int32)
            column[:FIRST_REAL_ID] = [0, UNKNOWN_ID]
            column[rows[known]] = lookup(feature_vocab, raw_values[known])
            user_features[feature] = column
            feature_vocabs[feature] = _names(feature_vocab)
    action_counts = np.bincount(table.action, minlength=len(Action))
    event_split = events.split[sort].astype(np.int8) if events.split is not None else None
    manifest: dict = {
        "dataset": name,
        "funnel": funnel_name,
        "sessions": {"gap_seconds": sessions.gap_seconds, "max_items": sessions.max_items},
        "counts": {
            "events": n,
            "users": len(user_vocab),
            "items": len(item_vocab),
            "items_with_events": len(np.unique(table.item)),
            "sessions": count_sessions(table),
            "actions": {a.name: int(action_counts[a]) for a in Action if action_counts[a]},
            "time_range": [int(timestamp.min()), int(timestamp.max())],
            **({} if event_split is None else {"split": split_counts(event_split)}),
        },
        "vocabularies": {
            "scene": _names(scene_vocab),
            "device": _names(device_vocab),
            "category": _names(category_vocab),
            "user_features": feature_vocabs,
        },
    }
    return Dataset(
        name=name,
        events=table,
        catalogue=catalogue,
        user_raw_id=["<pad>", "<unknown>", *_names(user_vocab)],
        user_features=user_features,
        funnel=funnel,
        manifest=manifest,
        num_scenes=len(scene_vocab) + FIRST_REAL_ID,
        num_devices=len(device_vocab) + FIRST_REAL_ID,
        num_categories=len(category_vocab) + FIRST_REAL_ID,
        event_split=event_split,
    )
