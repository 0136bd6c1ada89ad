"""Supervision targets for a padded batch, built with numpy index arithmetic.

Session encoder (models.md 1.7): every context token whose session has items is a query; its targets are
its own session's item tokens (head g_0) and, for multi-session prediction, the next session's (head g_1).
Causal kinds (models.md 2.3): every position with a successor is a query; the target is the next item.
Folded session layout (one token per request): every token with a successor is a query; its target is
the successor's item (g_0) and, for multi-session prediction, the one after (g_1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.encoder.layout import CONTEXT_TOKEN, ITEM_TOKEN


@dataclass
class Targets:
    """Queries Q of one batch. rows/cols: [Q] position of the query token in the padded batch;
    items/levels: [Q, n] (0 = empty slot); next_items: [Q, n] targets of the next session (MSP, may be all 0);
    scene: [Q] scene of the query's context."""

    rows: np.ndarray
    cols: np.ndarray
    items: np.ndarray
    levels: np.ndarray
    next_items: np.ndarray
    scene: np.ndarray


def session_targets(padded: dict[str, np.ndarray], max_items: int) -> Targets:
    tok_type, sess = padded["tok_type"], padded["sess"]
    batch = tok_type.shape[0]
    max_sess = int(sess.max()) + 2 if sess.size else 2
    ctx_b, ctx_t = np.nonzero(tok_type == CONTEXT_TOKEN)
    item_b, item_t = np.nonzero(tok_type == ITEM_TOKEN)
    item_sess = sess[item_b, item_t]
    has_items = np.zeros((batch, max_sess), dtype=bool)
    has_items[item_b, item_sess] = True
    is_query = has_items[ctx_b, sess[ctx_b, ctx_t]]
    q_b, q_t = ctx_b[is_query], ctx_t[is_query]
    q_sess = sess[q_b, q_t]
    query_index = np.full((batch, max_sess + 1), -1, dtype=np.int64)
    query_index[q_b, q_sess] = np.arange(len(q_b))
    ctx_position = np.zeros((batch, max_sess + 1), dtype=np.int64)
    ctx_position[q_b, q_sess] = q_t
    owner = query_index[item_b, item_sess]
    slot = item_t - ctx_position[item_b, item_sess] - 1
    keep = (owner >= 0) & (slot < max_items)
    width = max(int(slot[keep].max()) + 1 if keep.any() else 1, 1)
    items = np.zeros((len(q_b), width), dtype=np.int64)
    levels = np.zeros((len(q_b), width), dtype=np.int64)
    items[owner[keep], slot[keep]] = padded["item"][item_b[keep], item_t[keep]]
    levels[owner[keep], slot[keep]] = padded["level"][item_b[keep], item_t[keep]]
    next_query = query_index[q_b, q_sess + 1]
    next_items = np.where((next_query >= 0)[:, None], items[np.maximum(next_query, 0)], 0)
    return Targets(q_b, q_t, items, levels, next_items, padded["scene"][q_b, q_t])


def item_token_targets(padded: dict[str, np.ndarray], session: Targets) -> Targets:
    """Dense auxiliary queries (session layout): every item token of session k whose next session k+1 is a
    query of ``session``; its targets are the items of session k+1. rows/cols: [Q'] item-token positions."""
    tok_type, sess = padded["tok_type"], padded["sess"]
    batch = tok_type.shape[0]
    max_sess = int(sess.max()) + 3 if sess.size else 3
    query_index = np.full((batch, max_sess), -1, dtype=np.int64)
    query_index[session.rows, sess[session.rows, session.cols]] = np.arange(len(session.rows))
    item_b, item_t = np.nonzero(tok_type == ITEM_TOKEN)
    following = query_index[item_b, sess[item_b, item_t] + 1]
    keep = following >= 0
    rows, cols, following = item_b[keep], item_t[keep], following[keep]
    items, levels = session.items[following], session.levels[following]
    return Targets(rows, cols, items, levels, np.zeros_like(items), padded["scene"][rows, cols])


def _next_token_pairs(
    padded: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every real token followed by a real token -> (rows, cols, next items [P, 1], next levels [P, 1])."""
    tok_type = padded["tok_type"]
    has_next = np.zeros_like(tok_type, dtype=bool)
    has_next[:, :-1] = (tok_type[:, :-1] > 0) & (tok_type[:, 1:] > 0)
    rows, cols = np.nonzero(has_next)
    return rows, cols, padded["item"][rows, cols + 1][:, None], padded["level"][rows, cols + 1][:, None]


def causal_targets(padded: dict[str, np.ndarray]) -> Targets:
    rows, cols, items, levels = _next_token_pairs(padded)
    return Targets(rows, cols, items, levels, np.zeros_like(items), np.ones(len(rows), dtype=np.int64))


def folded_targets(padded: dict[str, np.ndarray]) -> Targets:
    """Token j is request j's query; request j's item sits on token j + 1, request j + 1's on j + 2."""
    tok_type = padded["tok_type"]
    rows, cols, items, levels = _next_token_pairs(padded)
    following = np.zeros((tok_type.shape[0], tok_type.shape[1] + 1), dtype=np.int64)
    following[:, : tok_type.shape[1] - 1] = padded["item"][:, 1:]  # item of the token after next, or 0
    next_items = following[rows, cols + 1][:, None]
    return Targets(rows, cols, items, levels, next_items, padded["scene"][rows, cols])


def build_targets(
    padded: dict[str, np.ndarray], is_session: bool, max_items: int, folded: bool = False
) -> Targets:
    if folded:
        return folded_targets(padded)
    return session_targets(padded, max_items) if is_session else causal_targets(padded)
