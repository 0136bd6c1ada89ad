"""The default bundle ``make serve`` starts from: built on first use by its own process, reused after.

Two kinds, both for the default dataset (ML-1M from the data directory when its files are there, else the
synthetic generator): the **baseline** bundle (``stages=()``: the encoder-free sources fitted on all
events, the untuned merge; seconds) and the **full** one (the recipe's ``quick`` preset: session encoder,
tuned merge, ranker and its gate, written as fitted with the replay's offline numbers; minutes).

A bundle is reused when it was built from the same data (fingerprint) by the same recipe; a file lock keeps
two processes from building the same one twice.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from models.bundle.format import MANIFEST, Manifest
from models.bundle.write import data_fingerprint, sources_only, write_bundle
from models.data.schema import Dataset
from models.recipe.settings import RECIPE, RecipeSettings

logger = logging.getLogger(__name__)


def default_settings(progress: bool = True) -> RecipeSettings:
    """The first-run bundle's recipe: the ``quick`` preset."""
    return RecipeSettings.quick(progress=progress)


def bundle_name(dataset: Dataset, fingerprint: str, full: bool) -> str:
    return f"{dataset.name}-{fingerprint[:12]}-{'pipeline' if full else 'baseline'}"


def reusable(path: Path, fingerprint: str, full: bool) -> bool:
    """True when ``path`` holds a complete bundle for this data, of this kind, by this recipe."""
    if not (path / MANIFEST).is_file():
        return False
    try:
        manifest = Manifest.read(path)
    except (ValueError, TypeError, KeyError) as error:  # older format, unreadable: rebuilt
        logger.warning("%s: %s; rebuilding the bundle", path, error)
        return False
    return (
        manifest.data_fingerprint == fingerprint
        and (manifest.recipe == RECIPE) == full
        and all((path / relative).exists() for relative in manifest.files.values() if relative)
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


def train_default(
    dataset: Dataset, settings: RecipeSettings, progress: bool = True
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The recipe at ``settings`` on ``dataset`` with the data's own protocol, replayed on its test period.
    -> (TrainedPipeline, offline numbers {"test", "valid"}, build facts for the manifest)."""
    from models.data.defaults import defaults_for
    from models.evaluate.replay import replay_trained
    from models.recipe.periods import pipeline_periods
    from models.recipe.train import train_pipeline

    choices = defaults_for(dataset.events)
    for line in choices.lines():
        logger.info("%s: %s", dataset.name, line)
    protocol = choices.protocol.value
    periods = pipeline_periods(
        dataset, protocol, settings.ranker_events, choices.exclude_seen.value, settings.ranker_windows
    )
    if len(periods.test) == 0:
        raise ValueError(
            f"{dataset.name}: no test requests under {protocol} (users need two or more events): nothing to "
            f"train and check the served pipeline on. `tandem bundle build --dataset {dataset.name}` builds "
            "the baseline bundle (the encoder-free sources)"
        )
    trained = train_pipeline(dataset, periods, 0, settings)
    replayed = replay_trained(trained, periods.test, progress)
    offline = {"test": replayed.metrics, "valid": trained.valid}
    facts = {"defaults": choices.to_dict(), "settings": _settings_facts(settings)}
    return trained, offline, facts


def _settings_facts(settings: RecipeSettings) -> dict[str, Any]:
    return {k: v for k, v in vars(settings).items() if k not in ("progress",)}


def _prepared(
    data_dir: str | Path | None, root: Path, dataset: Dataset | None, full: bool
) -> tuple[Dataset, str, Path]:
    """(dataset, fingerprint, target bundle path)."""
    if dataset is None:
        from models.data.datasets import default_dataset

        dataset = default_dataset(data_dir, cache_dir=root / "data")
    fingerprint = data_fingerprint(dataset)
    return dataset, fingerprint, root / "bundles" / bundle_name(dataset, fingerprint, full)


def default_bundle_if_built(
    data_dir: str | Path | None = None,
    root: str | Path = "var",
    *,
    dataset: Dataset | None = None,
    stages: tuple[str, ...] | None = None,
) -> Path | None:
    """The default bundle (``stages=()``: the baseline one) when it is already built for this data, else
    None. Prepares (or reads the cached) dataset to know its fingerprint; never trains and takes no lock,
    so it answers while another process is building."""
    full = stages != ()
    _, fingerprint, target = _prepared(data_dir, Path(root), dataset, full)
    return target if reusable(target, fingerprint, full) else None


def ensure_default_bundle(
    data_dir: str | Path | None = None,
    root: str | Path = "var",
    *,
    dataset: Dataset | None = None,
    progress: bool = True,
    stages: tuple[str, ...] | None = None,
    settings: RecipeSettings | None = None,
) -> Path:
    """Path of a valid default bundle under ``root/bundles``, building it if needed.

    ``dataset`` skips preparation (tests pass a tiny synthetic one). ``stages=()``: the baseline bundle
    (seconds); None: the full recipe at ``settings`` (default: ``default_settings``, the ``quick``
    preset). Idempotent: a second call with the same data returns the first call's bundle without work.
    """
    root = Path(root)
    full = stages != ()
    with _locked(root / "bundles" / ".lock"):
        bar = tqdm(total=2, desc="default bundle", unit="step", disable=not progress)
        started = time.perf_counter()
        bar.set_postfix_str("prepare data")
        dataset, fingerprint, target = _prepared(data_dir, root, dataset, full)
        bar.update(1)
        if reusable(target, fingerprint, full):
            bar.close()
            logger.info("reusing bundle %s", target)
            return target
        bar.set_postfix_str("train" if full else "fit sources")
        prepare_seconds = round(time.perf_counter() - started, 3)
        if full:
            chosen = settings or default_settings(progress)
            trained, offline, facts = train_default(dataset, chosen, progress)
            recipe: str | None = RECIPE
        else:
            trained, offline, facts, recipe = sources_only(dataset), {}, {}, None
        facts["step_seconds"] = {
            "prepare data": prepare_seconds,
            "train": round(time.perf_counter() - started - prepare_seconds, 3),
        }
        path = write_bundle(
            trained, dataset, target, offline=offline, recipe=recipe, training=facts, overwrite=True
        )
        bar.update(1)
        bar.close()
        logger.info("built bundle %s in %.1fs", path, time.perf_counter() - started)
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
        return Manifest.read(path).dataset
    except (OSError, ValueError, TypeError, KeyError):
        return None
