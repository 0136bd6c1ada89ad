import numpy as np
import pytest
import torch

from models.encoder.config import EncoderConfig
from models.encoder.layout import build_layout, pad_jagged, stack_layouts
from models.encoder.model import RetrievalEncoder, to_tensors
from models.encoder.serving import (
    encode_histories,
    load_user_encoder,
    save_user_encoder,
    user_feature_matrix,
)
from models.train.examples import build_targets
from models.types import RequestContext, UserHistory
from tests.models.encoder.test_model import CATEGORY, NUM_ITEMS, random_history, tiny_config


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(
        "session_encoder", moe_experts=2, context_pool=True, item_query_weight=1.0, item_side_info=True
    )
    model = RetrievalEncoder(config).eval()
    model.set_item_category(CATEGORY)
    rng = np.random.default_rng(0)
    histories = [random_history(rng, n) for n in (0, 5, 33)]
    contexts = [RequestContext(timestamp=2_000_000_000 + i, scene=1) for i in range(3)]
    path = save_user_encoder(model, tmp_path / "bundle", CATEGORY, version="v1")
    assert path.name == "encoder.pt"
    original = load_user_encoder(tmp_path / "bundle")
    again = load_user_encoder(path)
    assert original.version == "v1" and original.dim == 16
    first = original.encode(histories, contexts)
    assert first.dtype == np.float32 and first.shape == (3, 16)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)  # empty history included
    assert np.array_equal(first, again.encode(histories, contexts))
    items = original.item_vectors()
    assert np.array_equal(items, model.item_vectors().detach().numpy())  # categories travel with weights
    assert items.shape == (NUM_ITEMS, 16) and not items[:2].any()
    assert np.allclose(np.linalg.norm(items[2:], axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    ("context_pool", "request_items", "fold"),
    [(False, 20, False), (True, 20, False), (True, 1, False), (True, 1, True)],
)
def test_serving_matches_training_time_forward(tmp_path, context_pool, request_items, fold):
    torch.manual_seed(1)
    config: EncoderConfig = tiny_config(
        "session_encoder",
        context_pool=context_pool,
        item_query_weight=1.0,
        max_items_per_session=request_items,
        fold_context=fold,
    )
    model = RetrievalEncoder(config).eval()
    rng = np.random.default_rng(3)
    histories: list[UserHistory] = [random_history(rng, n) for n in (7, 40)]
    contexts = [RequestContext(timestamp=2_100_000_000, scene=1, device=1)] * 2
    served = load_user_encoder(save_user_encoder(model, tmp_path / "e.pt", CATEGORY))
    vectors = served.encode(histories, contexts)
    # the training path: same layout code, one padded forward, the appended context token through g_0
    layouts = [build_layout(h, c, config, CATEGORY) for h, c in zip(histories, contexts, strict=True)]
    jagged = stack_layouts(layouts, user_feature_matrix(config, histories))
    with torch.no_grad():
        hidden, _ = model(to_tensors(pad_jagged(jagged)), torch.as_tensor(jagged.user_features))
        last = torch.as_tensor(jagged.lengths - 1)
        expected = model.query_vectors(hidden[torch.arange(2), last]).numpy()
    assert np.allclose(vectors, expected, atol=1e-6)


@pytest.mark.parametrize("fold", [False, True])
def test_served_vector_is_the_training_query_of_that_request(fold):
    """The vector served for request k (history = the first k ratings) equals the query that training
    reads for request k from the user's whole history (rating logs: one item per request)."""
    torch.manual_seed(2)
    config = tiny_config(
        "session_encoder", dropout=0.0, max_items_per_session=1, fold_context=fold, identity_start=True
    )
    model = RetrievalEncoder(config).eval()
    full = random_history(np.random.default_rng(5), 12)
    full.timestamp[:] = 1_000_000_000 + 4000 * np.arange(12)  # one rating per session, no merging
    layout = build_layout(full, None, config, CATEGORY)
    padded = pad_jagged(stack_layouts([layout], user_feature_matrix(config, [full])))
    targets = build_targets(padded, True, 1, config.folded)
    with torch.no_grad():
        hidden, _ = model(to_tensors(padded), torch.as_tensor(user_feature_matrix(config, [full])))
        training = model.query_vectors(hidden[0, torch.as_tensor(targets.cols)]).numpy()
    assert targets.items[:, 0].tolist() == full.item.tolist()  # every rating is some query's target
    for k in (0, 1, 6, 11):
        prefix = UserHistory(
            full.item[:k],
            full.action[:k],
            full.value[:k],
            full.timestamp[:k],
            full.scene[:k],
            full.device[:k],
            full.user_features,
        )
        request = RequestContext(
            timestamp=int(full.timestamp[k]), scene=int(full.scene[k]), device=int(full.device[k])
        )
        served = encode_histories(model, CATEGORY, [prefix], [request])
        assert np.allclose(served[0], training[k], atol=1e-5)


def test_checkpoint_without_the_fold_field_keeps_the_two_token_layout(tmp_path):
    torch.manual_seed(3)
    model = RetrievalEncoder(tiny_config("session_encoder", max_items_per_session=1)).eval()
    path = save_user_encoder(model, tmp_path / "old", CATEGORY, version="old")
    payload = torch.load(path, weights_only=False)
    del payload["config"]["fold_context"]  # as written before the field existed
    torch.save(payload, path)
    loaded = load_user_encoder(path)
    assert not loaded.model.config.folded
    histories = [random_history(np.random.default_rng(4), 9)]
    contexts = [RequestContext(timestamp=2_100_000_000, scene=1, device=1)]
    expected = encode_histories(model, CATEGORY, histories, contexts)
    assert np.array_equal(loaded.encode(histories, contexts), expected)
