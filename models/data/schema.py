"""The typed event table every loader produces and every model consumes.

Ids: every id column is a dense index into a vocabulary saved beside the table. Index 0 is padding and
index 1 is the explicit "unknown" id (a raw id never seen when the vocabulary was built); real ids start
at 2 (``FIRST_REAL_ID``). So an embedding table for items has ``num_items = len(raw_ids) + 2`` rows.

On disk a prepared dataset is one directory:

    events.parquet   one row per event, sorted by (user, timestamp, original row order), columns below
    items.parquet    item (index), raw_id (str), title (str), category (index), genres (str, "|"-joined), year
    users.parquet    user (index), raw_id (str), plus any static features (gender, age, occupation: indices)
                     (plus ``split``, int8 0 train / 1 valid / 2 test, when the log supplied a split column)
    manifest.json    source, arguments, counts, vocabularies of small fields (scene, device, category),
                     funnel, and a sha256 fingerprint of each file (re-running prepare is byte-identical)

In memory it is an ``EventTable`` (numpy columns) plus the catalogue / user tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property

import numpy as np

PAD_ID = 0
UNKNOWN_ID = 1
FIRST_REAL_ID = 2


class Action(IntEnum):
    """Event kinds across datasets. Order within the funnel is given by ``ACTION_STRENGTH``."""

    PAD = 0
    VIEW = 1  # exposure / detail-page view (Taobao pv, RetailRocket view, synthetic view)
    CLICK = 2
    FAV = 3
    CART = 4
    PURCHASE = 5
    RATE = 6  # explicit rating; the rating is in ``value``


NUM_ACTIONS = len(Action)

# Strongest action wins when an item repeats inside one session (models.md 1.2):
# pay > cart > fav > click > view.
ACTION_STRENGTH: dict[int, int] = {
    Action.PAD: 0,
    Action.VIEW: 1,
    Action.RATE: 1,
    Action.CLICK: 2,
    Action.FAV: 3,
    Action.CART: 4,
    Action.PURCHASE: 5,
}

# Columns of events.parquet and their dtypes, in order.
EVENT_COLUMNS: dict[str, np.dtype] = {
    "user": np.dtype(np.int32),  # user index (>= 2)
    "item": np.dtype(np.int32),  # item index (>= 2; 1 = unknown item)
    "timestamp": np.dtype(np.int64),  # unix seconds
    "action": np.dtype(np.int8),  # Action
    "value": np.dtype(np.float32),  # rating for RATE, 1.0 otherwise
    "session": np.dtype(np.int32),  # per-user session number, 1.. in time order (0 never used)
    "scene": np.dtype(np.int16),  # context: scene/surface index (0 pad, 1 unknown)
    "device": np.dtype(np.int16),  # context: device index (0 pad, 1 unknown)
    "hour": np.dtype(np.int8),  # context: hour of day 0..23 (UTC unless the source says otherwise)
    "dow": np.dtype(np.int8),  # context: day of week 0..6, Monday = 0
}


@dataclass(frozen=True)
class Funnel:
    """How a dataset's actions map to the three progressively deeper labels used by both models.

    ``level(action, value)`` returns 0 (not exposed), 1 (exposed/interacted), 2 (click-like) or 3 (pay-like).
    MovieLens: rated -> 1, rating >= 4 -> 2, rating == 5 -> 3 (models.md 1.7).
    E-commerce: view -> 1, cart (and fav on Taobao) -> 2, purchase -> 3.
    """

    names: tuple[str, str, str]
    rating_thresholds: tuple[float, float] | None = None  # (click_min, pay_min) for RATE actions
    # Plain ints (not Action members), so a funnel saved inside a checkpoint loads with weights_only=True.
    click_actions: tuple[int, ...] = (int(Action.CLICK), int(Action.FAV), int(Action.CART))
    pay_actions: tuple[int, ...] = (int(Action.PURCHASE),)

    @cached_property
    def _action_levels(self) -> np.ndarray:
        """[A] int8 level of each action code before ratings count (a lookup beats np.isin per call)."""
        table = np.ones(max(NUM_ACTIONS, *self.click_actions, *self.pay_actions) + 1, dtype=np.int8)
        table[int(Action.PAD)] = 0
        table[list(self.click_actions)] = 2
        table[list(self.pay_actions)] = 3
        return table

    def levels(self, action: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Funnel level per event. action/value: [E] -> [E] int8 in {1, 2, 3} (0 for padding)."""
        table = self._action_levels
        codes = np.asarray(action, dtype=np.int64)
        known = (codes >= 0) & (codes < len(table))
        level = np.where(known, table[np.where(known, codes, 0)], 1).astype(np.int8)
        if self.rating_thresholds is not None:
            is_rate = action == Action.RATE
            click_min, pay_min = self.rating_thresholds
            level[is_rate & (value >= click_min)] = 2
            level[is_rate & (value >= pay_min)] = 3
        return level


RATING_FUNNEL = Funnel(names=("rated", "rated>=4", "rated=5"), rating_thresholds=(4.0, 5.0))
COMMERCE_FUNNEL = Funnel(names=("view", "cart", "purchase"))


@dataclass
class EventTable:
    """Columns of equal length E, sorted by (user, timestamp, original order). See EVENT_COLUMNS."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    action: np.ndarray
    value: np.ndarray
    session: np.ndarray
    scene: np.ndarray
    device: np.ndarray
    hour: np.ndarray
    dow: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: np.ndarray) -> EventTable:
        """Rows selected by an integer index or boolean mask (order kept)."""
        return EventTable(**{name: getattr(self, name)[index] for name in EVENT_COLUMNS})

    def user_offsets(self, num_users: int) -> np.ndarray:
        """CSR offsets [num_users + 1]: events of user u are rows offsets[u]:offsets[u+1]."""
        counts = np.bincount(self.user, minlength=num_users)
        return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


@dataclass
class Catalogue:
    """Item side information, indexed by item index (row i = item i; rows 0 and 1 are pad/unknown)."""

    raw_id: list[str]
    title: list[str]
    category: np.ndarray  # [num_items] int32 category index (0 pad, 1 unknown)
    genres: list[str] = field(default_factory=list)  # "|"-joined, "" when none
    year: np.ndarray | None = None  # [num_items] int16, 0 when unknown

    @property
    def num_items(self) -> int:
        return len(self.raw_id)


@dataclass
class Dataset:
    """A prepared dataset: events, catalogue, users and the manifest it was saved with."""

    name: str
    events: EventTable
    catalogue: Catalogue
    user_raw_id: list[str]  # [num_users], rows 0 and 1 are pad/unknown
    user_features: dict[str, np.ndarray]  # name -> [num_users] int index (0 pad, 1 unknown)
    funnel: Funnel
    manifest: dict = field(default_factory=dict)
    num_scenes: int = 2
    num_devices: int = 2
    num_categories: int = 2
    # [E] int8 per row of ``events``: the split column the user supplied (models.data.splits TRAIN, VALID,
    # TEST), or None when the log came without one
    event_split: np.ndarray | None = None

    @property
    def num_users(self) -> int:
        return len(self.user_raw_id)

    @property
    def num_items(self) -> int:
        return self.catalogue.num_items
