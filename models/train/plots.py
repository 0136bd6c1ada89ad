"""Training curves as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_training_curves(histories: dict[str, list[dict[str, float]]], path: Path) -> Path:
    """histories: run name -> per-epoch records (``train_loss``, ``val_NDCG@10``, ...). Writes ``path``."""
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for name, records in histories.items():
        epochs = [r["epoch"] for r in records]
        loss_axis.plot(epochs, [r["train_loss"] for r in records], marker="o", label=name)
        if records and "val_NDCG@10" in records[0]:
            metric_axis.plot(epochs, [r["val_NDCG@10"] for r in records], marker="o", label=name)
    loss_axis.set(title="training loss", xlabel="epoch")
    metric_axis.set(title="validation NDCG@10", xlabel="epoch")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
