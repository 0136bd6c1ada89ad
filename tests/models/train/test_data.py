from dataclasses import replace

import numpy as np

from models.data.schema import RATING_FUNNEL, Action, Dataset
from models.train.data import encoder_config_for, request_items_for
from models.train.presets import preset


def as_rating_log(dataset: Dataset) -> Dataset:
    """The same events relabelled as explicit ratings (a MovieLens-like log with no requests)."""
    events = replace(dataset.events, action=np.full_like(dataset.events.action, int(Action.RATE)))
    return replace(dataset, events=events, funnel=RATING_FUNNEL)


def test_commerce_log_keeps_session_chunks(tiny_synthetic: Dataset) -> None:
    model, _ = preset("tiny", "session_encoder")
    config = encoder_config_for(tiny_synthetic, model)
    assert request_items_for(tiny_synthetic) == 20
    assert config.max_items_per_session == 20
    assert config.item_query_weight == model.item_query_weight > 0
    assert config.item_side_info


def test_rating_log_makes_each_rating_a_request(tiny_synthetic: Dataset) -> None:
    ratings = as_rating_log(tiny_synthetic)
    model, _ = preset("tiny", "session_encoder")
    config = encoder_config_for(ratings, model)
    assert config.max_items_per_session == 1
    assert config.item_query_weight == 0.0
    assert not config.item_side_info


def test_explicit_request_size_is_kept(tiny_synthetic: Dataset) -> None:
    model, _ = preset("tiny", "session_encoder")
    config = encoder_config_for(as_rating_log(tiny_synthetic), replace(model, max_items_per_session=5))
    assert config.max_items_per_session == 5


def test_rating_log_folds_context_into_item_tokens(tiny_synthetic: Dataset) -> None:
    model, _ = preset("quick", "session_encoder")
    config = encoder_config_for(as_rating_log(tiny_synthetic), model)
    assert config.folded and config.max_tokens == model.max_tokens // 2  # the same ratings, half the tokens
    old = encoder_config_for(as_rating_log(tiny_synthetic), replace(model, fold_context=False))
    assert not old.folded and old.max_tokens == model.max_tokens
    commerce = encoder_config_for(tiny_synthetic, model)  # 20 items per request: two-token layout
    assert not commerce.folded and commerce.max_tokens == model.max_tokens
