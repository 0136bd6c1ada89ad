"""``tandem worker``'s start-up only loads: with no bundle configured and nothing built it starts from the
baseline bundle it builds (no training), and follows the bundle registry from there."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import Settings
from cli.worker import start
from tests.app.test_startup import forbid_training, tiny_default_data

pytestmark = pytest.mark.anyio


async def test_the_worker_starts_from_the_baseline_without_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forbid_training(monkeypatch)
    tiny_default_data(monkeypatch)
    # no Redis call is made at start-up: the stores are opened, not used
    settings = Settings(
        bundle_path=None,
        redis_url="redis://127.0.0.1:1/0",
        var_dir=tmp_path / "var",
        data_dir=tmp_path / "no-data",
        warm_vectors=False,
    )
    process = await start(settings, consumer="test")
    try:
        assert process.holder.current.served_path.startswith("baseline:")
        assert process.holder.path is not None and process.holder.path.name.endswith("-baseline")
        assert process.worker.consumer == "test" and process.sync.process.startswith("worker:")
    finally:
        await process.stores.connection.close()
