import torch

from models.ranker.masks import candidate_block_mask, context_mask, full_sequence_mask, same_group


def test_context_mask_blocks_padding_keys_and_keeps_pad_rows_defined() -> None:
    valid = torch.tensor([[False, True, True]])
    mask = context_mask(valid)
    assert mask.shape == (1, 3, 3)
    assert mask[0].tolist() == [[True, True, True], [False, True, True], [False, True, True]]


def test_same_group_ignores_padding_candidates() -> None:
    group = torch.tensor([[0, 1, 0, -1]])
    same = same_group(group)[0]
    assert same[0].tolist() == [True, False, True, False]
    assert same[1].tolist() == [False, True, False, False]
    assert same[3].tolist() == [False, False, False, True]  # padding sees only itself


def test_candidate_block_mask_shape_and_semantics() -> None:
    context_valid = torch.tensor([[True, False, True]])
    group = torch.tensor([[0, 0, 1]])
    mask = candidate_block_mask(context_valid, group, num_blocks=2)
    assert mask.shape == (1, 3, 3 + 2 * 3)
    row = mask[0, 0].tolist()
    assert row[:3] == [True, False, True]  # the valid context
    assert row[3:6] == [True, True, False]  # block 0: own group only
    assert row[6:9] == [True, True, False]  # own block: own group only
    assert mask[0, 2, 3:].tolist() == [False, False, True, False, False, True]


def test_full_sequence_mask_is_block_causal() -> None:
    context_valid = torch.tensor([[True, True]])
    group = torch.tensor([[0, 1]])
    mask = full_sequence_mask(context_valid, group, num_blocks=2)[0].int().tolist()
    # tokens: c0 c1 | a0 b0 (block 0) | a1 b1 (block 1); a and b are in different groups
    assert mask == [
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 0, 1, 0, 0],
        [1, 1, 1, 0, 1, 0],
        [1, 1, 0, 1, 0, 1],
    ]
    # the newest block's rows equal the incremental mask
    assert torch.equal(
        full_sequence_mask(context_valid, group, 2)[:, 4:], candidate_block_mask(context_valid, group, 2)
    )
