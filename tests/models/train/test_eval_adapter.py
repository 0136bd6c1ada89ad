import pytest

from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.splits import protocol_split
from models.scorer import EncoderBudget, FitInput
from models.train.eval_adapter import apply_overrides, build_sasrec, parse_overrides
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


@pytest.mark.parametrize("continue_epochs", [0, 1])
def test_the_retrieval_stage_continues_on_train_and_valid_when_asked(continue_epochs: int) -> None:
    config = SyntheticConfig(num_users=40, num_items=80, num_events=1_500, num_clusters=4, seed=1)
    dataset = generate_synthetic(config)
    split = protocol_split(dataset.events, "leave-last-out", None)
    budget = EncoderBudget(
        preset="tiny",
        epochs=1,
        overrides={"threads": 1, "batch_size": 64},
        continue_epochs=continue_epochs,
    )
    scorer = build_sasrec(FitInput(dataset, split, "leave-last-out", 0, 50, budget, exclude_seen=False))
    assert len(scorer.training.get("continued", [])) == continue_epochs


def test_the_validation_sample_is_the_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train.eval_adapter as adapter

    config = SyntheticConfig(num_users=40, num_items=80, num_events=1_500, num_clusters=4, seed=1)
    dataset = generate_synthetic(config)
    split = protocol_split(dataset.events, "leave-last-out", None)
    seen: list[int] = []
    fit = adapter.fit_encoder

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(args[4].targets))
        return fit(*args, **kwargs)

    monkeypatch.setattr(adapter, "fit_encoder", spy)
    for valid_users in (1000, 5):
        budget = EncoderBudget(preset="tiny", epochs=1, overrides={"threads": 1}, valid_users=valid_users)
        build_sasrec(FitInput(dataset, split, "leave-last-out", 0, 50, budget, exclude_seen=False))
    # every user with a validation target (about one per user), then at most valid_users of them
    assert 30 < seen[0] <= 40 and seen[1] == 5
