"""Named sizes: ``tiny`` (tests, seconds), ``quick`` (first ``make serve``, <= 3 min on 2 cores),
``default`` (models.md 1.11 / 7: the CPU defaults for MovieLens-1M)."""

from __future__ import annotations

from dataclasses import replace

from models.encoder.config import EncoderConfig
from models.train.trainer import TrainConfig

PRESETS = ("tiny", "quick", "default")


def preset(name: str, kind: str) -> tuple[EncoderConfig, TrainConfig]:
    """(model config without vocabulary sizes, training config) for a preset and model kind."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}, expected one of {PRESETS}")
    # causal baselines read 200 items (models.md 2.5); the session layout needs room for context tokens
    max_tokens = 256 if kind == "session_encoder" else 200
    model = EncoderConfig(kind=kind, dim=64, num_blocks=2, num_heads=2, head_dim=32, max_tokens=max_tokens)
    if kind == "session_encoder":
        # without these the context-token query collapses onto one popularity direction
        # (docs/retrieval.md, "Why the session encoder did not learn")
        model = replace(model, temperature=0.2, context_pool=True, item_query_weight=1.0, identity_start=True)
        # items per request chosen per dataset (models.train.data.request_items_for); with one item per
        # request, one token per rating (``fold_context``; max_tokens then halved by encoder_config_for):
        # half the epoch time at the same validation NDCG@10 on ML-1M (docs/retrieval.md, "Epoch time")
        model = replace(model, max_items_per_session=0, fold_context=True)
        # item vectors carry the item's category (measured on synthetic next-session, docs/retrieval.md)
        model = replace(model, item_side_info=True)
    # [OC, measured] lr 5e-3 and batch 32 instead of HSTU's 1e-3 / 128: on these CPU budgets (a few
    # hundred optimizer steps) the reference values leave SASRec at chance on ML-100K (val HR@10 0.037
    # after 1 minute), these reach 0.18 in 1.5 minutes. Long GPU runs can restore the reference values.
    train = TrainConfig(epochs=15 if kind == "session_encoder" else 20, batch_size=32, learning_rate=5e-3)
    if name == "tiny":
        model = replace(model, dim=16, num_blocks=1, num_heads=2, head_dim=8, max_tokens=48, dropout=0.0)
        train = replace(
            train, epochs=3, batch_size=16, n_inbatch=32, n_uniform=32, patience=0, progress=False
        )
    elif name == "quick":
        model = replace(model, max_tokens=128 if kind == "session_encoder" else 100)
        train = replace(train, epochs=30, n_inbatch=256, n_uniform=256, patience=4, max_minutes=2.5)
    return EncoderConfig.from_dict(model.to_dict()), train
