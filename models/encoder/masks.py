"""Attention masks built with tensor ops only (models.md 1.4, 2.1). True = query may attend to key."""

from __future__ import annotations

import torch

from models.encoder.layout import CONTEXT_TOKEN


def session_mask(sess: torch.Tensor, tok_type: torch.Tensor) -> torch.Tensor:
    """Session-wise mask. sess, tok_type: [B, T] (0 = padding) -> [B, T, T] bool.

    allowed(q, k) = sess[k] < sess[q]  or  (same session and k is its context token)  or  k == q.
    A padded query sees only itself, so no row is empty (softmax stays finite).
    """
    s_q = sess.unsqueeze(2)
    s_k = sess.unsqueeze(1)
    key_valid = (tok_type > 0).unsqueeze(1)
    earlier = (s_k < s_q) & key_valid
    own_context = (s_k == s_q) & (tok_type == CONTEXT_TOKEN).unsqueeze(1)
    eye = torch.eye(sess.shape[1], dtype=torch.bool, device=sess.device).unsqueeze(0)
    return earlier | own_context | eye


def causal_mask(tok_type: torch.Tensor) -> torch.Tensor:
    """Lower-triangular mask over right-padded rows; a padded query sees only itself.
    tok_type: [B, T] -> [B, T, T] bool."""
    length = tok_type.shape[1]
    tril = torch.ones(length, length, dtype=torch.bool, device=tok_type.device).tril()
    valid = tok_type > 0
    both_valid = valid.unsqueeze(1) & valid.unsqueeze(2)
    eye = torch.eye(length, dtype=torch.bool, device=tok_type.device).unsqueeze(0)
    return (tril.unsqueeze(0) & both_valid) | eye
