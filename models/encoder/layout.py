"""Raw events -> token layout, with numpy index arithmetic (no loops over tokens).

The SAME functions build the layout at training time, in offline evaluation and in serving, so the
sessionisation cannot drift between them (models.md 1.2, 1.7):

- a new session starts after a gap > ``session_gap_s``; inside a session a repeated item becomes one token
  carrying its strongest action (funnel level first, then ``ACTION_STRENGTH``), placed at its first time;
  sessions longer than ``max_items_per_session`` are cut into consecutive chunks;
- session layout: ``[c1, items of s1, c2, items of s2, ...]`` plus, for a request, a trailing context token;
- folded session layout (``EncoderConfig.folded``, one item per request): one token per request,
  ``[(-, c1), (i1, c2), (i2, c3), ...]``: token j holds the item of request j - 1 and the context of
  request j, so its output is request j's query, every token attends to itself and earlier tokens only,
  and the last token's context is the request being served (or empty in training);
- causal layout (hstu / sasrec): the last items in time order, no dedup, one token per event.

A layout is a dict of equal-length int64 arrays (``TOKEN_FIELDS``); many layouts are stacked as jagged
values + offsets (``JaggedTokens``) and padded only right before the model (``pad_jagged``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.schema import ACTION_STRENGTH, Funnel
from models.encoder.config import NUM_GAP_BUCKETS, EncoderConfig
from models.types import RequestContext, UserHistory

CONTEXT_TOKEN = 1
ITEM_TOKEN = 2
FOLDED_TOKEN = 3  # folded layout: previous request's item + this request's context

TOKEN_FIELDS: tuple[str, ...] = (
    "tok_type",  # 0 pad, 1 context, 2 item, 3 folded (item fields: previous request; the rest: this one)
    "item",  # item index (0 on context tokens)
    "action",  # schema.Action (0 on context tokens)
    "level",  # funnel level 1..3 (0 on context tokens)
    "category",  # item category index (0 on context tokens)
    "scene",
    "device",
    "hour",  # 0..23 from the token time (UTC)
    "dow",  # 0..6, Monday = 0
    "gap",  # gap bucket of the session (context tokens), 0 on items
    "sess",  # session number 1..S (session layout) or position 1..L (causal and folded layouts)
    "ts",  # unix seconds: event time, or session start for context tokens (folded: the item's time)
    "query_ts",  # time of the moment this token's output predicts (HSTU rab_t, models.md 2.2)
)

_STRENGTH = np.zeros(max(ACTION_STRENGTH) + 1, dtype=np.int64)
for _action, _strength in ACTION_STRENGTH.items():
    _STRENGTH[int(_action)] = _strength


def hour_of_day(ts: np.ndarray) -> np.ndarray:
    return (ts // 3600) % 24


def day_of_week(ts: np.ndarray) -> np.ndarray:
    """Monday = 0 (1970-01-01 was a Thursday)."""
    return (ts // 86400 + 3) % 7


def gap_bucket(gap_s: np.ndarray) -> np.ndarray:
    """Gap since the previous session in seconds -> 1..15 (log2 of minutes); 0 is kept for 'no previous'."""
    minutes = np.maximum(gap_s, 0) / 60.0
    return 1 + np.minimum(NUM_GAP_BUCKETS - 2, np.floor(np.log2(1.0 + minutes))).astype(np.int64)


@dataclass
class Sessions:
    """Deduplicated, sessionised events of one user: one row per item token, in time order. Arrays [N]."""

    row: np.ndarray  # index of the event that gives the token's time/scene/device (first occurrence)
    strongest_row: np.ndarray  # index of the event that gives action/value (strongest occurrence)
    session: np.ndarray  # 0..S-1


def sessionise(history: UserHistory, funnel: Funnel, gap_s: int, max_items: int) -> Sessions:
    """Cut a time-ordered history into sessions (see module docstring)."""
    if max_items < 1:
        raise ValueError("max_items_per_session must be >= 1; 0 is resolved by encoder_config_for")
    n = len(history)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Sessions(empty, empty, empty)
    ts = history.timestamp.astype(np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = np.diff(ts) > gap_s
    raw_session = np.cumsum(starts) - 1
    level = funnel.levels(history.action, history.value).astype(np.int64)
    rank = level * 16 + _STRENGTH[np.clip(history.action.astype(np.int64), 0, len(_STRENGTH) - 1)]
    index = np.arange(n)
    order = np.lexsort((index, -rank, history.item, raw_session))  # strongest first inside each group
    key_sorted = raw_session[order] * (int(history.item.max()) + 1) + history.item[order]
    group_start = np.ones(n, dtype=bool)
    group_start[1:] = key_sorted[1:] != key_sorted[:-1]
    starts_at = np.flatnonzero(group_start)
    strongest = order[starts_at]
    first = np.minimum.reduceat(order, starts_at)
    by_time = np.argsort(first, kind="stable")
    first, strongest = first[by_time], strongest[by_time]
    token_raw_session = raw_session[first]
    # position of each token inside its raw session -> chunks of max_items
    new_raw = np.ones(len(first), dtype=bool)
    new_raw[1:] = token_raw_session[1:] != token_raw_session[:-1]
    raw_start_pos = np.maximum.accumulate(np.where(new_raw, np.arange(len(first)), 0))
    chunk = (np.arange(len(first)) - raw_start_pos) // max_items
    new_session = new_raw | (chunk != np.concatenate([[-1], chunk[:-1]]))
    session = np.cumsum(new_session) - 1
    return Sessions(first, strongest, session)


def session_layout(
    history: UserHistory,
    request: RequestContext | None,
    config: EncoderConfig,
    item_category: np.ndarray,
) -> dict[str, np.ndarray]:
    """Session layout of one user (models.md 1.2). With ``request`` a trailing context token is appended
    for the next session. Oldest whole sessions are dropped to fit ``config.max_tokens``."""
    funnel = config.funnel()
    sess = sessionise(history, funnel, config.session_gap_s, config.max_items_per_session)
    n_items = len(sess.row)
    num_sessions = int(sess.session[-1]) + 1 if n_items else 0
    ts_events = history.timestamp.astype(np.int64)
    item_ts = ts_events[sess.row]
    # per-session start / end times and first token
    first_token = np.searchsorted(sess.session, np.arange(num_sessions))
    start_ts = item_ts[first_token] if n_items else np.zeros(0, dtype=np.int64)
    end_ts = np.maximum.reduceat(item_ts, first_token) if n_items else np.zeros(0, dtype=np.int64)
    ctx_scene = history.scene[sess.row][first_token].astype(np.int64)
    ctx_device = history.device[sess.row][first_token].astype(np.int64)
    gaps = np.zeros(num_sessions, dtype=np.int64)
    if num_sessions > 1:
        gaps[1:] = gap_bucket(start_ts[1:] - end_ts[:-1])
    if request is not None:
        last_ts = end_ts[-1] if num_sessions else None
        start_ts = np.append(start_ts, request.timestamp)
        ctx_scene = np.append(ctx_scene, request.scene)
        ctx_device = np.append(ctx_device, request.device)
        gaps = np.append(
            gaps, 0 if last_ts is None else gap_bucket(np.array([request.timestamp - last_ts]))[0]
        )
    num_ctx = len(start_ts)
    total = num_ctx + n_items
    ctx_pos = first_token + np.arange(num_sessions)
    if request is not None:
        ctx_pos = np.append(ctx_pos, total - 1)
    item_pos = np.arange(n_items) + sess.session + 1

    out = {name: np.zeros(total, dtype=np.int64) for name in TOKEN_FIELDS}
    out["tok_type"][ctx_pos] = CONTEXT_TOKEN
    out["tok_type"][item_pos] = ITEM_TOKEN
    out["sess"][ctx_pos] = np.arange(1, num_ctx + 1)
    out["sess"][item_pos] = sess.session + 1
    out["ts"][ctx_pos] = start_ts
    out["ts"][item_pos] = item_ts
    out["scene"][ctx_pos] = ctx_scene
    out["scene"][item_pos] = history.scene[sess.row]
    out["device"][ctx_pos] = ctx_device
    out["device"][item_pos] = history.device[sess.row]
    out["gap"][ctx_pos] = gaps
    items = history.item[sess.row].astype(np.int64)
    out["item"][item_pos] = items
    out["action"][item_pos] = history.action[sess.strongest_row]
    out["level"][item_pos] = funnel.levels(
        history.action[sess.strongest_row], history.value[sess.strongest_row]
    )
    out["category"][item_pos] = item_category[np.clip(items, 0, len(item_category) - 1)]
    out["hour"] = hour_of_day(out["ts"])
    out["dow"] = day_of_week(out["ts"])
    out["query_ts"] = out["ts"].copy()
    return _keep_last_sessions(out, config.max_tokens)


def folded_layout(
    history: UserHistory,
    request: RequestContext | None,
    config: EncoderConfig,
    item_category: np.ndarray,
) -> dict[str, np.ndarray]:
    """Folded session layout (module docstring) for one item per request: n sessionised items give n + 1
    tokens. Token j (0-based) carries item j - 1 (item, action, level, category; none on token 0), its
    time in ``ts``, and request j's context: scene, device, gap, hour/dow of ``query_ts`` = request j's
    time. Request n is ``request``; without one the last token's context is empty (it only holds the
    last item, a key for nothing and a target for the token before). Oldest tokens are dropped beyond
    ``config.max_tokens``."""
    funnel = config.funnel()
    sess = sessionise(history, funnel, config.session_gap_s, 1)
    n_items = len(sess.row)
    if n_items == 0 and request is None:
        return {name: np.zeros(0, dtype=np.int64) for name in TOKEN_FIELDS}
    total = n_items + 1
    item_ts = history.timestamp.astype(np.int64)[sess.row]
    out = {name: np.zeros(total, dtype=np.int64) for name in TOKEN_FIELDS}
    out["tok_type"][:] = FOLDED_TOKEN
    out["sess"] = np.arange(1, total + 1)
    items = history.item[sess.row].astype(np.int64)
    out["item"][1:] = items
    out["action"][1:] = history.action[sess.strongest_row]
    out["level"][1:] = funnel.levels(history.action[sess.strongest_row], history.value[sess.strongest_row])
    out["category"][1:] = item_category[np.clip(items, 0, len(item_category) - 1)]
    # context of requests 0 .. n-1 = the sessionised events themselves
    out["query_ts"][:n_items] = item_ts
    out["scene"][:n_items] = history.scene[sess.row]
    out["device"][:n_items] = history.device[sess.row]
    if n_items > 1:
        out["gap"][1:n_items] = gap_bucket(item_ts[1:] - item_ts[:-1])
    if request is not None:
        out["query_ts"][n_items] = request.timestamp
        out["scene"][n_items] = request.scene
        out["device"][n_items] = request.device
        if n_items:
            out["gap"][n_items] = gap_bucket(np.array([request.timestamp - item_ts[-1]]))[0]
    else:
        out["query_ts"][n_items] = item_ts[-1]
    out["ts"][1:] = item_ts
    out["ts"][0] = out["query_ts"][0]
    out["hour"] = hour_of_day(out["query_ts"])
    out["dow"] = day_of_week(out["query_ts"])
    if total > config.max_tokens:
        out = {name: values[total - config.max_tokens :].copy() for name, values in out.items()}
        out["sess"] -= out["sess"][0] - 1
    return out


def _keep_last_sessions(tokens: dict[str, np.ndarray], max_tokens: int) -> dict[str, np.ndarray]:
    total = len(tokens["tok_type"])
    if total <= max_tokens:
        return tokens
    ctx_positions = np.flatnonzero(tokens["tok_type"] == CONTEXT_TOKEN)
    cut = ctx_positions[np.searchsorted(ctx_positions, total - max_tokens)]
    kept = {name: values[cut:].copy() for name, values in tokens.items()}
    kept["sess"] -= kept["sess"][0] - 1
    return kept


def causal_layout(
    history: UserHistory,
    request: RequestContext | None,
    config: EncoderConfig,
    item_category: np.ndarray,
) -> dict[str, np.ndarray]:
    """Causal next-item layout (hstu / sasrec): the last ``max_tokens`` events, one token each. Token t's
    query time is the time of event t+1; the last token's is the request time (models.md 2.2)."""
    keep = slice(max(0, len(history) - config.max_tokens), len(history))
    items = history.item[keep].astype(np.int64)
    n = len(items)
    ts = history.timestamp[keep].astype(np.int64)
    out = {name: np.zeros(n, dtype=np.int64) for name in TOKEN_FIELDS}
    out["tok_type"][:] = ITEM_TOKEN
    out["item"] = items
    out["action"] = history.action[keep].astype(np.int64)
    out["level"] = config.funnel().levels(history.action[keep], history.value[keep]).astype(np.int64)
    out["category"] = item_category[np.clip(items, 0, len(item_category) - 1)]
    out["scene"] = history.scene[keep].astype(np.int64)
    out["device"] = history.device[keep].astype(np.int64)
    out["hour"] = hour_of_day(ts)
    out["dow"] = day_of_week(ts)
    out["sess"] = np.arange(1, n + 1)
    out["ts"] = ts
    if n:
        out["query_ts"][:-1] = ts[1:]
        out["query_ts"][-1] = request.timestamp if request is not None else ts[-1]
    return out


