import dataclasses

import pytest
import torch

from models.ranker.config import preset
from models.ranker.grouping import serving_groups
from models.ranker.model import OnePieceRanker
from models.ranker.tokens import RankerBatch
from tests.models.ranker.fakes import random_batch, tiny_config, tiny_model


def _scores(model: OnePieceRanker, batch: RankerBatch) -> torch.Tensor:
    with torch.inference_mode():
        return model.serving_score(model(batch).task_logits)


def test_cached_forward_matches_the_full_sequence_reference() -> None:
    config = tiny_config(group_size=3, reasoning_steps=2)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=2, num_candidates=7)
    batch.group[1, 5:] = -1  # padding candidates
    with torch.inference_mode():
        fast = model(batch).task_logits
        reference = model.forward_reference(batch).task_logits
    assert fast.shape == (2, len(config.tasks), 7)
    valid = batch.group >= 0  # padding candidates' outputs are unspecified
    assert torch.allclose(fast.transpose(1, 2)[valid], reference.transpose(1, 2)[valid], atol=1e-5)


def test_group_size_one_scores_each_candidate_independently() -> None:
    config = tiny_config(group_size=1, reasoning_steps=2)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=1, num_candidates=9)
    scores = _scores(model, batch)[0]
    permutation = torch.tensor([4, 0, 8, 2, 6])  # a permutation of a subset: others dropped
    smaller = dataclasses.replace(
        batch,
        candidate_item=batch.candidate_item[:, permutation],
        group=serving_groups(
            batch.candidate_item[:, permutation], torch.ones(1, 5, dtype=torch.bool), 1, "retrieval_order"
        ),
    )
    assert torch.allclose(_scores(model, smaller)[0], scores[permutation], atol=1e-5)


def test_candidates_see_their_group_and_no_other() -> None:
    config = tiny_config(group_size=3, reasoning_steps=1)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=1, num_candidates=6)  # groups {0,1,2} {3,4,5}
    before = _scores(model, batch)[0]
    changed_item = batch.candidate_item.clone()
    changed_item[0, 4] = 2 if int(changed_item[0, 4]) != 2 else 3
    after = _scores(model, dataclasses.replace(batch, candidate_item=changed_item))[0]
    assert torch.allclose(after[:3], before[:3], atol=1e-6)  # other group: unchanged
    assert bool((after[[3, 5]] != before[[3, 5]]).all())  # same group: changed


def test_serving_grouping_is_deterministic_and_permutation_invariant() -> None:
    config = tiny_config(group_size=4, reasoning_steps=2)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=1, num_candidates=10)
    valid = torch.ones(1, 10, dtype=torch.bool)
    batch.candidate_item = torch.arange(2, 12)[None]
    batch.group = serving_groups(batch.candidate_item, valid, 4, "item_hash")
    first, second = _scores(model, batch), _scores(model, batch)
    assert torch.equal(first, second)
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(1))
    items = batch.candidate_item[:, permutation]
    permuted = dataclasses.replace(
        batch, candidate_item=items, group=serving_groups(items, valid, 4, "item_hash")
    )
    assert torch.allclose(_scores(model, permuted)[0], first[0, permutation], atol=1e-5)


def test_without_reasoning_every_task_reads_the_backbone() -> None:
    config = tiny_config(reasoning_steps=0)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=2, num_candidates=5)
    with torch.inference_mode():
        assert torch.allclose(model(batch).task_logits, model.forward_reference(batch).task_logits, atol=1e-5)
    assert [config.stage_of_task(t) for t in range(3)] == [0, 0, 0]
    assert [tiny_config(reasoning_steps=2).stage_of_task(t) for t in range(3)] == [1, 2, 2]


