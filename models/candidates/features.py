"""Per-candidate features for a reranker over the merged candidates: one request -> float32 [N, F].

``candidate_features(request_time, history, merged, state, user_vector)`` computes, with numpy over all N
candidates at once (the only Python loops run over the sources), the columns named by
``feature_names(merged.sources)`` (``FEATURE_NAMES`` for the default sources). Three groups
(``feature_groups``), which the offline ablation drops one at a time:

- ``source``: per source its raw score, its z-score over the request's N candidates, its 0-based rank
  (-1 = not found) and a found flag; the merge's fused score, the merged position, how many sources found
  the candidate;
- ``context`` (what the candidate means right now for this user): next-item transition count and
  probability from the last item and from the last 3; the transitions source's share T(last, c);
  co-occurrence cosine to the last 1, mean over the last 5 and 20, max over the last 20; the user vector's
  dot product with the item vector and the mean vector similarity to the last 5 items (0 and a flag
  without vectors); the item's popularity before the request (all time, last 7 days, both as counts and as
  shares of all events) and its trend (last 7 days against the 7 before), the same for the last day, log
  seconds since the item's first event; log time since the previous event,
  history length, position in the current session (events within 30-minute gaps); repeat features: in the
  history, how often, 1 / (1 + events since), log seconds since, strongest action level
  (``ACTION_STRENGTH``) and funnel level reached on it;
- ``side``: share of the history in the candidate's categories (max and mean over all its categories; max
  over the last 5 items), Jaccard overlap with the last item's categories, number of categories; year,
  year minus the user's mean year (and over the user's spread); user features gender / age / occupation
  (index, 0 when the dataset has none); the item's mean value (rating) before the request and its gap to
  the user's mean rating.

Time rule: the history is the user's events before the request; the state holds only fitted events
(``FeatureState``), and the popularity and mean-value columns count only those strictly before
``request_time``. Items in ``history`` outside the catalogue (unknown = 1) never match anything.
"""

from __future__ import annotations

import numpy as np

from models.candidates.feature_state import FeatureState, pair_values
from models.candidates.merge import MergedCandidates
from models.data.schema import ACTION_STRENGTH, FIRST_REAL_ID, Action
from models.types import UserHistory

DEFAULT_SOURCES = ("cooccurrence", "transitions", "popular")
RECENT_SECONDS = 7 * 86400  # the "recent" popularity window and the trend's two windows
DAY_SECONDS = 86400
SESSION_GAP_SECONDS = 30 * 60
USER_FIELDS = ("gender", "age", "occupation")
SOURCE_COLUMNS = ("score", "z", "rank", "found")
MERGE_NAMES = ("fused_score", "fused_rank", "sources_found")
# the re-visit columns (``_repeat_columns``): all zero on data without re-visits, where a model never
# splits on them and serving skips them (``candidate_features(repeats=False)``)
REPEAT_NAMES = (
    "seen",
    "seen_count",
    "seen_recency",
    "seen_log_age",
    "seen_action_level",
    "seen_funnel_level",
)
CONTEXT_NAMES = (
    "trans_count_last",
    "trans_prob_last",
    "trans_count_last3",
    "trans_prob_last3",
    "trans_share_last",
    "cooc_last1",
    "cooc_mean5",
    "cooc_mean20",
    "cooc_max20",
    "vec_user_dot",
    "vec_sim_last5",
    "has_item_vectors",
    "has_user_vector",
    "pop_all",
    "pop_all_share",
    "pop_recent",
    "pop_recent_share",
    "pop_trend",
    "pop_day",
    "pop_day_share",
    "item_log_age",
    "log_gap_prev",
    "history_length",
    "session_position",
    *REPEAT_NAMES,
)
SIDE_NAMES = (
    "cat_share_max",
    "cat_share_mean",
    "cat_share_last5_max",
    "cat_jaccard_last",
    "cat_count",
    "year",
    "year_gap",
    "year_gap_z",
    *(f"user_{name}" for name in USER_FIELDS),
    "item_mean_value",
    "item_value_gap",
)
_STRENGTH = np.array([ACTION_STRENGTH.get(a, 1) for a in range(max(ACTION_STRENGTH) + 1)], dtype=np.float64)


