import math

import numpy as np
import torch

from models.train.losses import (
    NegativePool,
    PoolLogSumExp,
    catalogue_pool,
    listwise_funnel_loss,
    log_multiplicity,
    sample_pool,
    sampled_softmax,
    scene_normalised_sum,
)

# Toy catalogue: items 2..6 (indices 0, 1 are pad/unknown); exact target counts f.
NUM_ITEMS = 7
COUNTS = np.array([0, 0, 4, 3, 1, 1, 1], dtype=np.float64)
ITEM_PROB = torch.tensor(COUNTS / COUNTS.sum())
N_INBATCH, N_UNIFORM = 2, 2
POOL_ITEMS = [3, 4, 2, 6]  # contains the positive (2) once: an accidental hit, masked
POSITIVE = 2
SCORES = {2: 1.5, 3: 0.5, 4: -0.3, 5: 0.0, 6: 0.8}  # s(j) for the single query


def multiplicity(item: int) -> float:
    return N_INBATCH * COUNTS[item] / COUNTS.sum() + N_UNIFORM / 5


def run_loss(logq: str) -> tuple[torch.Tensor, torch.Tensor]:
    # one-hot item vectors and tau = 1 make the query coordinates equal to the scores s(j)
    item_vectors = torch.eye(NUM_ITEMS, dtype=torch.float64)
    query = torch.zeros(1, NUM_ITEMS, dtype=torch.float64)
    for item, score in SCORES.items():
        query[0, item] = score
    query.requires_grad_(True)
    pool_items = torch.tensor(POOL_ITEMS)
    pool = NegativePool(
        pool_items, log_multiplicity(pool_items, ITEM_PROB, N_INBATCH, N_UNIFORM, NUM_ITEMS).double(), 4
    )
    positives = torch.tensor([[POSITIVE]])
    log_m_pos = torch.tensor([[math.log(multiplicity(POSITIVE))]], dtype=torch.float64)
    loss, valid = sampled_softmax(query, positives, log_m_pos, item_vectors, pool, 1.0, logq)
    assert valid.all()
    loss.sum().backward()
    assert query.grad is not None
    return loss.detach()[0, 0], query.grad[0]


def test_multiplicity_matches_hand_formula():
    items = torch.arange(2, 7)
    got = log_multiplicity(items, ITEM_PROB, N_INBATCH, N_UNIFORM, NUM_ITEMS).exp()
    assert np.allclose(got.numpy(), [multiplicity(i) for i in range(2, 7)], atol=1e-6)


def test_plain_sampled_softmax_hand_case():
    loss, _ = run_loss("none")
    negatives = [3, 4, 6]
    expected = -SCORES[2] + math.log(math.exp(SCORES[2]) + sum(math.exp(SCORES[j]) for j in negatives))
    assert abs(float(loss) - expected) < 1e-6


def test_catalogue_pool_is_full_cross_entropy():
    """Two positives per query, one masked slot: each loss is cross-entropy over the whole catalogue with
    the query's other positive left out of the denominator (an accidental hit)."""
    generator = torch.Generator().manual_seed(0)
    item_vectors = torch.randn(NUM_ITEMS, 4, generator=generator)
    query = torch.randn(3, 4, generator=generator)
    positives = torch.tensor([[2, 5], [6, 0], [3, 4]])
    pool = catalogue_pool(NUM_ITEMS)
    assert pool.items.tolist() == [2, 3, 4, 5, 6] and pool.size == 5
    loss, valid = sampled_softmax(query, positives, torch.zeros(3, 2), item_vectors, pool, 0.5, "none")
    assert valid.tolist() == [[True, True], [True, False], [True, True]]
    logits = query @ item_vectors[2:].T / 0.5  # [3, 5] scores of items 2..6
    for q in range(3):
        for slot in range(2):
            item = int(positives[q, slot])
            if item == 0:
                assert float(loss[q, slot]) == 0.0
                continue
            other = {int(p) for p in positives[q] if int(p) not in (0, item)}
            keep = [j for j in range(2, NUM_ITEMS) if j not in other]
            expected = -logits[q, item - 2] + torch.logsumexp(logits[q, [j - 2 for j in keep]], 0)
            assert abs(float(loss[q, slot]) - float(expected)) < 1e-5


