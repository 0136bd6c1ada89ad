"""app/services/recommend.py: where a request's CPU work runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from app.services import recommend as recommend_module
from app.services.serving_bundle import load_bundle
from app.services.user_vectors import wait_for_write_backs
from models.candidates.generator import CandidateGenerator
from models.candidates.merge import MergeConfig
from models.candidates.served import ServedPipeline
from tests.app.conftest import make_settings, running_app
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio


async def threads_that_selected(bundle: Path, loader: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two recommends for a known user (online, then from the cache): the thread that ran each one's
    CPU work (``_select``)."""
    names: list[str] = []
    select = recommend_module._select

    def recording(*args: Any) -> Any:
        names.append(threading.current_thread().name)
        return select(*args)

    monkeypatch.setattr(recommend_module, "_select", recording)
    async with running_app(make_settings(bundle), loader) as (app, client):
        user = next(iter(app.state.services.holder.current.fallback_histories))
        for _ in range(2):
            answer = await client.post("/v1/recommend", json={"user_id": user, "k": 5})
            assert answer.status_code == 200 and len(answer.json()["items"]) == 5
            await wait_for_write_backs()
    return names


async def test_short_work_runs_on_the_loop_and_model_forwards_in_a_thread(
    baseline_bundle: Path, bundle_v1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.current_thread().name
    # no encoder, no ranker: the vector is resolved at once and the work is short numpy work
    assert await threads_that_selected(baseline_bundle, load_bundle, monkeypatch) == [loop_thread] * 2
    # the fake bundle serves a ranker: its forward keeps the thread hop, cached vector or not
    names = await threads_that_selected(bundle_v1, FakeBundle.load, monkeypatch)
    assert len(names) == 2 and all(name.startswith("tandem-cpu") for name in names)


class _Ranker:
    def __init__(self, kind: str) -> None:
        self.kind = kind


@pytest.mark.parametrize(
    ("kind", "use_ranker", "on_loop"),
    [
        (None, False, True),  # merged order (the encoder, when it runs, too)
        ("gbdt", True, True),  # tree ranker: numpy features + a compiled forward
        ("onepiece", True, False),  # a transformer forward keeps its thread
        ("gbdt", False, True),  # shipped but refused by the gate
    ],
)
def test_which_work_runs_on_the_loop(kind: str | None, use_ranker: bool, on_loop: bool) -> None:
    pipeline = ServedPipeline(
        CandidateGenerator([], MergeConfig((), (), (), total=1)),
        None if kind is None else _Ranker(kind),  # type: ignore[arg-type]
        use_ranker,
    )
    assert recommend_module.runs_on_the_loop(pipeline) is on_loop
