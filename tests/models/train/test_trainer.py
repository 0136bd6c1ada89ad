from models.train.trainer import TrainConfig, TrainState, improved, should_stop


def test_a_flat_zero_score_is_broken_by_the_training_loss() -> None:
    state = TrainState(best_epoch=1, best_score=0.0, best_loss=5.0)
    assert improved({"val_NDCG@10": 0.0, "train_loss": 4.0}, state)
    assert not improved({"val_NDCG@10": 0.0, "train_loss": 6.0}, state)
    assert improved({"val_NDCG@10": 0.01, "train_loss": 9.0}, state)
    assert not improved({"val_NDCG@10": -0.01, "train_loss": 1.0}, state)


def test_without_validation_the_loss_decides() -> None:
    state = TrainState(best_epoch=1, best_score=-5.0, best_loss=5.0)
    assert improved({"train_loss": 4.0}, state)
    assert not improved({"train_loss": 5.5}, state)


def test_early_stopping_waits_for_min_epochs_and_patience() -> None:
    train = TrainConfig(patience=2, min_epochs=4)
    assert not should_stop(3, 1, train)  # patience ran out, but only 3 epochs
    assert should_stop(4, 1, train)
    assert not should_stop(4, 3, train)  # improved one epoch ago
    assert not should_stop(10, 1, TrainConfig(patience=0))  # 0 = never stop
