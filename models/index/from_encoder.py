"""Index an encoder's item vectors, measuring recall on the encoder's own user vectors."""

from __future__ import annotations

import numpy as np

from models.index.builder import IndexBuildConfig, build_index
from models.index.item_index import ItemIndex
from models.inference import UserEncoder
from models.types import RequestContext, UserHistory


def build_index_for_encoder(
    encoder: UserEncoder,
    histories: list[tuple[UserHistory, int]],
    kind: str = "auto",
    config: IndexBuildConfig | None = None,
    batch_size: int = 64,
) -> tuple[ItemIndex, np.ndarray]:
    """Builds the ANN index over ``encoder.item_vectors()`` ([N, d]).

    histories: (history, request time in unix seconds) pairs; their user vectors, each asked for the
    moment after the last event in the user's latest scene/device, are the sample queries of the
    recall/latency sweep, so recall is measured on the queries serving will actually send.
    Returns (index, item_vectors [N, d] float32).
    """
    item_vectors = np.ascontiguousarray(encoder.item_vectors(), dtype=np.float32)
    usable = [(h, t) for h, t in histories if len(h) > 0]
    if not usable:
        return build_index(item_vectors, kind, config=config), item_vectors
    query_batches = []
    for start in range(0, len(usable), batch_size):
        chunk = usable[start : start + batch_size]
        contexts = [
            RequestContext(timestamp=t + 1, scene=int(h.scene[-1]), device=int(h.device[-1]))
            for h, t in chunk
        ]
        query_batches.append(encoder.encode([h for h, _ in chunk], contexts))
    queries = np.concatenate(query_batches).astype(np.float32)
    index = build_index(
        item_vectors,
        kind,
        config=config,
        queries=queries,
        query_source="encoder user vectors of sampled users",
    )
    return index, item_vectors
