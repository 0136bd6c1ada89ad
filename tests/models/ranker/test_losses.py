import math

import pytest
import torch

from models.ranker.config import RankerConfig
from models.ranker.losses import bce_loss, ranking_loss, setwise_contrastive_loss


def test_bce_loss_hand_computed() -> None:
    logits = torch.tensor([[0.0, 2.0, 5.0]])
    labels = torch.tensor([[1.0, 0.0, 1.0]])
    valid = torch.tensor([[True, True, False]])
    expected = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert math.isclose(float(bce_loss(logits, labels, valid)), expected, rel_tol=1e-6)


def test_setwise_contrastive_hand_computed() -> None:
    logits = torch.tensor([[1.0, 0.0, 3.0, 2.0, 7.0]])
    labels = torch.tensor([[1, 0, 0, 1, 1]])
    group = torch.tensor([[0, 0, 1, 1, -1]])  # the last candidate is padding: ignored
    first = -(1.0 - math.log(math.exp(1.0) + math.exp(0.0)))
    second = -(2.0 - math.log(math.exp(3.0) + math.exp(2.0)))
    got = float(setwise_contrastive_loss(logits, labels, group, temperature=1.0))
    assert math.isclose(got, (first + second) / 2, rel_tol=1e-6)
    # temperature divides the logits
    got_half = float(setwise_contrastive_loss(logits, labels, group, temperature=0.5))
    first_half = -(2.0 - math.log(math.exp(2.0) + 1.0))
    second_half = -(4.0 - math.log(math.exp(6.0) + math.exp(4.0)))
    assert math.isclose(got_half, (first_half + second_half) / 2, rel_tol=1e-6)


def test_setwise_contrastive_without_positives_is_zero_with_gradient() -> None:
    logits = torch.zeros(1, 3, requires_grad=True)
    loss = setwise_contrastive_loss(logits, torch.zeros(1, 3), torch.tensor([[0, 0, 0]]))
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert logits.grad is not None


def test_ranking_loss_sums_tasks() -> None:
    logits = torch.tensor([[[0.0, 1.0], [2.0, -1.0]]])
    labels = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    group = torch.tensor([[0, 0]])
    total, parts = ranking_loss(logits, labels, group, contrastive_weight=0.5)
    expected = sum(parts[f"bce_{t}"] + 0.5 * parts[f"scl_{t}"] for t in range(2))
    assert math.isclose(float(total), expected, rel_tol=1e-6)
    assert math.isclose(parts["scl_1"], -(-1.0 - math.log(math.exp(2.0) + math.exp(-1.0))), rel_tol=1e-6)


def test_the_request_scope_spans_every_group_of_a_request() -> None:
    logits = torch.tensor([[[1.0, 0.0, 3.0, 2.0, 7.0]]])  # [B=1, tasks=1, N=5]
    labels = torch.tensor([[[1.0, 0.0, 0.0, 1.0, 1.0]]])
    group = torch.tensor([[0, 0, 1, 1, -1]])  # the last candidate is padding in both scopes
    _, grouped = ranking_loss(logits, labels, group)
    _, listwise = ranking_loss(logits, labels, group, scope="request")
    everything = math.log(sum(math.exp(v) for v in (1.0, 0.0, 3.0, 2.0)))
    expected = ((everything - 1.0) + (everything - 2.0)) / 2  # positives 1.0 and 2.0 over all four
    assert math.isclose(listwise["scl_0"], expected, rel_tol=1e-6)
    assert not math.isclose(grouped["scl_0"], expected, rel_tol=1e-3)
    assert listwise["bce_0"] == grouped["bce_0"]  # the scope changes the contrastive term only


def test_an_unknown_scope_is_refused() -> None:
    one = torch.zeros(1, 1, 2)
    with pytest.raises(ValueError, match="unknown contrastive scope 'batch'"):
        ranking_loss(one, one, torch.tensor([[0, 0]]), scope="batch")
    with pytest.raises(ValueError, match="contrastive_scope must be one of"):
        RankerConfig(contrastive_scope="batch")
