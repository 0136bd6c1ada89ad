"""app/services/vector_process.py: the embedded worker's encoder forwards in a child process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.core import metrics
from app.services.serving_bundle import ServingBundle, load_bundle
from app.services.vector_process import VectorProcess, child_compute
from app.services.worker import compute_vectors
from app.stores.base import StoredEvent, UserHistoryRecord
from tests.app.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio


def some_records(serving: ServingBundle) -> dict[str, UserHistoryRecord]:
    """Three users' stored histories over the bundle's items."""
    items = list(serving.item_index)[:12]
    return {
        f"u{n}": UserHistoryRecord(
            [StoredEvent(items[(n * 5 + k) % len(items)], 2, 1.0, 1_000 + 60 * k) for k in range(3 + n)],
            7 + n,
        )
        for n in range(3)
    }


def fallbacks() -> float:
    return float(metrics.WORKER_PROCESS_FALLBACKS._value.get())


async def test_the_child_computes_the_vectors_a_thread_would(encoder_bundle: Path) -> None:
    serving = ServingBundle(load_bundle(encoder_bundle))
    records = some_records(serving)
    expected = compute_vectors(serving, records)
    process = VectorProcess()
    before = fallbacks()
    try:
        got = await process.compute(serving, encoder_bundle, records)
        again = await process.compute(serving, encoder_bundle, records)  # the same child, bundle kept
    finally:
        process.close()
    assert fallbacks() == before
    assert sorted(got) == sorted(expected) == ["u0", "u1", "u2"]
    for user, vector in expected.items():
        np.testing.assert_allclose(got[user].vector, vector.vector, atol=1e-6)
        np.testing.assert_allclose(again[user].vector, vector.vector, atol=1e-6)
        assert (got[user].sequence, got[user].model_version) == (vector.sequence, serving.model_version)


async def test_a_child_that_cannot_serve_that_version_falls_back_to_a_thread(encoder_bundle: Path) -> None:
    serving = ServingBundle(load_bundle(encoder_bundle))
    records = some_records(serving)
    with pytest.raises(RuntimeError, match="the child loaded"):
        child_compute(str(encoder_bundle), "another-version", 200, records)  # checked in this process
    stale: Any = ServingBundle(load_bundle(encoder_bundle))
    stale.model_version = "another-version"
    process = VectorProcess()
    before = fallbacks()
    try:
        got = await process.compute(stale, encoder_bundle, records)
    finally:
        process.close()
    assert fallbacks() - before == 1 and sorted(got) == ["u0", "u1", "u2"]


async def test_the_embedded_worker_writes_vectors_from_its_child(encoder_bundle: Path) -> None:
    settings = make_settings(encoder_bundle, worker_process=True)
    async with running_app(settings, load_bundle) as (app, client):
        services = app.state.services
        assert services.worker.vector_process is not None
        item = next(iter(services.holder.current.item_index))
        event = {"user_id": "newbie", "item_id": item, "action": "click", "timestamp": 5}
        assert (await client.post("/v1/events", json={"events": [event]})).status_code == 202
        state = None
        for _ in range(600):  # the child starts (spawn, torch import, bundle load) on the first batch
            state = await services.stores.users.get_state("newbie")
            if state.vector is not None:
                break
            await asyncio.sleep(0.05)
        assert state is not None and state.vector is not None and state.vector.sequence == 1
        serving = services.holder.current
        expected = compute_vectors(serving, {"newbie": UserHistoryRecord(state.events, state.sequence)})
        np.testing.assert_allclose(state.vector.vector, expected["newbie"].vector, atol=1e-6)
        children = services.worker.vector_process.pids()
    assert services.worker.vector_process.pids() == []  # closed with the worker
    assert children and all(gone(pid) for pid in children)


def gone(pid: int, deadline_s: float = 20.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within the deadline."""
    stop = time.monotonic() + deadline_s
    while time.monotonic() < stop:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split(") ")[1].startswith("Z"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


ORPHAN = """
import asyncio, os, sys
from pathlib import Path
from app.services.serving_bundle import ServingBundle, load_bundle
from app.services.vector_process import VectorProcess
from tests.app.services.test_vector_process import some_records

async def main():
    path = Path(sys.argv[1])
    serving = ServingBundle(load_bundle(path))
    process = VectorProcess()
    await process.compute(serving, path, some_records(serving))
    print(process.pids()[0], flush=True)
    os._exit(0)  # no close(): the parent just dies

asyncio.run(main())
"""


def test_the_child_ends_when_its_parent_dies_without_closing(encoder_bundle: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", ORPHAN, str(encoder_bundle)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert gone(int(run.stdout.split()[0]))


async def test_a_child_that_cannot_load_the_bundle_falls_back_to_a_thread(
    encoder_bundle: Path, tmp_path: Path
) -> None:
    serving = ServingBundle(load_bundle(encoder_bundle))
    records = some_records(serving)
    process = VectorProcess()
    before = fallbacks()
    try:
        got = await process.compute(serving, tmp_path / "no-bundle-here", records)
    finally:
        process.close()
    assert fallbacks() - before == 1 and sorted(got) == ["u0", "u1", "u2"]
