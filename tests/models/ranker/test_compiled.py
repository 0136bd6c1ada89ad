import dataclasses

import numpy as np
import pytest
import torch

from models.data.schema import RATING_FUNNEL
from models.export import BACKENDS, available_backend
from models.ranker.compiled import StaticRankerForward, fixed_layout
from models.ranker.grouping import group_layout, serving_groups
from models.ranker.serving import TorchCandidateRanker
from tests.models.ranker.fakes import random_batch, tiny_config, tiny_model
from tests.models.ranker.test_serving import _request, _sources

SOURCES = ("ann", "cooccurrence", "popular")


def _served_batch(num_candidates: int, seed: int = 0, rank_prior: float = 0.0):  # type: ignore[no-untyped-def]
    """One request as serving builds it: hash groups, retrieval ranks, per-source ranks (some absent);
    with the prior on, the match features are on too (the served configuration)."""
    config = tiny_config(
        group_size=4,
        use_retrieval_rank=True,
        candidate_sources=SOURCES,
        rank_prior=rank_prior,
        match_features=rank_prior > 0,
    )
    batch = random_batch(config, batch_size=1, num_candidates=num_candidates, seed=seed)
    valid = torch.ones_like(batch.candidate_item, dtype=torch.bool)
    gen = torch.Generator().manual_seed(seed)
    ranks = torch.randint(-1, 60, (1, num_candidates, len(SOURCES)), generator=gen)
    batch = dataclasses.replace(
        batch,
        group=serving_groups(batch.candidate_item, valid, config.group_size, "item_hash"),
        candidate_rank=torch.arange(num_candidates)[None],
        candidate_source_rank=ranks,
    )
    return config, batch


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("num_candidates", "rank_prior"), [(3, 0.0), (50, 0.0), (123, 0.0), (50, 0.5)])
def test_static_forward_gives_the_eager_logits(backend: str, num_candidates: int, rank_prior: float) -> None:
    config, batch = _served_batch(num_candidates, seed=num_candidates, rank_prior=rank_prior)
    model = tiny_model(config, seed=1)
    if rank_prior:  # heads away from their zero start, so the network's part is compared too
        with torch.no_grad():
            for head in model.heads:
                head[-1].weight.normal_()
            model.match_logits.weight.normal_()
    with torch.inference_mode():
        eager = model(batch).task_logits
        static = StaticRankerForward(model, backend, pad_multiple=50).task_logits(batch)
    assert static.shape == eager.shape == (1, len(config.tasks), num_candidates)
    assert torch.allclose(static, eager, atol=1e-5)


def test_one_export_per_padded_size() -> None:
    config, small = _served_batch(41)
    _, larger = _served_batch(47, seed=1)
    _, other = _served_batch(60, seed=2)
    forward = StaticRankerForward(tiny_model(config), "torchscript", pad_multiple=50)
    with torch.inference_mode():
        for batch in (small, larger, other):
            forward.task_logits(batch)
    assert sorted(size for size, _ in forward.exports.compiled) == [50, 100]


def test_static_forward_refuses_batches_and_unknown_backends() -> None:
    config, batch = _served_batch(10)
    with pytest.raises(ValueError, match="one request"):
        StaticRankerForward(tiny_model(config), "torchscript").task_logits(
            dataclasses.replace(batch, candidate_item=batch.candidate_item.expand(2, -1))
        )
    with pytest.raises(ValueError, match="unknown backend"):
        available_backend("tensorrt")
    assert available_backend("auto") in BACKENDS


def test_fixed_layout_pads_the_group_layout() -> None:
    group = torch.tensor([[0, 1, 0, -1, 1, 2]])
    index, valid = fixed_layout(group, num_groups=4, group_size=3)
    assert index.shape == valid.shape == (1, 4, 3)
    assert valid.sum().item() == 5 and not bool(valid[0, 3].any())
    members = {g: sorted(index[0, g][valid[0, g]].tolist()) for g in range(3)}
    assert members == {0: [0, 2], 1: [1, 4], 2: [5]}
    with pytest.raises(ValueError, match="does not fit"):
        fixed_layout(group, num_groups=2, group_size=3)


@pytest.mark.parametrize("backend", ["auto", "torchscript"])
def test_a_compiled_ranker_serves_the_eager_scores(backend: str) -> None:
    """TorchCandidateRanker: one request through the static forward, batches eagerly, same scores."""
    config = tiny_config(group_size=4, candidate_sources=SOURCES)
    eager = TorchCandidateRanker(tiny_model(config, seed=3), _sources(), RATING_FUNNEL, "v")
    compiled = TorchCandidateRanker(tiny_model(config, seed=3), _sources(), RATING_FUNNEL, "v", backend)
    assert compiled.static is not None and eager.static is None
    history, context = _request(2)
    candidates = np.arange(2, 39)
    ranks = np.random.default_rng(0).integers(-1, 40, size=(len(candidates), len(SOURCES)))
    expected = eager.score(history, context, candidates, ranks)
    assert np.allclose(compiled.score(history, context, candidates, ranks), expected, atol=1e-5)
    pair = compiled.score_batch([history] * 2, [context] * 2, [candidates] * 2, [ranks] * 2)
    assert np.allclose(pair[1], expected, atol=1e-5)


def test_the_packed_serving_layout_equals_the_generic_one() -> None:
    items = torch.randint(2, 40, (1, 37), generator=torch.Generator().manual_seed(5))
    valid = torch.ones_like(items, dtype=torch.bool)
    valid[0, 30:] = False
    group = serving_groups(items, valid, 4, "item_hash")
    index, slots = fixed_layout(group, num_groups=10, group_size=4)  # the numpy path
    reference, reference_slots = group_layout(group)  # the generic torch path

    def members(layout: torch.Tensor, filled: torch.Tensor) -> list[list[int]]:
        return sorted(sorted(layout[0, g][filled[0, g]].tolist()) for g in range(layout.shape[1]))

    packed = members(index, slots)
    assert packed[:2] == [[], []]  # 30 candidates fill 8 of the 10 groups
    assert packed[2:] == members(reference, reference_slots)
