"""Evaluation reports: markdown table, JSON and a PNG bar plot, side by side (``<out>.md/.json/.png``).

JSON layout: {"command", "commit", "machine", "dataset", "protocol", "users", "seeds",
"models": {name: {metric: seed mean}}, "std": {name: {metric: seed std}}, "train_seconds": {name: s},
"training": {name: [{"seed", "epochs", "best_epoch", "history": [per-epoch records]}]}} (trained models only).
Trained models also get ``<out>-curves.png`` (training loss and validation NDCG@10 by epoch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.reporting.files import write_report
from models.reporting.provenance import git_commit, machine_description, machine_info


@dataclass
class EvalReport:
    command: str
    dataset: str
    protocol: str
    metrics: tuple[str, ...]
    users: int = 0
    seeds: list[int] = field(default_factory=list)
    per_seed: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # model -> one dict per seed
    train_seconds: dict[str, list[float]] = field(default_factory=dict)
    training: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # model -> one run per seed
    notes: list[str] = field(default_factory=list)
    # rows kept from an earlier report of the same dataset/protocol/seeds (``carry_from``): model -> row
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)
    # taken when the evaluation starts: the code that trained the models, not what HEAD is at write time
    commit: str = field(default_factory=lambda: git_commit())
    # row name -> what the row is ("source", "merged", "ranker", "pipeline", "ceiling"); empty for tables
    # of models
    kinds: dict[str, str] = field(default_factory=dict)
    title: str = "Retrieval evaluation"
    extra: dict[str, Any] = field(default_factory=dict)  # more top-level JSON fields (settings, decisions)

    def add(
        self,
        model: str,
        metrics: dict[str, float],
        train_seconds: float,
        training: dict[str, Any] | None = None,
    ) -> None:
        """One seed's result; ``training``: {"seed", "epochs", "best_epoch", "history"} of a trained model."""
        self.per_seed.setdefault(model, []).append(metrics)
        self.train_seconds.setdefault(model, []).append(train_seconds)
        if training is not None:
            self.training.setdefault(model, []).append(training)

    def carry_from(self, previous: dict[str, Any], rerun: list[str]) -> None:
        """Keep the rows of an earlier report's JSON for models not in ``rerun`` (``tandem eval --append``).
        The earlier report must cover the same dataset, protocol, seeds and request count."""
        for key in ("dataset", "protocol", "seeds", "users"):
            if previous.get(key) != getattr(self, key):
                raise ValueError(
                    f"--append: earlier report has {key}={previous.get(key)!r}, not {getattr(self, key)!r}"
                )
        kept = [m for m in previous["models"] if m not in rerun]
        for model in kept:
            self.carried[model] = {
                "mean": previous["models"][model],
                "std": previous["std"][model],
                "train_seconds": previous["train_seconds"][model],
                "training": previous.get("training", {}).get(model, []),
            }
        if kept:
            self.notes.append(
                f"Rows {', '.join(kept)} are carried from an earlier run: `{previous['command']}` "
                f"(commit {previous['commit']})."
            )

    def _over_seeds(self, statistic: Any, carried_key: str) -> dict[str, dict[str, float]]:
        """Carried rows' ``carried_key`` entry, then ``statistic`` over the seeds of each fresh model."""
        fresh = {
            m: {k: float(statistic([r[k] for r in runs])) for k in self.metrics}
            for m, runs in self.per_seed.items()
        }
        return {**{m: row[carried_key] for m, row in self.carried.items()}, **fresh}

    def means(self) -> dict[str, dict[str, float]]:
        return self._over_seeds(np.mean, "mean")

    def stds(self) -> dict[str, dict[str, float]]:
        return self._over_seeds(np.std, "std")

    def seconds(self) -> dict[str, float]:
        fresh = {m: float(np.mean(s)) for m, s in self.train_seconds.items()}
        return {**{m: float(row["train_seconds"]) for m, row in self.carried.items()}, **fresh}

    def runs(self) -> dict[str, list[dict[str, Any]]]:
        carried = {m: row["training"] for m, row in self.carried.items() if row["training"]}
        return {**carried, **self.training}

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "commit": self.commit,
            "machine": machine_description(),
            "machine_info": machine_info(),
            "dataset": self.dataset,
            "protocol": self.protocol,
            "users": self.users,
            "seeds": self.seeds,
            "models": self.means(),
            "std": self.stds(),
            "train_seconds": self.seconds(),
            "training": self.runs(),
            "notes": self.notes,
            **self.rows_json(),
            **self.extra,
        }

    def rows_json(self) -> dict[str, Any]:
        """``{"rows": {name: {"kind", "metrics": {metric: {"mean", "std"}}}}}`` when rows have kinds."""
        if not self.kinds:
            return {}
        means, stds = self.means(), self.stds()
        return {
            "rows": {
                name: {
                    "kind": self.kinds.get(name, "model"),
                    "metrics": {k: {"mean": means[name][k], "std": stds[name][k]} for k in self.metrics},
                }
                for name in means
            }
        }

    def markdown(self) -> str:
        means, stds = self.means(), self.stds()
        header = "| model | " + " | ".join(self.metrics) + " | train s |"
        if self.kinds:
            header = "| row | kind | " + " | ".join(self.metrics) + " | train s |"
        lines = [
            f"# {self.title}: {self.dataset}, {self.protocol}",
            "",
            f"Command: `{self.command}`  ",
            f"Requests scored: {self.users:,}; seeds: {', '.join(map(str, self.seeds))} "
            "(mean ± std over seeds)  ",
            f"Commit: {self.commit}; machine: {machine_description()}",
            "",
            header,
            "|" + "---|" * (len(self.metrics) + 2 + bool(self.kinds)),
        ]
        seconds = self.seconds()
        for model in means:
            cells = [f"{means[model][k]:.4f} ± {stds[model][k]:.4f}" for k in self.metrics]
            kind = f"{self.kinds.get(model, 'model')} | " if self.kinds else ""
            lines.append(f"| {model} | {kind}" + " | ".join(cells) + f" | {seconds[model]:.1f} |")
        runs_by_model = self.runs()
        if runs_by_model:
            lines.append("")
        for model, runs in runs_by_model.items():
            epochs = ", ".join(_epochs_text(r) for r in runs)
            lines.append(f"Epochs, {model}: {epochs}  ")
        lines += ["", *self.notes] if self.notes else []
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> list[Path]:
        """Writes out.md, out.json and out.png (plus out-curves.png for trained models); returns the paths."""
        means, stds, title = self.means(), self.stds(), f"{self.dataset} · {self.protocol}"

        def plot(png: Path) -> None:
            plot_metrics(means, stds, self.metrics, title, png)

        written = write_report(out, self.as_json(), self.markdown(), plot)
        paths = [written["md"], written["json"], written["png"]]
        curves = {
            f"{model} seed {run['seed']}": run["history"]
            for model, runs in self.runs().items()
            for run in runs
            if run["history"]
        }
        if curves:
            from models.train.plots import plot_training_curves

            png = written["png"]
            paths.append(plot_training_curves(curves, png.with_name(f"{png.stem}-curves.png")))
        return paths


