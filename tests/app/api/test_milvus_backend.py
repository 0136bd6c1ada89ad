"""``TANDEM_INDEX_BACKEND=milvus``: the ANN source of a real bundle searches a Milvus collection published
from the bundle's item vectors (milvus-lite embedded and as a server process); ``make scale``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.services.serving_bundle import load_bundle
from app.startup import milvus_target
from models.bundle.load import Bundle
from models.candidates.sources import CandidateRequest
from models.index.milvus import MilvusItemSearch
from models.types import RequestContext
from tests.app.conftest import make_settings, running_app
from tests.milvus_server import MODES, milvus_uri

pytestmark = [pytest.mark.scale, pytest.mark.anyio]


@pytest.fixture(autouse=True)
def _milvus_installed() -> None:
    """Only when a test runs (``make scale`` installs the extra; make test deselects these)."""
    pytest.importorskip("pymilvus", reason="make scale installs the scale extra")


@pytest.fixture(params=MODES)
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A milvus-lite ``.db`` path (embedded), or the URI of a milvus-lite server process."""
    with milvus_uri(request.param, tmp_path) as value:
        yield value


async def test_the_ann_source_searches_milvus_and_answers_as_faiss_does(
    encoder_bundle: Path, uri: str
) -> None:
    settings = make_settings(encoder_bundle, index_backend="milvus", milvus_uri=uri)
    target = milvus_target(settings)
    assert target is not None
    served = load_bundle(encoder_bundle, milvus=target)
    plain = Bundle.load(encoder_bundle)
    ann = served.sources["ann"]
    assert isinstance(ann.index, MilvusItemSearch)  # type: ignore[attr-defined]
    vector = np.random.default_rng(0).normal(size=plain.index.dim).astype(np.float32)  # type: ignore[union-attr]
    history = next(plain.recent_histories())[1]
    context = RequestContext(timestamp=int(history.timestamp[-1]) + 1)
    request = CandidateRequest(history, context, vector, np.unique(history.item))
    np.testing.assert_array_equal(
        ann.candidates(request, 20).items, plain.sources["ann"].candidates(request, 20).items
    )
    async with running_app(settings, load_bundle) as (_, client):
        answer = await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5


def test_milvus_needs_its_uri() -> None:
    with pytest.raises(ValueError, match="milvus_uri"):
        make_settings(Path("/b"), index_backend="milvus")
