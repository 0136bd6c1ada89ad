"""A tiny dataset and a pipeline trained on it by the real recipe (tiny presets, a few seconds), written once
per session: what the bundle tests save, load, damage and replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.bundle.write import write_bundle
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from models.data.schema import Dataset
from models.evaluate.replay import replay_trained
from models.recipe.periods import PipelinePeriods, pipeline_periods
from models.recipe.settings import RecipeSettings
from models.recipe.train import train_pipeline
from models.recipe.trained import TrainedPipeline

TINY = SyntheticConfig(num_users=60, num_items=250, num_events=4_000, num_clusters=8, seed=5)
TINY_RECIPE = RecipeSettings.full(
    encoder_preset="tiny",
    encoder_epochs=2,
    encoder_variants=(),
    ranker_preset="tiny",
    ranker_epochs=1,
    ranker_min_steps=0,
    total=40,
    progress=False,
)


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return generate_synthetic(TINY)


@pytest.fixture(scope="session")
def periods(dataset: Dataset) -> PipelinePeriods:
    return pipeline_periods(dataset, "next-session", TINY_RECIPE.ranker_events)


@pytest.fixture(scope="session")
def trained(dataset: Dataset, periods: PipelinePeriods) -> TrainedPipeline:
    return train_pipeline(dataset, periods, 0, TINY_RECIPE)


@pytest.fixture(scope="session")
def trained_bundle(
    dataset: Dataset,
    periods: PipelinePeriods,
    trained: TrainedPipeline,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    offline = {"test": replay_trained(trained, periods.test).metrics, "valid": trained.valid}
    return write_bundle(trained, dataset, tmp_path_factory.mktemp("trained") / "bundle", offline=offline)
