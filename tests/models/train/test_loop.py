"""The shared epoch loop's rules, on a stand-in model whose only weight records the epoch that last
trained it, with scripted losses and validation scores."""

import copy

import pytest
import torch

from models.train.loop import LoopSettings, TrainState, improved, run_epochs, should_stop


class Scripted:
    """Epoch e trains the model to weight e and reports losses[e - 1]; validation reports scores[e - 1]."""

    def __init__(self, losses: list[float], scores: list[float] | None = None) -> None:
        self.losses, self.scores = losses, scores
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.trained: list[int] = []

    def batches(self, epoch: int) -> list[int]:
        return [epoch]

    def step(self, epoch: int) -> float:
        self.trained.append(epoch)
        with torch.no_grad():
            self.model.weight.fill_(epoch)
        return self.losses[epoch - 1]

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        assert not model.training  # validation sees the model in eval mode
        assert self.scores is not None
        return {"NDCG@10": self.scores[int(model.weight.item()) - 1], "HR@10": 0.5}

    def run(self, settings: LoopSettings, **kwargs) -> TrainState:
        validate = self.validate if self.scores is not None else None
        return run_epochs(self.model, self.batches, self.step, settings, validate, **kwargs)

    def weight(self) -> int:
        return int(self.model.weight.item())


def settings(**changes) -> LoopSettings:
    return LoopSettings(**{"epochs": 10, "patience": 3, "min_epochs": 1, "progress": False, **changes})


def test_a_flat_zero_validation_never_stops_training_before_min_epochs() -> None:
    run = Scripted(losses=[1.0] * 10, scores=[0.0] * 10)
    state = run.run(settings(patience=1, min_epochs=4))
    assert run.trained == [1, 2, 3, 4]  # patience ran out after epoch 2, but 4 epochs come first
    assert state.best_epoch == 1 and run.weight() == 1


def test_an_equal_score_goes_to_the_lower_training_loss() -> None:
    falling = Scripted(losses=[3.0, 2.0, 1.0], scores=[0.0, 0.0, 0.0])
    assert falling.run(settings(epochs=3)).best_epoch == 3 and falling.weight() == 3
    rising = Scripted(losses=[1.0, 2.0, 3.0], scores=[0.0, 0.0, 0.0])
    assert rising.run(settings(epochs=3)).best_epoch == 1 and rising.weight() == 1
    better = Scripted(losses=[1.0, 9.0], scores=[0.1, 0.2])
    assert better.run(settings(epochs=2)).best_epoch == 2  # a higher score wins whatever the loss


def test_patience_stops_and_the_best_epoch_is_restored() -> None:
    run = Scripted(losses=[1.0] * 10, scores=[0.1, 0.5, 0.2, 0.3, 0.4, 0.9, 1.0, 1.0, 1.0, 1.0])
    state = run.run(settings(patience=3))
    assert run.trained == [1, 2, 3, 4, 5]  # three epochs without beating 0.5
    assert state.best_epoch == 2 and state.best_score == 0.5 and run.weight() == 2
    assert [r["val_NDCG@10"] for r in state.history] == [0.1, 0.5, 0.2, 0.3, 0.4]
    assert set(state.history[0]) == {
        "epoch",
        "train_loss",
        "epoch_seconds",
        "epoch_cpu_seconds",
        "val_NDCG@10",
        "val_HR@10",
    }
    assert not run.model.training