def plot_metrics(
    means: dict[str, dict[str, float]],
    stds: dict[str, dict[str, float]],
    metrics: tuple[str, ...],
    title: str,
    path: Path,
) -> None:
    """Grouped bars: one group per metric, one bar per model, seed std as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(means)
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(metrics)), 4.0))
    for i, model in enumerate(models):
        heights = [means[model][k] for k in metrics]
        errors = [stds[model][k] for k in metrics]
        ax.bar(x + (i - (len(models) - 1) / 2) * width, heights, width, yerr=errors, label=model, capsize=2)
    ax.set_xticks(x, metrics, rotation=30, ha="right")
    ax.set_ylabel("mean over users")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _epochs_text(run: dict[str, Any]) -> str:
    """One run's training record -> e.g. 'seed 0: best 16 of 19 (212 s to reach it), then 1 on train +
    valid'."""
    text = f"seed {run['seed']}: best {run['best_epoch']} of {run['epochs']}"
    history = run.get("history") or []
    if history and run["best_epoch"]:
        to_best = sum(float(r.get("epoch_seconds", 0.0)) for r in history[: int(run["best_epoch"])])
        text += f" ({to_best:.0f} s to reach it)"
    if run.get("continued"):
        text += f", then {len(run['continued'])} on train + valid"
    return text
