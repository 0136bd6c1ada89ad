"""``ensure_default_bundle``: the bundle ``make serve`` starts from, built on first use and reused after.

Steps: prepare the default dataset (ML-1M from the data directory when its files are there, else the
synthetic generator), train the quick encoder and the quick ranker when their code is installed, build the
index and the bundle. Each model stage is optional: when its trainer is not importable the bundle is built
without it and its manifest says which serving path remains (e.g. ``baseline:cooccurrence+popularity``).

A bundle is reused when it was built from the same data (fingerprint) with every stage that is available
now; so adding the encoder package later triggers one rebuild. A file lock keeps two processes (several
uvicorn workers on first start) from training twice.
"""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from models.bundle import MANIFEST, build_bundle, data_fingerprint
from models.data.schema import Dataset

logger = logging.getLogger(__name__)

# Quick trainers: fn(dataset, out_dir, **kwargs) -> (checkpoint path, metrics dict), found lazily; a stage
# whose module is not installed is skipped. The ranker trainer also receives ``encoder_path`` (or None).
QUICK_TRAINERS: dict[str, str] = {
    "encoder": "models.pipeline:train_quick_encoder",  # adapter over models.train.fit below
    "ranker": "models.ranker.quick:train_quick",
}
# The module each stage needs beyond the trainer's own (the adapter lives here, its model elsewhere).
REQUIRED_MODULES: dict[str, str] = {"encoder": "models.train.fit", "ranker": "models.ranker.serving"}
Trainer = Callable[..., tuple[Path, dict[str, Any]]]
QUICK_VALID_USERS = 500
# bumped when what the trainers put into a bundle changes, so older bundles of the same data are rebuilt
# 2: the session encoder folds the request context into item tokens; 3: sources refitted and the encoder
# continued on fit + ranker periods after the choices are made, the ranker a residual on the merged order;
# 4: the merge may be score fusion (chosen on validation); 5: the category source, and the ranker reads
# the candidate-vs-history match features with a longer patience, gated on held-out validation users;
# 6: the ranker's gate cross-fitted over folds of validation users, its learning rate 3e-4; 7: the
# encoder's epoch picked on 5,000 ranker-period targets with patience 8; 8: the encoder kept among the
# preset and its variants (τ 0.1) by the ranker-period targets; 9: the directed ``transitions`` source;
# 10: the merge tuned on up to 4,000 ranker-period requests, the recent-items scoring chosen and stored;
# 11: the ranker served only on a validation gain whose 90% bootstrap interval lies above 1
RECIPE = "served-pipeline-11"
# the first-run budget of the served pipeline (models.evaluate.pipeline.PipelineSettings fields)
QUICK_PIPELINE: dict[str, Any] = {
    "encoder_minutes": 2.5,
    "ranker_epochs": 2,
    "ranker_max_requests": 4000,
    "threads": 2,
    "progress": True,
}
QUICK_RANKER_EVENTS = 4  # ranker-period targets per user for the first bundle (the replay uses 10 / 4)


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # a parent package that has not landed
        return False


def find_trainer(stage: str) -> Trainer | None:
    """The quick trainer for ``stage`` when its code is installed, else None (the stage is skipped)."""
    module_name, function_name = QUICK_TRAINERS[stage].split(":")
    if not (_importable(REQUIRED_MODULES[stage]) and _importable(module_name)):
        return None
    trainer: Trainer | None = getattr(importlib.import_module(module_name), function_name, None)
    return trainer