def test_patience_zero_never_stops() -> None:
    run = Scripted(losses=[1.0] * 6, scores=[0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    state = run.run(settings(epochs=6, patience=0))
    assert run.trained == [1, 2, 3, 4, 5, 6] and state.best_epoch == 1 and run.weight() == 1


def test_without_validation_the_lowest_training_loss_is_kept() -> None:
    run = Scripted(losses=[3.0, 1.0, 2.0])
    state = run.run(settings(epochs=3))
    assert state.best_epoch == 2 and run.weight() == 2
    assert all(not k.startswith("val_") for k in state.history[0])


def test_resume_continues_from_a_saved_state() -> None:
    saved: list[tuple[TrainState, dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []
    first = Scripted(losses=[1.0] * 4, scores=[0.3, 0.1, 0.2, 0.4])

    def checkpoint(state: TrainState, best: dict[str, torch.Tensor]) -> None:
        saved.append((copy.deepcopy(state), copy.deepcopy(best), copy.deepcopy(first.model.state_dict())))

    first.run(settings(epochs=2), after_epoch=checkpoint)
    state, best, current = saved[-1]
    assert state.epoch == 2 and state.best_epoch == 1 and best["weight"].item() == 1.0

    again = Scripted(losses=[1.0] * 4, scores=[0.3, 0.1, 0.2, 0.4])
    again.model.load_state_dict(current)
    resumed = again.run(settings(epochs=4), state=copy.deepcopy(state), best_weights=best)
    assert again.trained == [3, 4]  # the saved epochs are not run again
    assert [r["epoch"] for r in resumed.history] == [1.0, 2.0, 3.0, 4.0]
    assert resumed.history[:2] == state.history
    assert resumed.best_epoch == 4 and again.weight() == 4

    stale = Scripted(losses=[1.0] * 3, scores=[0.3, 0.1, 0.2])
    stale.model.load_state_dict(current)
    kept = stale.run(settings(epochs=3), state=copy.deepcopy(state), best_weights=best)
    assert kept.best_epoch == 1 and stale.weight() == 1  # the best weights came from the saved run


def test_no_epoch_starts_that_would_overrun_the_time_budget() -> None:
    run = Scripted(losses=[1.0] * 10, scores=[float(e) for e in range(10)])
    run.run(settings(max_minutes=1e-9))
    assert run.trained == [1]


def test_steps_without_anything_to_learn_do_not_count_in_the_loss() -> None:
    model = torch.nn.Linear(1, 1)
    losses = iter([None, 2.0, None, 4.0])
    state = run_epochs(model, lambda epoch: [0, 1, 2, 3], lambda _: next(losses), settings(epochs=1))
    assert state.history[0]["train_loss"] == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("epoch", "best_epoch", "patience", "min_epochs", "stop"),
    [(3, 1, 2, 4, False), (4, 1, 2, 4, True), (4, 3, 2, 4, False), (10, 1, 0, 1, False)],
)
def test_stop_rule(epoch: int, best_epoch: int, patience: int, min_epochs: int, stop: bool) -> None:
    assert should_stop(epoch, best_epoch, settings(patience=patience, min_epochs=min_epochs)) is stop


def test_improvement_rule_reads_the_monitored_metric() -> None:
    state = TrainState(best_epoch=1, best_score=0.2, best_loss=5.0)
    assert improved({"val_HR@10": 0.3, "val_NDCG@10": 0.1, "train_loss": 9.0}, state, monitor="HR@10")
    assert not improved({"val_HR@10": 0.3, "val_NDCG@10": 0.1, "train_loss": 9.0}, state)


class Averaged(Scripted):
    """Step e sets the weight to e (its raw value); validation records the weight it is shown."""

    def __init__(self) -> None:
        super().__init__(losses=[1.0] * 10)
        self.shown: list[float] = []
        self.started_from: list[float] = []

    def step(self, epoch: int) -> float:
        self.started_from.append(float(self.model.weight.item()))
        return super().step(epoch)

    def validate(self, model: torch.nn.Module) -> dict[str, float]:
        self.shown.append(float(model.weight.item()))
        return {"NDCG@10": float(model.weight.item())}  # the larger the weight, the better


def test_weight_average_is_validated_kept_and_raw_weights_go_on_training() -> None:
    run = Averaged()
    with torch.no_grad():
        run.model.weight.fill_(0.0)
    state = run_epochs(run.model, run.batches, run.step, settings(epochs=3, average_decay=0.5), run.validate)
    # avg_e = 0.5 avg_{e-1} + 0.5 e from avg_0 = 0: 0.5, 1.25, 2.125
    assert run.shown == pytest.approx([0.5, 1.25, 2.125])
    assert run.started_from == [0.0, 1.0, 2.0]  # each epoch starts from the raw weights, not the average
    assert state.best_epoch == 3 and run.model.weight.item() == pytest.approx(2.125)


def test_weight_average_decay_must_lie_strictly_between_0_and_1() -> None:
    run = Averaged()
    with pytest.raises(ValueError, match="average_decay"):
        run_epochs(run.model, run.batches, run.step, settings(epochs=1, average_decay=1.0), run.validate)