def test_classic_logq_hand_case():
    loss, _ = run_loss("classic")
    corrected = {j: SCORES[j] - math.log(multiplicity(j)) for j in SCORES}
    denominator = math.exp(corrected[2]) + sum(math.exp(corrected[j]) for j in [3, 4, 6])
    expected = -math.log(math.exp(corrected[2]) / denominator)
    assert abs(float(loss) - expected) < 1e-6
    # the correction matters here: popular item 3 is penalised less than without it
    assert abs(expected - float(run_loss("none")[0])) > 1e-3


def test_corrected_logq_value_and_gradients():
    loss, grad = run_loss("corrected")
    negatives = [3, 4, 6]
    rest = 4 - multiplicity(POSITIVE)  # R - m_p
    weights = {j: math.exp(SCORES[j] - math.log(multiplicity(j) / rest)) for j in negatives}
    total = sum(weights.values())
    p_hat = math.exp(SCORES[2]) / (math.exp(SCORES[2]) + total / len(negatives))
    expected = -(1 - p_hat) * (SCORES[2] - math.log(total))
    assert abs(float(loss) - expected) < 1e-6
    # models.md 4.4: dl/ds(p) = -(1 - p_hat), dl/ds(j) = (1 - p_hat) w_j / sum w, masked/absent items 0
    assert abs(float(grad[2]) + (1 - p_hat)) < 1e-6
    for j in negatives:
        assert abs(float(grad[j]) - (1 - p_hat) * weights[j] / total) < 1e-6
    assert float(grad[5]) == 0.0


def test_sample_pool_sizes_and_range():
    rng = np.random.default_rng(0)
    pool = sample_pool(np.array([2, 2, 3]), ITEM_PROB, 5, 7, NUM_ITEMS, rng)
    assert pool.size == 12 and pool.items.shape == (12,)
    assert set(pool.items[:5].tolist()) <= {2, 3}
    assert int(pool.items.min()) >= 2 and int(pool.items.max()) < NUM_ITEMS


def test_listwise_funnel_loss_hand_case():
    scores = torch.tensor([[2.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    levels = torch.tensor([[2, 1, 1, 0], [2, 3, 0, 0]])
    per_query, present = listwise_funnel_loss(scores, levels, min_level=2)
    # row 0: one positive (2.0) vs negatives {1.0, 0.0}; row 1: no negative -> skipped
    expected = -2.0 + math.log(math.exp(2.0) + math.exp(1.0) + math.exp(0.0))
    assert present.tolist() == [True, False]
    assert abs(float(per_query[0]) - expected) < 1e-6 and float(per_query[1]) == 0.0


def test_scene_normalisation_weights_scenes_equally():
    per_query = torch.tensor([1.0, 1.0, 1.0, 4.0])
    scene = torch.tensor([2, 2, 2, 3])
    assert float(scene_normalised_sum(per_query, scene)) == 1.0 + 4.0


def test_pool_log_sum_exp_matches_autograd_reference():
    torch.manual_seed(0)
    query = torch.randn(7, 5, requires_grad=True)
    pool = torch.randn(11, 5, requires_grad=True)
    bias = torch.randn(11)
    hits = torch.rand(7, 11) < 0.2
    hits[3] = True  # a query whose whole pool is masked stays finite
    weights = torch.arange(1.0, 8.0)
    fast = PoolLogSumExp.apply(query, pool, bias, hits)
    (fast * weights).sum().backward()
    fast_grads = query.grad.clone(), pool.grad.clone()
    query.grad = pool.grad = None
    logits = (query @ pool.T + bias).masked_fill(hits, torch.finfo(torch.float32).min)
    reference = logits.logsumexp(-1)
    (reference * weights).sum().backward()
    assert torch.isfinite(fast).all() and torch.allclose(fast, reference, atol=1e-5)
    assert torch.allclose(fast_grads[0], query.grad, atol=1e-5)
    assert torch.allclose(fast_grads[1], pool.grad, atol=1e-5)