def train_quick_encoder(dataset: Dataset, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The session encoder's ``quick`` preset (<= 3 min on 2 cores) on a leave-last-out split.

    Validation (HR/NDCG on the held-out events of up to 500 users) picks the epoch; the checkpoint is
    written with ``save_user_encoder`` so ``load_user_encoder`` rebuilds it.
    """
    from models.data.splits import leave_last_out
    from models.encoder.serving import save_user_encoder
    from models.train.fit import fit_encoder, next_item_cases, subsample
    from models.train.presets import preset

    model_config, train = preset("quick", "session_encoder")
    split = leave_last_out(dataset.events)
    train_events = dataset.events.take(split.train)
    valid = next_item_cases(dataset, train_events, dataset.events.take(split.valid))
    started = time.perf_counter()
    result = fit_encoder(dataset, train_events, model_config, train, subsample(valid, QUICK_VALID_USERS, 0))
    seconds = time.perf_counter() - started
    best = next((row for row in result.state.history if row.get("epoch") == result.state.best_epoch), {})
    path = save_user_encoder(
        result.model,
        out_dir / "encoder.pt",
        result.item_category,
        extra={"dataset": dataset.name, "train_seconds": seconds, "metrics": best, "preset": "quick"},
    )
    metrics = {"valid": best, "train_seconds": round(seconds, 1), "best_epoch": result.state.best_epoch}
    return path, metrics


def train_served_pipeline(dataset: Dataset, out_dir: Path) -> tuple[dict[str, Path | None], dict[str, Any]]:
    """The configuration the offline replay measures (``tandem eval --stage pipeline``), at the quick
    budget: session encoder, candidate sources with tuned merge weights, the source-aware ranker and the
    gate that decides whether it is served. Returns the checkpoints and the manifest's ``config.serving``
    (merge, ranker decision, offline metrics of this very run on the held-out test period)."""
    from models.data.defaults import defaults_for
    from models.encoder.serving import save_user_encoder
    from models.evaluate.pipeline import PipelineSettings, run_seed
    from models.evaluate.pipeline_data import pipeline_periods
    from models.ranker.serving import save_ranker

    choices = defaults_for(dataset.events)
    for line in choices.lines():
        logger.info("%s: %s", dataset.name, line)
    protocol = choices.protocol.value
    settings = PipelineSettings(**QUICK_PIPELINE)
    started = time.perf_counter()
    periods = pipeline_periods(dataset, protocol, QUICK_RANKER_EVENTS, choices.exclude_seen.value)
    if len(periods.test) == 0:
        raise ValueError(
            f"{dataset.name}: no test requests under {protocol} (users need two or more events): nothing to "
            f"train and check the served pipeline on. `tandem bundle build --dataset {dataset.name}` builds "
            "the baseline bundle (popularity and co-occurrence)"
        )
    outcome = run_seed(dataset, periods, 0, settings)
    seconds = time.perf_counter() - started
    checkpoints: dict[str, Path | None] = {"encoder": None, "ranker": None}
    if outcome.encoder is not None:
        result = outcome.encoder
        checkpoints["encoder"] = save_user_encoder(
            result.model,
            out_dir / "encoder.pt",
            result.item_category,
            extra={
                "dataset": dataset.name,
                "train_seconds": outcome.seconds.get("encoder"),
                "preset": "quick",
                "overrides": (outcome.encoder_training or {}).get("overrides", {}),
            },
        )
    if outcome.ranker is not None:
        ranker = outcome.ranker
        checkpoints["ranker"] = save_ranker(
            out_dir / "ranker.pt", ranker.model, ranker.sources, ranker.funnel, ranker.version
        )
    serving = {
        "merge": outcome.merge.to_dict(),
        "ranker_served": outcome.ranker_served,
        "recent": outcome.recent,
        "encoder_variants": (outcome.encoder_training or {}).get("variants", []),
        "protocol": protocol,
        "defaults": choices.to_dict(),
        "skipped": outcome.notes,
        "offline": {"test": outcome.metrics, "valid": outcome.valid},
        "seconds": {**outcome.seconds, "total": round(seconds, 1)},
    }
    return checkpoints, serving


def bundle_name(dataset: Dataset, fingerprint: str, stages: list[str]) -> str:
    return f"{dataset.name}-{fingerprint[:12]}-{'+'.join(stages) or 'baseline'}"


def reusable(path: Path, fingerprint: str, stages: list[str]) -> bool:
    """True when ``path`` holds a complete bundle for this data with exactly these model stages."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s: unreadable manifest, rebuilding the bundle", manifest_path)
        return False
    files = manifest.get("files", {})
    has_stages = [stage for stage in ("encoder", "ranker") if files.get(stage)]
    recipe = manifest.get("config", {}).get("recipe")
    return (
        manifest.get("data_fingerprint") == fingerprint
        and has_stages == stages
        and (recipe == RECIPE or not stages)
        and all((path / relative).exists() for relative in files.values() if relative)
    )


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _Steps:
    """A tqdm bar over the pipeline's steps that logs each step's wall time."""

    def __init__(self, names: list[str], progress: bool):
        self.bar = tqdm(total=len(names), desc="default bundle", unit="step", disable=not progress)
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        started = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - started, 3)
        logger.info("pipeline step %s took %.1fs", name, self.timings[name])
        self.bar.update(1)


def _prepared(
    data_dir: str | Path | None, root: Path, dataset: Dataset | None, stages: tuple[str, ...] | None
) -> tuple[Dataset, str, dict[str, Trainer | None], Path]:
    """(dataset, fingerprint, trainer per stage, target bundle path); ``stages`` None = every installed."""
    if dataset is None:
        from models.data.datasets import default_dataset

        dataset = default_dataset(data_dir, cache_dir=root / "data")
    fingerprint = data_fingerprint(dataset)
    trainers = {
        stage: find_trainer(stage) if stages is None or stage in stages else None
        for stage in ("encoder", "ranker")
    }
    names = [stage for stage, trainer in trainers.items() if trainer is not None]
    return dataset, fingerprint, trainers, root / "bundles" / bundle_name(dataset, fingerprint, names)


