"""Synthetic e-commerce log with planted structure, fully vectorised and deterministic by seed.

What is planted (and what tests check):
- items fall into ``num_clusters`` clusters (saved as the item category), with power-law popularity inside
  each cluster;
- every user has a home cluster; each session has an intent cluster that drifts from the previous
  session's (stay, step to a neighbour cluster, or jump); ``in_cluster_prob`` of a session's views come from
  its intent cluster, the rest from global popularity;
- scenes (a preferred one per user) and devices (mostly one per user) as context; scenes change the cart rate;
- a view -> cart -> purchase funnel: a cart follows a view with ``cart_rate`` x scene factor, a purchase
  follows a cart with ``purchase_rate``.
Session starts are spread uniformly over ``days`` (so every user is active throughout) and sessions are
separated by at least an hour of inactivity; views inside a session are 10-240 seconds apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.data.builder import RawEvents, RawItems, SessionConfig, build_dataset
from models.data.schema import COMMERCE_FUNNEL, Action, Dataset

SCENE_NAMES = ("homepage", "search", "product_page", "cart_page", "push", "video")
DEVICE_NAMES = ("android", "ios", "web", "tablet")


@dataclass(frozen=True)
class SyntheticConfig:
    num_users: int = 2_000
    num_items: int = 5_000
    num_events: int = 100_000  # approximate total over all actions
    num_clusters: int = 50
    num_scenes: int = 4
    num_devices: int = 3
    mean_session_views: float = 6.0
    in_cluster_prob: float = 0.85
    intent_stay_prob: float = 0.7
    intent_jump_prob: float = 0.06  # the rest of the drift is a step to a neighbouring cluster
    cart_rate: float = 0.12
    purchase_rate: float = 0.35
    start_time: int = 1_700_000_000  # unix seconds of the first possible event
    days: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.num_users, self.num_items, self.num_events, self.num_clusters) < 1:
            raise ValueError(f"synthetic sizes must be positive: {self}")
        if self.num_clusters > self.num_items:
            raise ValueError(f"num_clusters ({self.num_clusters}) exceeds num_items ({self.num_items})")
        if not 1 <= self.num_scenes <= len(SCENE_NAMES) or not 1 <= self.num_devices <= len(DEVICE_NAMES):
            raise ValueError(f"num_scenes <= {len(SCENE_NAMES)} and num_devices <= {len(DEVICE_NAMES)}")


def _per_user_cumsum(values: np.ndarray, first_of_user: np.ndarray) -> np.ndarray:
    """Cumulative sum that restarts at each user's first row (values at restarts count from zero)."""
    total = np.cumsum(values)
    base = total - values
    return total - np.maximum.accumulate(np.where(first_of_user, base, -np.inf)).astype(total.dtype)


