import pytest

from models.train.eval_adapter import apply_overrides, parse_overrides
from models.train.presets import preset


def test_overrides_reach_both_configs() -> None:
    model, train = preset("tiny", "session_encoder")
    values = parse_overrides('{"max_items_per_session": 1, "learning_rate": 0.01}')
    model, train = apply_overrides(model, train, values)
    assert model.max_items_per_session == 1
    assert train.learning_rate == 0.01


def test_empty_overrides_change_nothing() -> None:
    model, train = preset("tiny", "hstu")
    assert apply_overrides(model, train, parse_overrides("")) == (model, train)


def test_unknown_override_is_an_error() -> None:
    model, train = preset("tiny", "hstu")
    with pytest.raises(ValueError, match="no_such_field"):
        apply_overrides(model, train, {"no_such_field": 1})


def test_overrides_must_be_a_json_object() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        parse_overrides("[1, 2]")