def default_bundle_if_built(
    data_dir: str | Path | None = None,
    root: str | Path = "var",
    *,
    dataset: Dataset | None = None,
    stages: tuple[str, ...] | None = None,
) -> Path | None:
    """The default bundle with these ``stages`` (None = every installed one, ``()`` = the baseline) when it
    is already built for this data, else None. Prepares (or reads the cached) dataset to know its
    fingerprint; never trains and takes no lock, so it answers while another process is building."""
    root = Path(root)
    _, fingerprint, trainers, target = _prepared(data_dir, root, dataset, stages)
    names = [stage for stage, trainer in trainers.items() if trainer is not None]
    return target if reusable(target, fingerprint, names) else None


def ensure_default_bundle(
    data_dir: str | Path | None = None,
    root: str | Path = "var",
    *,
    dataset: Dataset | None = None,
    progress: bool = True,
    stages: tuple[str, ...] | None = None,
) -> Path:
    """Path of a valid bundle for the default dataset under ``root/bundles``, building it if needed.

    ``dataset`` skips preparation (tests pass a tiny synthetic one). ``stages`` limits the model stages
    trained (``()`` = the baseline bundle, built in seconds; None = every installed stage). Idempotent: a
    second call with the same data and the same stages returns the first call's bundle without work.
    """
    root = Path(root)
    bundles = root / "bundles"
    with _locked(bundles / ".lock"):
        steps = _Steps(["prepare data", "train encoder", "train ranker", "build bundle"], progress)
        with steps.step("prepare data"):
            dataset, fingerprint, trainers, target = _prepared(data_dir, root, dataset, stages)
        stages_built = [stage for stage, trainer in trainers.items() if trainer is not None]
        if reusable(target, fingerprint, stages_built):
            steps.bar.close()
            logger.info("reusing bundle %s", target)
            return target
        work = root / "work" / target.name
        metrics: dict[str, Any] = {}
        serving: dict[str, Any] | None = None
        checkpoints: dict[str, Path | None] = {"encoder": None, "ranker": None}
        if stages_built == ["encoder", "ranker"]:
            with steps.step("train encoder"), steps.step("train ranker"):
                checkpoints, serving = train_served_pipeline(dataset, work)
                metrics = {"pipeline": serving["offline"]}
        else:
            for stage in ("encoder", "ranker"):
                with steps.step(f"train {stage}"):
                    trainer = trainers[stage]
                    if trainer is None:
                        logger.info(
                            "%s stage skipped (not asked for, or %s not installed)",
                            stage,
                            QUICK_TRAINERS[stage],
                        )
                        continue
                    extra = {"encoder_path": checkpoints["encoder"]} if stage == "ranker" else {}
                    checkpoints[stage], metrics[stage] = trainer(dataset, work / stage, **extra)
        with steps.step("build bundle"):
            config: dict[str, Any] = {
                "pipeline": "default",
                "recipe": RECIPE,
                "stages": stages_built,
                "step_seconds": steps.timings,
            }
            if serving is not None:
                config["serving"] = serving
            path = build_bundle(
                dataset,
                target,
                encoder_path=checkpoints["encoder"],
                ranker_path=checkpoints["ranker"],
                metrics=metrics,
                config=config,
                overwrite=True,
            )
        steps.bar.close()
        shutil.rmtree(work, ignore_errors=True)
        logger.info("built bundle %s in %.1fs", path, sum(steps.timings.values()))
        return path


def latest_bundle(root: str | Path = "var", dataset: str | None = None) -> Path | None:
    """The most recently built complete bundle under ``root/bundles`` (by manifest time), or None;
    ``dataset``: only bundles built from the dataset of that name (their manifest says so)."""
    candidates = [
        path
        for path in (Path(root) / "bundles").glob("*")
        if path.is_dir() and not path.name.startswith(".") and (path / MANIFEST).is_file()
    ]
    if dataset is not None:
        candidates = [path for path in candidates if _manifest_dataset(path) == dataset]
    return max(candidates, key=lambda path: (path / MANIFEST).stat().st_mtime, default=None)


def _manifest_dataset(path: Path) -> str | None:
    try:
        name = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("dataset")
    except (OSError, json.JSONDecodeError):
        return None
    return name if isinstance(name, str) else None
