"""A search refused because the collection is released (a restarted milvus-lite server) loads it again,
at most once every RELOAD_EVERY_S, and the searches after it answer; no pymilvus needed (a fake client)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from models.index import milvus
from models.index.milvus import MilvusItemSearch


class FakeClient:
    def __init__(self) -> None:
        self.loaded = False
        self.loads = 0
        self.fail_loads = False

    def search(self, collection: str, **kwargs: Any) -> list[list[dict[str, Any]]]:
        if not self.loaded:
            raise RuntimeError(f"Collection '{collection}' is in state 'released'; call load() before search")
        return [[{"id": 5, "distance": 0.5}, {"id": 3, "distance": 0.25}]]

    def load_collection(self, collection: str, timeout: float) -> None:
        self.loads += 1
        if self.fail_loads:
            raise ConnectionError("server unavailable")
        self.loaded = True


def test_a_released_collection_is_loaded_again_and_searched(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(milvus.time, "monotonic", lambda: clock[0])
    client = FakeClient()
    errors: list[Exception] = []
    search = MilvusItemSearch(client, "c", np.zeros((8, 2), np.float32), "v", on_error=errors.append)
    client.fail_loads = True
    items, _ = search.search(np.ones((2, 2), np.float32), 2)
    assert (items == -1).all() and len(errors) == 2 and client.loads == 1  # one try per RELOAD_EVERY_S
    clock[0] += milvus.RELOAD_EVERY_S
    client.fail_loads = False
    items, scores = search.search(np.ones((2, 2), np.float32), 2)
    assert client.loads == 2 and len(errors) == 3  # the first row failed and loaded, the second answered
    assert items[0].tolist() == [-1, -1] and items[1].tolist() == [5, 3] and scores[1, 0] == 0.5


def test_other_errors_do_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeClient()
    client.search = lambda *a, **k: (_ for _ in ()).throw(TimeoutError("deadline exceeded"))  # type: ignore[method-assign]
    search = MilvusItemSearch(client, "c", np.zeros((8, 2), np.float32), "v")
    items, _ = search.search(np.ones((1, 2), np.float32), 2)
    assert (items == -1).all() and client.loads == 0