def test_serving_sized_forward_matches_the_reference_with_padding_and_a_partial_group() -> None:
    """The fast path at serving size (quick preset widths, 2 layers, 200 candidates in hash groups of 12,
    the last group partial, a padded second request) scores every valid candidate as the reference."""
    config = dataclasses.replace(
        preset("quick")[0], history_len=8, anchor_len=3, num_layers=2, dropout=0.0, group_size=12
    )
    model = tiny_model(config)
    batch = random_batch(config, batch_size=2, num_candidates=200, seed=4)
    valid = torch.ones(2, 200, dtype=torch.bool)
    valid[1, 150:] = False
    batch.candidate_item[1, 150:] = 0
    batch.group = serving_groups(batch.candidate_item, valid, config.group_size, "item_hash")
    with torch.inference_mode():
        logits = model(batch).task_logits
        fast = model.serving_score(logits)
        reference = model.serving_score(model.forward_reference(batch).task_logits)
    assert torch.allclose(fast[valid], reference[valid], atol=1e-5)
    assert bool((logits[1, :, 150:] == 0).all())  # padding candidates get no logits written


@pytest.mark.parametrize("match_features", [False, True])
def test_a_rank_prior_ranker_starts_from_the_merged_order_and_its_paths_agree(match_features: bool) -> None:
    config = tiny_config(
        group_size=3,
        reasoning_steps=2,
        use_retrieval_rank=True,
        rank_prior=1.0,
        match_features=match_features,
    )
    model = tiny_model(config)
    batch = random_batch(config, batch_size=2, num_candidates=7)
    order = torch.tensor([[3, 0, 6, 1, 5, 2, 4], [0, 1, 2, 3, 4, 5, 6]])  # merged positions
    batch = dataclasses.replace(batch, candidate_rank=order)
    scores = _scores(model, batch)
    # untrained: the served order is exactly the merged one (strictly decreasing in the position)
    assert torch.equal(scores.argsort(dim=1, descending=True), order.argsort(dim=1))
    with torch.no_grad():  # after some "training" the two forward paths still agree, prior included
        for head in model.heads:
            head[-1].weight.normal_()
        model.prior_scale.fill_(0.3)
        if match_features:
            model.match_logits.weight.normal_()
    with torch.inference_mode():
        fast = model(batch).task_logits
        reference = model.forward_reference(batch).task_logits
    assert torch.allclose(fast, reference, atol=1e-5)
    assert not torch.equal(_scores(model, batch).argsort(dim=1, descending=True), order.argsort(dim=1))


def test_a_rank_prior_needs_the_merged_position() -> None:
    with pytest.raises(ValueError, match="use_retrieval_rank"):
        tiny_model(tiny_config(rank_prior=1.0))


def test_item_id_dropout_hides_ids_in_training_only() -> None:
    config = tiny_config(item_id_dropout=1.0, dropout=0.0)
    model = tiny_model(config)
    batch = random_batch(config, batch_size=1, num_candidates=5)
    unknown = torch.ones_like(batch.candidate_item)
    embed = model.embed
    with torch.no_grad():
        model.train()
        hidden = embed._item_features(batch.candidate_item, embed.candidate_items)
        model.eval()
        shown = embed._item_features(batch.candidate_item, embed.candidate_items)
        # id 1 with each candidate's own category: what every dropped id reads
        category = embed.category(embed.item_category[batch.candidate_item])
        expected = embed.candidate_items(embed.item(unknown), category)
    assert torch.allclose(hidden, expected)
    assert not torch.allclose(shown, expected)


def test_candidate_features_are_standardised_read_by_every_path_and_required() -> None:
    from dataclasses import replace

    import numpy as np

    config = tiny_config(candidate_features=3, dropout=0.0)
    model = tiny_model(config)
    rows = np.random.default_rng(0).normal(loc=[10.0, -2.0, 0.0], scale=[5.0, 1.0, 0.1], size=(500, 3))
    model.set_feature_scale(rows)
    np.testing.assert_allclose(model.feature_mean.numpy(), rows.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(model.feature_scale.numpy(), rows.std(axis=0), rtol=1e-5)
    batch = random_batch(config, 2, 6)
    values = torch.from_numpy(rows[:12].reshape(2, 6, 3).astype(np.float32))
    with_features = replace(batch, candidate_features=values)
    scores = _scores(model, with_features)
    torch.testing.assert_close(
        scores, model.serving_score(model.forward_reference(with_features).task_logits)
    )
    changed = replace(batch, candidate_features=values.flip(1))  # the same rows for other candidates
    assert not torch.allclose(scores, _scores(model, changed))
    with pytest.raises(ValueError, match="candidate_features"):
        model(batch)
