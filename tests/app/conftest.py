"""Fixtures for serving tests: a tiny fake bundle on disk, the real Redis (separate DB, own key prefix),
and the real app started with its lifespan behind an httpx ASGI transport."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import Settings
from app.main import create_app
from app.services.serving_bundle import BundleLoader
from models.bundle.write import from_checkpoints, sources_only, write_bundle
from models.data.loaders.synthetic import SyntheticConfig, generate_synthetic
from tests.app.fake_bundle import FakeBundle

REDIS_HOST, REDIS_PORT, REDIS_TEST_DB = "127.0.0.1", 6379, 13


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis on a test DB; a clear skip when absent (a failure under CI=true)."""
    if not port_open(REDIS_HOST, REDIS_PORT):
        message = f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (start redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}"


@pytest.fixture
def key_prefix() -> str:
    return f"tandemtest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bundle_v1(tmp_path: Path) -> Path:
    return FakeBundle.write(tmp_path / "bundle-v1", "v1")


@pytest.fixture
def bundle_v2(tmp_path: Path) -> Path:
    return FakeBundle.write(tmp_path / "bundle-v2", "v2")


@pytest.fixture(scope="session")
def baseline_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SyntheticConfig(num_users=60, num_items=200, num_events=3000, num_clusters=8, seed=3)
    dataset = generate_synthetic(config)
    return write_bundle(sources_only(dataset), dataset, tmp_path_factory.mktemp("real") / "bundle")


@pytest.fixture(scope="session")
def encoder_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real bundle with a real (untrained, tiny) session encoder and its index: tests the contract only."""
    return build_encoder_bundle(tmp_path_factory.mktemp("encoder-bundle"))


def build_encoder_bundle(root: Path, weights_seed: int = 0, refused_ranker: bool = False) -> Path:
    """Tiny synthetic data (60 users, 200 items) + an untrained dim-16 session encoder -> bundle under
    ``root``; ``weights_seed`` changes the weights (and so the model version) and nothing else;
    ``refused_ranker``: the bundle also ships a (tiny, untrained) ranker that its gate did not serve."""
    from dataclasses import replace

    import torch

    from models.data.loaders import synthetic
    from models.encoder import config as encoder_config
    from models.encoder import model as encoder_model
    from models.encoder import serving as encoder_serving

    torch.manual_seed(weights_seed)
    config = synthetic.SyntheticConfig(num_users=60, num_items=200, num_events=3000, num_clusters=8, seed=4)
    dataset = synthetic.generate_synthetic(config)
    model_config = encoder_config.EncoderConfig(
        num_items=dataset.num_items,
        num_categories=dataset.num_categories,
        num_scenes=dataset.num_scenes,
        num_devices=dataset.num_devices,
        dim=16,
        num_blocks=1,
        num_heads=1,
        head_dim=8,
    )
    model = encoder_model.RetrievalEncoder(model_config).eval()
    checkpoint = encoder_serving.save_user_encoder(model, root / "checkpoint", dataset.catalogue.category)
    trained = from_checkpoints(dataset, checkpoint, None)
    if refused_ranker:
        trained = replace(trained, ranker=_tiny_ranker(), ranker_served=False)
    return write_bundle(trained, dataset, root / "bundle")


def _tiny_ranker() -> Any:
    """An untrained tiny OnePiece ranker (``models.ranker.serving.TorchCandidateRanker``)."""
    import numpy as np

    from models.data.schema import RATING_FUNNEL
    from models.ranker.anchors import AnchorSources
    from models.ranker.retrieval import CooccurrenceTable
    from models.ranker.serving import TorchCandidateRanker
    from tests.models.ranker.fakes import SIZES, tiny_config, tiny_model

    neighbours = np.full((SIZES.num_items, 2), 2, dtype=np.int64)
    table = CooccurrenceTable(
        neighbours, np.ones((SIZES.num_items, 2), np.float32), np.ones(SIZES.num_items, np.float32)
    )
    sources = AnchorSources(table, popular_latest=np.array([2, 3]))
    return TorchCandidateRanker(tiny_model(tiny_config()), sources, RATING_FUNNEL, "refused-ranker")


def make_settings(bundle_path: Path, **overrides: Any) -> Settings:
    # no start-up vector warm-up unless a test asks: most tests follow a user from online to cache
    values: dict[str, Any] = {
        "bundle_path": bundle_path,
        "redis_url": None,
        "worker_block_ms": 50,
        "warm_vectors": False,
        "worker_process": False,  # the embedded worker computes in a thread: no child process per app
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_app(
    settings: Settings, bundle_loader: BundleLoader = FakeBundle.load
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real app with its lifespan (bundle load, warm-up, store, worker), cleaned up afterwards."""
    app = create_app(settings, bundle_loader=bundle_loader)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tandem.test") as client:
                yield app, client
    finally:
        if settings.redis_url is not None:
            await _flush(settings)


async def _flush(settings: Settings) -> None:
    from app.stores.redis_cluster import ClusterConnection
    from app.stores.redis_connection import RedisConnection

    assert settings.redis_url is not None
    kind = ClusterConnection if settings.redis_cluster else RedisConnection
    connection = kind(settings.redis_url, key_prefix=settings.key_prefix, connect_timeout_s=0.5)
    try:
        await connection.flush_prefix()
    except Exception:  # a test that stopped its own Redis: nothing left to clean
        pass
    finally:
        await connection.close()
