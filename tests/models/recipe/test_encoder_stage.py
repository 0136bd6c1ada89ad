from dataclasses import replace

import torch

from models.data.loaders.synthetic import generate_synthetic
from models.recipe.encoder_stage import train_encoder_variants
from models.recipe.periods import pipeline_periods
from tests.models.recipe.test_recipe import FAST, TINY


def test_variants_trained_side_by_side_are_the_models_a_sequential_run_trains() -> None:
    dataset = generate_synthetic(TINY)
    periods = pipeline_periods(dataset, "next-session")
    settings = replace(FAST, encoder_epochs=2, encoder_variants=({"temperature": 0.1},), progress=False)
    sequential = train_encoder_variants(dataset, periods, settings, 0)
    parallel = train_encoder_variants(dataset, periods, replace(settings, variant_processes=2), 0)
    assert [row["valid_NDCG@10"] for row in parallel.tried] == [
        row["valid_NDCG@10"] for row in sequential.tried
    ]
    assert parallel.overrides == sequential.overrides
    for name, tensor in sequential.result.model.state_dict().items():
        assert torch.equal(tensor, parallel.result.model.state_dict()[name]), name
