"""Milvus that cannot serve a bundle (``make scale``): ``tandem serve`` exits 1 naming the URI and the
collection (Milvus not answering, a collection of another dimension under the bundle's name); a reload to
such a bundle is refused with 422 while the current bundle keeps serving from its own collection."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.services.serving_bundle import load_bundle
from app.startup import milvus_target
from models.bundle.load import Bundle
from models.index.milvus import _build, collection_name
from tests.app.conftest import build_encoder_bundle, free_port, make_settings, running_app
from tests.milvus_server import LiteServer, milvus_lite_server

pytestmark = pytest.mark.scale
PREFIX = "startup"
ADMIN = {"X-Admin-Key": "secret-admin"}


@pytest.fixture(autouse=True)
def _milvus_installed() -> None:
    pytest.importorskip("pymilvus", reason="make scale installs the scale extra")


@pytest.fixture
def server(tmp_path: Path) -> LiteServer:
    with milvus_lite_server(tmp_path / "milvus") as running:
        yield running  # type: ignore[misc]


def _wrong_collection(uri: str, bundle: Path, dim: int = 3) -> str:
    """A collection of ``dim``-dimensional vectors under the name ``bundle``'s index would publish."""
    from pymilvus import MilvusClient

    name = collection_name(PREFIX, Bundle.load(bundle).index_version)
    client = MilvusClient(uri)
    _build(client, name, np.random.default_rng(0).normal(size=(12, dim)).astype(np.float32), 30.0)
    client.close()
    return name


def _serve(bundle: Path, uri: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TANDEM_REDIS_URL": "",
        "TANDEM_INDEX_BACKEND": "milvus",
        "TANDEM_MILVUS_URI": uri,
        "TANDEM_KEY_PREFIX": PREFIX,
    }
    command = [sys.executable, "-m", "cli.main", "serve", "--port", str(free_port()), "--bundle", str(bundle)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_serve_exits_1_when_milvus_does_not_answer(encoder_bundle: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    done = _serve(encoder_bundle, uri)
    assert done.returncode == 1
    name = collection_name(PREFIX, Bundle.load(encoder_bundle).index_version)
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and uri in lines[0] and name in lines[0]


def test_serve_exits_1_on_a_collection_of_another_dimension(encoder_bundle: Path, server: LiteServer) -> None:
    name = _wrong_collection(server.uri, encoder_bundle)
    done = _serve(encoder_bundle, server.uri)
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and name in lines[0] and "dimension 3" in lines[0], done.stderr[-2000:]


@pytest.mark.anyio
async def test_a_reload_to_a_bundle_milvus_cannot_serve_is_422_and_the_old_one_serves(
    encoder_bundle: Path, server: LiteServer, tmp_path: Path
) -> None:
    other = build_encoder_bundle(tmp_path / "other", weights_seed=1)
    _wrong_collection(server.uri, other)
    settings = make_settings(
        encoder_bundle,
        index_backend="milvus",
        milvus_uri=server.uri,
        key_prefix=PREFIX,
        admin_key="secret-admin",
    )
    loader = functools.partial(load_bundle, milvus=milvus_target(settings))
    async with running_app(settings, loader) as (app, client):
        before = app.state.services.holder.current.model_version
        refused = await client.post("/v1/admin/reload", json={"bundle_path": str(other)}, headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "reload_failed"
        assert "dimension 3" in refused.json()["error"]["message"]
        assert app.state.services.holder.current.model_version == before
        answer = await client.post("/v1/recommend", json={"user_id": "u1", "k": 5})
        assert answer.status_code == 200 and len(answer.json()["items"]) == 5
