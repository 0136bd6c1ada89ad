import torch

from models.ranker.grouping import random_groups, serving_groups


def _members(group: torch.Tensor, candidates: torch.Tensor) -> set[frozenset[int]]:
    return {frozenset(candidates[group == g].tolist()) for g in group.unique().tolist() if g >= 0}


def test_random_groups_have_size_c_and_skip_padding() -> None:
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[:, 8:] = False
    group = random_groups(valid, group_size=3, generator=torch.Generator().manual_seed(0))
    assert (group[:, 8:] == -1).all()
    for row in group:
        counts = torch.bincount(row[:8])
        assert counts.tolist() == [3, 3, 2]


def test_random_groups_change_with_the_seed() -> None:
    valid = torch.ones(1, 24, dtype=torch.bool)
    first = random_groups(valid, 4, torch.Generator().manual_seed(0))
    second = random_groups(valid, 4, torch.Generator().manual_seed(1))
    assert not torch.equal(first, second)


def test_retrieval_order_groups_consecutive_candidates() -> None:
    candidates = torch.tensor([[9, 8, 7, 6, 5]])
    group = serving_groups(candidates, torch.ones_like(candidates, dtype=torch.bool), 2, "retrieval_order")
    assert group.tolist() == [[0, 0, 1, 1, 2]]


def test_item_hash_groups_depend_only_on_the_candidate_set() -> None:
    candidates = torch.arange(2, 30)[None]
    valid = torch.ones_like(candidates, dtype=torch.bool)
    group = serving_groups(candidates, valid, 4, "item_hash")
    permutation = torch.randperm(candidates.shape[1], generator=torch.Generator().manual_seed(3))
    permuted = candidates[:, permutation]
    group_permuted = serving_groups(permuted, valid, 4, "item_hash")
    assert _members(group[0], candidates[0]) == _members(group_permuted[0], permuted[0])
    # and they are not simply the retrieval order
    assert not torch.equal(group, serving_groups(candidates, valid, 4, "retrieval_order"))