def build_layout(
    history: UserHistory,
    request: RequestContext | None,
    config: EncoderConfig,
    item_category: np.ndarray,
) -> dict[str, np.ndarray]:
    """Dispatch on ``config.kind`` (and ``config.folded``)."""
    if config.folded:
        return folded_layout(history, request, config, item_category)
    build = session_layout if config.is_session else causal_layout
    return build(history, request, config, item_category)


@dataclass
class JaggedTokens:
    """Layouts of B users as jagged values. values[name]: [N_total]; offsets: [B + 1];
    user_features: [B, F] (order of ``EncoderConfig.user_feature_sizes``)."""

    values: dict[str, np.ndarray]
    offsets: np.ndarray
    user_features: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


def stack_layouts(layouts: list[dict[str, np.ndarray]], user_features: np.ndarray) -> JaggedTokens:
    lengths = np.array([len(layout["tok_type"]) for layout in layouts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = {
        name: np.concatenate([layout[name] for layout in layouts]) if layouts else np.zeros(0, np.int64)
        for name in TOKEN_FIELDS
    }
    return JaggedTokens(values, offsets, user_features.reshape(len(layouts), -1).astype(np.int64))


def pad_jagged(tokens: JaggedTokens, min_length: int = 1) -> dict[str, np.ndarray]:
    """Jagged -> right-padded [B, T] arrays (T = longest row); padding is 0 everywhere."""
    lengths = tokens.lengths
    batch = len(lengths)
    width = max(int(lengths.max()) if batch else 0, min_length)
    rows = np.repeat(np.arange(batch), lengths)
    cols = np.arange(int(tokens.offsets[-1])) - np.repeat(tokens.offsets[:-1], lengths)
    padded = {}
    for name, values in tokens.values.items():
        grid = np.zeros((batch, width), dtype=np.int64)
        grid[rows, cols] = values
        padded[name] = grid
    return padded