def source_names(sources: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{s}_{column}" for s in sources for column in SOURCE_COLUMNS) + MERGE_NAMES


def feature_names(sources: tuple[str, ...] = DEFAULT_SOURCES) -> tuple[str, ...]:
    """The F column names of ``candidate_features`` for merged candidates of ``sources``."""
    return source_names(sources) + CONTEXT_NAMES + SIDE_NAMES


def feature_groups(sources: tuple[str, ...] = DEFAULT_SOURCES) -> dict[str, str]:
    """Column name -> group ("source", "context" or "side")."""
    groups = dict.fromkeys(source_names(sources), "source")
    groups.update(dict.fromkeys(CONTEXT_NAMES, "context"))
    groups.update(dict.fromkeys(SIDE_NAMES, "side"))
    return groups


FEATURE_NAMES = feature_names(DEFAULT_SOURCES)
# the feature sets of the ablations: which groups each keeps
ABLATIONS: dict[str, tuple[str, ...]] = {
    "all": ("source", "context", "side"),
    "no_context": ("source", "side"),
    "no_side": ("source", "context"),
    "sources_only": ("source",),
}


def ablation_columns(sources: tuple[str, ...], ablation: str) -> np.ndarray:
    """Column indices [F_a] (of ``feature_names(sources)``) of the features the ``ablation`` keeps."""
    keep = ABLATIONS[ablation]
    groups = feature_groups(sources)
    return np.array(
        [i for i, name in enumerate(feature_names(sources)) if groups[name] in keep], dtype=np.int64
    )


def _source_columns(merged: MergedCandidates) -> list[np.ndarray]:
    score = merged.source_score.astype(np.float64)
    rank = merged.source_rank
    spread = score.std(axis=0)
    z = np.where(spread > 0, (score - score.mean(axis=0)) / np.maximum(spread, 1e-12), 0.0)
    columns: list[np.ndarray] = []
    for s in range(score.shape[1]):
        columns += [score[:, s], z[:, s], rank[:, s].astype(np.float64), (rank[:, s] >= 0).astype(np.float64)]
    found = (rank >= 0).sum(axis=1).astype(np.float64)
    return [*columns, merged.merge_score.astype(np.float64), np.arange(len(merged), dtype=np.float64), found]


def _categories(state: FeatureState, items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """items [n] -> (categories [m] of every item, owner [m] position in items, counts [n])."""
    indptr, flat = state.static.item_category_indptr, state.static.item_category
    starts, counts = indptr[items], indptr[items + 1] - indptr[items]
    positions = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(int(counts.sum()))
    return flat[positions], np.repeat(np.arange(len(items)), counts), counts


def _history_share(state: FeatureState, items: np.ndarray) -> np.ndarray:
    """Share [num_categories] of the history events ``items`` (those with a category) in each category."""
    categories, _, counts = _categories(state, items)
    counts_by_category = np.bincount(categories, minlength=state.static.num_categories).astype(np.float64)
    return counts_by_category / max(int((counts > 0).sum()), 1)


def _max_by_owner(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, np.float64)
    np.maximum.at(out, owner, values)
    return out


def _window_starts(request_time: int) -> np.ndarray:
    """[4] the times the popularity windows read: now, a week ago, two weeks ago, a day ago."""
    return np.asarray(
        [
            request_time,
            request_time - RECENT_SECONDS,
            request_time - 2 * RECENT_SECONDS,
            request_time - DAY_SECONDS,
        ],
        dtype=np.int64,
    )


def _context_columns(
    request_time: int,
    history: UserHistory,
    items: np.ndarray,
    newest: np.ndarray,
    state: FeatureState,
    user_vector: np.ndarray | None,
    timeline: tuple[np.ndarray, np.ndarray],
    order: np.ndarray,
    repeats: bool = True,
) -> list[np.ndarray]:
    """timeline: ``state.events_before_times(items, _window_starts(request_time))``; order: the items'
    argsort (shared by the lookups); repeats: False leaves the ``REPEAT_NAMES`` columns 0."""
    n, num_items = len(items), state.num_items
    zeros = np.zeros(n, np.float64)
    counts = pair_values(state.next_counts, newest[:3], items, num_items, order).astype(
        np.float64
    )  # [<=3, N]
    out = state.next_out[newest[:3]].astype(np.float64)
    probability = counts / np.maximum(out, 1.0)[:, None]
    share = pair_values(state.share, newest[:1], items, num_items, order).astype(np.float64)
    similarity = pair_values(state.cooccurrence, newest[:20], items, num_items, order).astype(np.float64)
    has_history = len(newest) > 0
    columns = [
        np.log1p(counts[0]) if has_history else zeros,
        probability[0] if has_history else zeros,
        np.log1p(counts.sum(axis=0)),
        probability.mean(axis=0) if has_history else zeros,
        share[0] if has_history else zeros,
        similarity[0] if has_history else zeros,
        similarity[:5].mean(axis=0) if has_history else zeros,
        similarity.mean(axis=0) if has_history else zeros,
        similarity.max(axis=0) if has_history else zeros,
    ]
    vectors = state.item_vectors
    if vectors is None:
        columns += [zeros, zeros, zeros, zeros]
    else:
        candidate_vectors = vectors[items].astype(np.float64)
        user_dot = zeros if user_vector is None else candidate_vectors @ np.asarray(user_vector, np.float64)
        last5 = vectors[newest[:5]].astype(np.float64)
        similar = (last5 @ candidate_vectors.T).mean(axis=0) if has_history else zeros
        has_user = np.full(n, 0.0 if user_vector is None else 1.0)
        columns += [user_dot, similar, np.ones(n), has_user]
    count_now, count_recent_start, count_previous_start, count_day_start = timeline[0]
    recent, previous = count_now - count_recent_start, count_recent_start - count_previous_start
    day = count_now - count_day_start
    total_now, total_recent_start, _, total_day_start = state.totals_before(_window_starts(request_time))
    total_recent = total_now - total_recent_start
    total_day = total_now - total_day_start
    first = state.first_time(items)
    columns += [
        np.log1p(count_now),
        count_now / max(total_now, 1),
        np.log1p(recent),
        recent / max(total_recent, 1),
        np.log1p(recent) - np.log1p(previous),
        np.log1p(day),
        day / max(total_day, 1),
        np.where(count_now > 0, np.log1p(np.maximum(request_time - first, 0)), -1.0),
    ]
    times = history.timestamp.astype(np.int64)[::-1]  # newest first, every event
    gap = float(np.log1p(max(request_time - int(times[0]), 0))) if len(times) else -1.0
    later = np.concatenate([[request_time], times[:-1]])
    in_session = float(np.cumprod(later - times <= SESSION_GAP_SECONDS).sum())
    columns += [np.full(n, gap), np.full(n, float(len(history))), np.full(n, in_session)]
    if repeats:
        columns += _repeat_columns(request_time, history, items, state)
    else:
        columns += [zeros] * len(REPEAT_NAMES)
    return columns


def _valid_newest(history: UserHistory, num_items: int) -> np.ndarray:
    """[H] bool over the history reversed (newest first): events of a catalogue item."""
    items = history.item[::-1]
    return (items >= FIRST_REAL_ID) & (items < num_items)


def _repeat_columns(
    request_time: int, history: UserHistory, items: np.ndarray, state: FeatureState
) -> list[np.ndarray]:
    valid = _valid_newest(history, state.num_items)
    newest = history.item[::-1][valid].astype(np.int64)
    times = history.timestamp[::-1][valid].astype(np.int64)
    actions = np.clip(history.action[::-1][valid].astype(np.int64), 0, len(_STRENGTH) - 1)
    values = history.value[::-1][valid]
    match = newest[:, None] == items[None, :]  # [H, N]
    seen = match.any(axis=0)
    if len(newest) == 0:
        return [np.zeros(len(items))] * 3 + [np.full(len(items), -1.0)] + [np.zeros(len(items))] * 2
    last = match.argmax(axis=0)  # the newest occurrence (0 when unseen; masked below)
    levels = state.static.funnel.levels(actions, values).astype(np.float64)
    age = np.log1p(np.maximum(request_time - times[last], 0))
    return [
        seen.astype(np.float64),
        match.sum(axis=0).astype(np.float64),
        np.where(seen, 1.0 / (1.0 + last), 0.0),
        np.where(seen, age, -1.0),
        (match * _STRENGTH[actions][:, None]).max(axis=0, initial=0.0),
        (match * levels[:, None]).max(axis=0, initial=0.0),
    ]


def _side_columns(
    history: UserHistory,
    items: np.ndarray,
    newest: np.ndarray,
    state: FeatureState,
    timeline: tuple[np.ndarray, np.ndarray],
) -> list[np.ndarray]:
    """timeline: as ``_context_columns`` reads it (its first row: the events before the request)."""
    n = len(items)
    static = state.static
    categories, owner, counts = _categories(state, items)
    share = _history_share(state, newest)[categories]
    share5 = _history_share(state, newest[:5])[categories]
    last_categories, _, _ = _categories(state, newest[:1])
    inside = np.isin(categories, last_categories).astype(np.float64)
    overlap = np.bincount(owner, inside, minlength=n)
    union = counts + len(last_categories) - overlap
    columns = [
        _max_by_owner(share, owner, n),
        np.bincount(owner, share, minlength=n) / np.maximum(counts, 1),
        _max_by_owner(share5, owner, n),
        np.where(union > 0, overlap / np.maximum(union, 1), 0.0),
        counts.astype(np.float64),
    ]
    year = static.item_year[items].astype(np.float64)
    user_years = static.item_year[newest].astype(np.float64)
    user_years = user_years[user_years > 0]
    if len(user_years):
        gap = np.where(year > 0, year - user_years.mean(), 0.0)
        columns += [year, gap, gap / (user_years.std() + 1.0)]
    else:
        columns += [year, np.zeros(n), np.zeros(n)]
    columns += [np.full(n, float(history.user_features.get(name, 0))) for name in USER_FIELDS]
    if state.has_values:
        count, total = timeline[0][0], timeline[1][0]
        mean = np.where(count > 0, total / np.maximum(count, 1.0), 0.0)
        rated = history.action == Action.RATE
        user_mean = float(history.value[rated].mean()) if rated.any() else None
        gap = np.zeros(n) if user_mean is None else np.where(count > 0, mean - user_mean, 0.0)
        columns += [mean, gap]
    else:
        columns += [np.zeros(n), np.zeros(n)]
    return columns


def candidate_features(
    request_time: int,
    history: UserHistory,
    merged: MergedCandidates,
    state: FeatureState,
    user_vector: np.ndarray | None = None,
    repeats: bool = True,
) -> np.ndarray:
    """One request's merged candidates (N, with every source's score and rank) -> float32 [N, F], columns
    ``feature_names(merged.sources)``. history: the user's events before ``request_time``, oldest first;
    user_vector [d] (the encoder's, with ``state.item_vectors``) or None. repeats: False leaves the
    ``REPEAT_NAMES`` columns 0 (serving a model that never splits on them: its scores are the same)."""
    items = merged.items.astype(np.int64)
    if len(items) == 0:
        return np.zeros((0, len(feature_names(merged.sources))), np.float32)
    newest = history.item[::-1][_valid_newest(history, state.num_items)].astype(np.int64)
    order = np.argsort(items, kind="stable")
    timeline = state.events_before_times(items, _window_starts(request_time), order)
    columns = _source_columns(merged)
    columns += _context_columns(
        request_time, history, items, newest, state, user_vector, timeline, order, repeats
    )
    columns += _side_columns(history, items, newest, state, timeline)
    return np.stack(columns, axis=1).astype(np.float32)
