"""One user's vector through the exported blocks equals the eager one (models/encoder/compiled.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.encoder.compiled import ExportedQuery
from models.encoder.model import RetrievalEncoder
from models.encoder.serving import TorchUserEncoder, encode_histories
from models.types import RequestContext
from tests.models.encoder.test_model import CATEGORY, random_history, tiny_config


@pytest.mark.parametrize("backend", ["onnxruntime", "torchscript"])
@pytest.mark.parametrize(
    "changes",
    [
        {"fold_context": True, "max_items_per_session": 1},  # the default preset's layout: causal mask
        {"context_pool": True, "item_side_info": True},  # session tokens and the session-wise mask
        {"moe_experts": 2},
    ],
)
def test_exported_vectors_equal_the_eager_forward(backend: str, changes: dict[str, object]) -> None:
    torch.manual_seed(0)
    model = RetrievalEncoder(tiny_config("session_encoder", **changes)).eval()  # type: ignore[arg-type]
    model.set_item_category(CATEGORY)
    exported = ExportedQuery(model, CATEGORY, backend=backend, pad_multiple=8)
    rng = np.random.default_rng(2)
    for n in (0, 1, 5, 9, 30):
        history = random_history(rng, n)
        context = RequestContext(timestamp=2_000_000_000 + n, scene=1, device=1)
        eager = encode_histories(model, CATEGORY, [history], [context])[0]
        np.testing.assert_allclose(exported.vector(history, context), eager, atol=2e-6)
    assert len(exported.exports.compiled) >= 2  # several padded lengths were exported and reused


def test_the_user_encoder_exports_one_user_and_keeps_batches_eager() -> None:
    torch.manual_seed(1)
    model = RetrievalEncoder(tiny_config("session_encoder")).eval()
    served = TorchUserEncoder(model, CATEGORY, "v")
    rng = np.random.default_rng(4)
    histories = [random_history(rng, n) for n in (3, 12)]
    contexts = [RequestContext(timestamp=2_000_000_000)] * 2
    eager_one = served.encode(histories[:1], contexts[:1])
    eager_two = served.encode(histories, contexts)
    served.export("torchscript")
    assert served.exported is not None
    np.testing.assert_allclose(served.encode(histories[:1], contexts[:1]), eager_one, atol=2e-6)
    assert served.exported.exports.compiled  # the one-user call went through an export
    exported_count = len(served.exported.exports.compiled)
    np.testing.assert_array_equal(served.encode(histories, contexts), eager_two)  # a batch stays eager
    assert len(served.exported.exports.compiled) == exported_count