def _sessions(config: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Session owner [S] (sorted) and number of views per session [S]."""
    views_per_event = 1 + config.cart_rate * (1 + config.purchase_rate)
    num_views = max(config.num_users, round(config.num_events / views_per_event))
    num_sessions = max(config.num_users, round(num_views / config.mean_session_views))
    activity = rng.lognormal(0.0, 1.0, config.num_users)
    extra = rng.multinomial(num_sessions - config.num_users, activity / activity.sum())
    session_user = np.repeat(np.arange(config.num_users), 1 + extra)
    views = 1 + rng.poisson(config.mean_session_views - 1, len(session_user))
    return session_user, views


def _intents(config: SyntheticConfig, session_user: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Intent cluster per session [S]: the user's home cluster plus a per-user random walk."""
    num_sessions = len(session_user)
    first = np.r_[True, session_user[1:] != session_user[:-1]]
    u = rng.random(num_sessions)
    step_prob = (1 - config.intent_stay_prob - config.intent_jump_prob) / 2
    step = np.where(u < config.intent_stay_prob, 0, 0)
    step = np.where((u >= config.intent_stay_prob) & (u < config.intent_stay_prob + step_prob), 1, step)
    step = np.where((u >= config.intent_stay_prob + step_prob) & (u < 1 - config.intent_jump_prob), -1, step)
    jump = u >= 1 - config.intent_jump_prob
    step = np.where(jump, rng.integers(0, config.num_clusters, num_sessions), step)
    step[first] = 0
    home = rng.integers(0, config.num_clusters, config.num_users)
    walk = _per_user_cumsum(step.astype(np.int64), first)
    return (home[session_user] + walk) % config.num_clusters


def _view_items(
    config: SyntheticConfig, view_cluster: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Item per view [V], the cluster of every item [I], and the probabilities views are drawn with:
    in-cluster [I] (the item's chance when a view picks inside its cluster) and global [I]."""
    item_cluster = rng.permutation(np.arange(config.num_items) % config.num_clusters)
    members = np.argsort(item_cluster, kind="stable")  # random order inside a cluster = popularity order
    sizes = np.bincount(item_cluster, minlength=config.num_clusters)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    num_views = len(view_cluster)
    rank = np.floor(sizes[view_cluster] * rng.random(num_views) ** 2.0).astype(np.int64)
    in_cluster_item = members[offsets[view_cluster] + rank]
    global_order = rng.permutation(config.num_items)
    global_item = global_order[np.floor(config.num_items * rng.random(num_views) ** 3.0).astype(np.int64)]
    in_cluster = rng.random(num_views) < config.in_cluster_prob
    # P(rank r) of floor(n * u**p) is ((r + 1) / n)**(1/p) - (r / n)**(1/p)
    rank_in_cluster = np.empty(config.num_items, dtype=np.int64)
    rank_in_cluster[members] = np.arange(config.num_items) - np.repeat(offsets, sizes)
    size = sizes[item_cluster]
    in_cluster_prob = np.sqrt((rank_in_cluster + 1) / size) - np.sqrt(rank_in_cluster / size)
    global_rank = np.empty(config.num_items, dtype=np.int64)
    global_rank[global_order] = np.arange(config.num_items)
    global_prob = np.cbrt((global_rank + 1) / config.num_items) - np.cbrt(global_rank / config.num_items)
    return (
        np.where(in_cluster, in_cluster_item, global_item),
        item_cluster,
        in_cluster_prob,
        global_prob,
    )


@dataclass(frozen=True)
class SyntheticTruth:
    """What the generator drew and the data only shows indirectly (for ceilings, not for models).

    Sessions [S], sorted by user then time: session_user (raw user id), session_start (unix s), intent
    (cluster). Items [I] by raw item id: item_cluster, in_cluster_prob (chance of the item when a view
    picks inside its cluster), global_prob (chance when a view picks from global popularity).
    """

    config: SyntheticConfig
    session_user: np.ndarray
    session_start: np.ndarray
    intent: np.ndarray
    item_cluster: np.ndarray
    in_cluster_prob: np.ndarray
    global_prob: np.ndarray

    def next_intent_probs(self, intent: int) -> np.ndarray:
        """[num_clusters] chance of the next session's intent cluster after a session in ``intent``."""
        config = self.config
        probs = np.full(config.num_clusters, config.intent_jump_prob / config.num_clusters)
        step = (1 - config.intent_stay_prob - config.intent_jump_prob) / 2
        probs[intent] += config.intent_stay_prob
        probs[(intent + 1) % config.num_clusters] += step
        probs[(intent - 1) % config.num_clusters] += step
        return probs

    def view_probs(self, intent_probs: np.ndarray) -> np.ndarray:
        """[I] chance that one view picks each item, given [num_clusters] chances of the session's intent."""
        inside = self.config.in_cluster_prob * intent_probs[self.item_cluster] * self.in_cluster_prob
        return inside + (1 - self.config.in_cluster_prob) * self.global_prob


def generate_synthetic(config: SyntheticConfig, sessions: SessionConfig | None = None) -> Dataset:
    """Builds the dataset described in the module docstring. Same config -> identical dataset."""
    return _generate(config, sessions)[0]


def synthetic_truth(config: SyntheticConfig) -> tuple[Dataset, SyntheticTruth]:
    """``generate_synthetic(config)`` and the hidden draws behind it (same config, same draws)."""
    return _generate(config, None)


def _generate(config: SyntheticConfig, sessions: SessionConfig | None) -> tuple[Dataset, SyntheticTruth]:
    rng = np.random.default_rng(config.seed)
    session_user, views = _sessions(config, rng)
    num_sessions = len(session_user)
    first_session = np.r_[True, session_user[1:] != session_user[:-1]]
    intent = _intents(config, session_user, rng)
    preferred_scene = rng.integers(0, config.num_scenes, config.num_users)
    scene = np.where(
        rng.random(num_sessions) < 0.7,
        preferred_scene[session_user],
        rng.integers(0, config.num_scenes, num_sessions),
    )
    preferred_device = rng.integers(0, config.num_devices, config.num_users)
    device = np.where(
        rng.random(num_sessions) < 0.9,
        preferred_device[session_user],
        rng.integers(0, config.num_devices, num_sessions),
    )
    # Times: views 10-240 s apart. Session starts are sorted uniform draws over the whole period, each
    # pushed back by the earlier sessions' durations plus an hour, so sessions never overlap and every
    # user is active across the period (the time split's last days hold warm users).
    view_session = np.repeat(np.arange(num_sessions), views)
    first_view = np.r_[True, view_session[1:] != view_session[:-1]]
    view_gap = np.where(first_view, 0, rng.integers(10, 241, len(view_session)))
    view_offset = _per_user_cumsum(view_gap, first_view)
    duration = np.zeros(num_sessions, dtype=np.int64)
    np.maximum.at(duration, view_session, view_offset)
    push = np.where(first_session, 0, np.r_[0, duration[:-1]] + 3600)
    # Draw inside the room the pushes leave, so no user runs past the period (that would stretch the
    # global time range and leave the time split's test days to a few heavy users).
    room = np.maximum(config.days * 86400 - np.bincount(session_user, push, minlength=config.num_users), 0)
    draw = (rng.random(num_sessions) * room[session_user]).astype(np.int64)
    draw = draw[np.lexsort((draw, session_user))]  # session_user is sorted, so this sorts within users
    session_start = config.start_time + draw + _per_user_cumsum(push, first_session)
    view_time = session_start[view_session] + view_offset
    view_item, item_cluster, in_cluster_prob, global_prob = _view_items(config, intent[view_session], rng)
    # Funnel: cart after some views (rate depends on the scene), purchase after some carts.
    scene_factor = np.linspace(0.6, 1.6, config.num_scenes)
    view_scene = scene[view_session]
    carted = rng.random(len(view_item)) < config.cart_rate * scene_factor[view_scene]
    bought = carted & (rng.random(len(view_item)) < config.purchase_rate)
    cart_time = view_time + rng.integers(5, 61, len(view_item))
    buy_time = cart_time + rng.integers(5, 121, len(view_item))
    pick = [np.arange(len(view_item)), np.flatnonzero(carted), np.flatnonzero(bought)]
    times = [view_time, cart_time[pick[1]], buy_time[pick[2]]]
    actions = [Action.VIEW, Action.CART, Action.PURCHASE]
    event_view = np.concatenate(pick)
    events = RawEvents(
        user=session_user[view_session[event_view]],
        item=view_item[event_view],
        timestamp=np.concatenate(times).astype(np.int64),
        action=np.concatenate([np.full(len(p), a, np.int8) for p, a in zip(pick, actions, strict=True)]),
        scene=np.array(SCENE_NAMES, dtype=object)[view_scene[event_view]],
        device=np.array(DEVICE_NAMES, dtype=object)[device[view_session[event_view]]],
    )
    items = RawItems(
        raw_id=np.arange(config.num_items),
        title=np.array(
            [f"Item {i} (cluster {c})" for i, c in enumerate(item_cluster.tolist())], dtype=object
        ),
        category=item_cluster,
    )
    dataset = build_dataset("synthetic", events, COMMERCE_FUNNEL, "commerce", items, None, sessions)
    dataset.manifest["synthetic"] = asdict(config)
    truth = SyntheticTruth(
        config, session_user, session_start, intent, item_cluster, in_cluster_prob, global_prob
    )
    return dataset, truth
