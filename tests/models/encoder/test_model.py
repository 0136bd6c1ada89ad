from typing import Any

import numpy as np
import pytest
import torch

from models.encoder.config import EncoderConfig
from models.encoder.layout import build_layout, pad_jagged, stack_layouts
from models.encoder.model import RetrievalEncoder, previous_session_mean, to_tensors
from models.types import RequestContext, UserHistory

NUM_ITEMS = 40
CATEGORY = np.arange(NUM_ITEMS) % 4


def random_history(rng: np.random.Generator, n: int) -> UserHistory:
    times = 1_000_000_000 + np.cumsum(rng.choice([30, 300, 5000], n))
    return UserHistory(
        item=rng.integers(2, NUM_ITEMS, n),
        action=np.full(n, 6),
        value=rng.integers(1, 6, n).astype(np.float32),
        timestamp=times.astype(np.int64),
        scene=np.ones(n, dtype=np.int64),
        device=np.ones(n, dtype=np.int64),
        user_features={"gender": 2},
    )


def tiny_config(kind: str, **overrides) -> EncoderConfig:
    values: dict[str, Any] = dict(
        kind=kind,
        num_items=NUM_ITEMS,
        num_categories=4,
        dim=16,
        num_heads=2,
        head_dim=8,
        max_tokens=48,
        user_feature_sizes={"gender": 4} if kind == "session_encoder" else {},
    )
    values.update(overrides)
    return EncoderConfig(**values)


def encode(model: RetrievalEncoder, histories: list[UserHistory]) -> torch.Tensor:
    config = model.config
    request = RequestContext(timestamp=2_000_000_000)
    layouts = [build_layout(h, request, config, CATEGORY) for h in histories]
    features = np.array(
        [[h.user_features.get(n, 1) for n in sorted(config.user_feature_sizes)] for h in histories]
    )
    jagged = stack_layouts(layouts, features)
    hidden, _ = model(to_tensors(pad_jagged(jagged)), torch.as_tensor(jagged.user_features))
    last = torch.as_tensor(jagged.lengths - 1)
    return model.query_vectors(hidden[torch.arange(len(histories)), last])


@pytest.mark.parametrize("kind", ["session_encoder", "hstu", "sasrec"])
def test_shapes_and_unit_vectors(kind):
    torch.manual_seed(0)
    model = RetrievalEncoder(tiny_config(kind)).eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        users = encode(model, [random_history(rng, n) for n in (3, 25, 60)])
        items = model.item_vectors()
    assert users.shape == (3, 16)
    assert torch.allclose(users.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert items.shape == (NUM_ITEMS, 16) and float(items[:2].abs().sum()) == 0.0


@pytest.mark.parametrize("kind", ["session_encoder", "hstu", "sasrec"])
def test_output_does_not_depend_on_batch_padding(kind):
    torch.manual_seed(0)
    model = RetrievalEncoder(tiny_config(kind, moe_experts=3 if kind == "session_encoder" else 0)).eval()
    rng = np.random.default_rng(1)
    short, long = random_history(rng, 4), random_history(rng, 70)
    with torch.no_grad():
        alone = encode(model, [short])
        together = encode(model, [short, long])
    assert torch.allclose(alone[0], together[0], atol=1e-5)


@pytest.mark.parametrize("context_pool", [False, True])
def test_session_encoder_context_token_ignores_own_session_items(context_pool):
    torch.manual_seed(0)
    config = tiny_config("session_encoder", dropout=0.0, context_pool=context_pool)
    model = RetrievalEncoder(config).eval()
    rng = np.random.default_rng(2)
    h = random_history(rng, 10)
    layout = build_layout(h, None, config, CATEGORY)
    padded = pad_jagged(stack_layouts([layout], np.array([[2]])))
    changed = {k: v.copy() for k, v in padded.items()}
    last_session = padded["sess"][0].max()
    own_items = (padded["sess"][0] == last_session) & (padded["tok_type"][0] == 2)
    changed["item"][0, own_items] = 3  # alter the targets of the last context token
    with torch.no_grad():
        before, _ = model(to_tensors(padded), torch.tensor([[2]]))
        after, _ = model(to_tensors(changed), torch.tensor([[2]]))
    ctx = int(np.flatnonzero((padded["sess"][0] == last_session) & (padded["tok_type"][0] == 1))[0])
    assert torch.allclose(before[0, ctx], after[0, ctx], atol=1e-6)
    assert not torch.allclose(before[0, own_items], after[0, own_items])


def test_previous_session_mean_reads_only_the_previous_session():
    # layout [c1 a b c2 d c3]: c2 and d get mean(a, b); c3 gets d; session 1 gets zero
    tokens = {
        "sess": torch.tensor([[1, 1, 1, 2, 2, 3, 0]]),
        "tok_type": torch.tensor([[1, 2, 2, 1, 2, 1, 0]]),
    }
    rows = torch.arange(7, dtype=torch.float32).view(1, 7, 1).expand(1, 7, 2)
    pooled = previous_session_mean(rows, tokens)[0, :, 0]
    assert pooled.tolist() == [0.0, 0.0, 0.0, 1.5, 1.5, 4.0, 0.0]


def test_item_side_info_adds_the_category_row():
    torch.manual_seed(0)
    model = RetrievalEncoder(tiny_config("session_encoder", item_side_info=True)).eval()
    model.set_item_category(CATEGORY)
    with torch.no_grad():
        model.embed.item.weight[4:12] = 0.0  # items 4..11: no id signal left, only their category
        vectors = model.item_vectors()
        expected = torch.nn.functional.normalize(model.embed.category.weight[CATEGORY[4:12]], dim=-1)
    assert torch.allclose(vectors[4:12], expected, atol=1e-6)
    assert torch.allclose(vectors[4], vectors[8]) and not torch.allclose(vectors[4], vectors[5])
    without = RetrievalEncoder(tiny_config("session_encoder")).eval()
    assert "item_category" not in without.state_dict()  # old checkpoints keep loading


def test_folded_token_output_ignores_its_own_request_and_later_items():
    torch.manual_seed(0)
    config = tiny_config(
        "session_encoder", dropout=0.0, max_items_per_session=1, fold_context=True, identity_start=True
    )
    model = RetrievalEncoder(config).eval()
    h = random_history(np.random.default_rng(2), 10)
    layout = build_layout(h, None, config, CATEGORY)
    assert len(layout["tok_type"]) == len(np.unique(h.timestamp)) + 1  # one token per rating, plus one
    padded = pad_jagged(stack_layouts([layout], np.array([[2]])))
    query = 6  # token 6 is the query of request 6, whose item (its target) sits on token 7
    changed = {k: v.copy() for k, v in padded.items()}
    changed["item"][0, query + 1 :] = 3
    changed["level"][0, query + 1 :] = 3
    with torch.no_grad():
        before, _ = model(to_tensors(padded), torch.tensor([[2]]))
        after, _ = model(to_tensors(changed), torch.tensor([[2]]))
    assert before.shape == (1, len(layout["tok_type"]), 16)
    assert torch.allclose(before[0, : query + 1], after[0, : query + 1], atol=1e-6)
    assert not torch.allclose(before[0, query + 1], after[0, query + 1])
