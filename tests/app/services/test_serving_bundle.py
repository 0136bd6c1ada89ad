"""Serving a real bundle built by models.bundle (baseline-only, tiny synthetic data) via the real loader."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from app.main import create_app
from app.services.serving_bundle import ServingBundle, load_bundle
from app.services.user_vectors import wait_for_write_backs
from tests.app.conftest import make_settings

pytestmark = pytest.mark.anyio


def test_serving_bundle_reads_the_real_bundle(baseline_bundle: Path) -> None:
    serving = ServingBundle(load_bundle(baseline_bundle))
    assert serving.encoder is None and serving.item_vectors is None
    assert serving.served_path.startswith("baseline:") and not serving.ranker_served
    assert serving.fallback_histories and serving.scene_index  # histories and the scene vocabulary
    _, history = next(iter(serving.fallback_histories.items()))
    events = serving.events_from_history(history)
    rebuilt = serving.history_from_events(events)
    assert np.array_equal(np.sort(rebuilt.item), np.sort(history.item))
    assert np.array_equal(np.sort(rebuilt.scene), np.sort(history.scene))
    assert (
        serving.popular_order[0] >= 2
        and serving.popularity[serving.popular_order[0]] >= serving.popularity[serving.popular_order[-1]]
    )


async def test_baseline_bundle_serves_every_endpoint(baseline_bundle: Path) -> None:
    app = create_app(make_settings(baseline_bundle))  # the default loader: models.bundle.load.Bundle.load
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tandem.test") as client:
            serving = app.state.services.holder.current
            serving_user = next(iter(serving.fallback_histories))
            known = (await client.post("/v1/recommend", json={"user_id": serving_user, "k": 5})).json()
            assert known["meta"]["served_by"] == "online"
            assert {item["source"] for item in known["items"]} <= {"cooccurrence", "transitions", "popular"}
            assert known["items"][0]["source"] in ("cooccurrence", "transitions") and len(known["items"]) == 5
            unknown = (await client.post("/v1/recommend", json={"user_id": "nobody-here", "k": 5})).json()
            assert unknown["meta"]["served_by"] == "popular"
            anchor = serving.raw_item(int(serving.popular_order[0]))
            cold = (
                await client.post("/v1/recommend", json={"user_id": "nobody", "anchors": [anchor]})
            ).json()
            assert cold["meta"]["served_by"] == "cold_start" and cold["items"][0]["source"] == "cooccurrence"
            similar = (await client.get(f"/v1/items/{anchor}/similar", params={"k": 5})).json()
            assert similar["meta"]["served_by"] == "cooccurrence"
            assert anchor not in [item["item_id"] for item in similar["items"]]
            ready = (await client.get("/readyz")).json()
            assert ready["detail"]["serving_path"].startswith("baseline:")


async def test_encoder_bundle_serves_ann_cache_cold_start_and_worker_vectors(encoder_bundle: Path) -> None:
    import asyncio

    app = create_app(make_settings(encoder_bundle))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tandem.test") as client:
            services = app.state.services
            serving = services.holder.current
            assert serving.served_path == "session_encoder" and serving.item_vectors is not None
            user = next(iter(serving.fallback_histories))
            first = (await client.post("/v1/recommend", json={"user_id": user, "k": 5})).json()
            await wait_for_write_backs()  # the online vector is cached in the background
            second = (await client.post("/v1/recommend", json={"user_id": user, "k": 5})).json()
            assert (first["meta"]["served_by"], second["meta"]["served_by"]) == ("online", "cache")
            assert first["items"] == second["items"]
            # the untuned default merge: the ANN list interleaved with the item-to-item lists (and an item
            # that popularity ranks first is named after it; the user vector, and so the ANN list, depends
            # on the request's hour and weekday, so which items those are changes with the clock)
            sources = {i["source"] for i in first["items"]}
            assert "ann" in sources and sources <= {"ann", "cooccurrence", "transitions", "popular"}
            assert first["meta"]["model_version"] == serving.model_version

            anchor = serving.raw_item(int(serving.popular_order[0]))
            cold = (
                await client.post("/v1/recommend", json={"user_id": "nobody", "anchors": [anchor]})
            ).json()
            assert cold["meta"]["served_by"] == "cold_start" and len(cold["items"]) == 10
            similar = (await client.get(f"/v1/items/{anchor}/similar", params={"k": 3})).json()
            assert similar["meta"]["served_by"] == "ann" and len(similar["items"]) == 3

            event = {"user_id": user, "item_id": anchor, "action": "purchase", "timestamp": 1_760_000_000}
            assert (await client.post("/v1/events", json={"events": [event]})).status_code == 202
            for _ in range(100):  # the embedded worker recomputes the vector
                state = await services.stores.users.get_state(user)
                if state.vector is not None and state.vector.newest_event_ts == 1_760_000_000:
                    break
                await asyncio.sleep(0.02)
            assert state.vector is not None and state.vector.sequence == state.sequence
            after = (await client.post("/v1/recommend", json={"user_id": user, "k": 5})).json()
            assert after["meta"]["served_by"] == "cache"
            assert anchor not in [item["item_id"] for item in after["items"]]  # now seen


def test_the_real_bundle_and_the_test_double_pass_through_the_same_door(
    baseline_bundle: Path, encoder_bundle: Path, tmp_path: Path
) -> None:
    from models.bundle.load import ServableBundle
    from tests.app.fake_bundle import FakeBundle

    for bundle in (load_bundle(baseline_bundle), load_bundle(encoder_bundle), FakeBundle(tmp_path)):
        assert isinstance(bundle, ServableBundle)
        serving = ServingBundle(bundle)
        assert serving.model_version == bundle.model_version
        assert serving.index_version == bundle.index_version


def test_the_worker_command_does_not_import_the_web_app() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cli.worker as w; w.runtime_modules(); "
        "print(sorted(m for m in ('app.main', 'fastapi', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


async def test_the_route_serves_what_the_offline_replay_path_computes(encoder_bundle: Path) -> None:
    """/v1/recommend for a known user equals ``ServedPipeline.recommend`` of the pipeline built from the
    bundle on disk by the models package alone (the function the offline replay scores), for the same
    history, request time, user vector and rules: the replay's metrics are metrics of this answer."""
    from models.bundle.load import Bundle
    from models.candidates.rules import ServingRules
    from models.candidates.sources import CandidateRequest
    from models.inference import RequestContext

    settings = make_settings(encoder_bundle)
    k, timestamp = 10, 1_760_000_000
    bundle = Bundle.load(encoder_bundle)
    user, history = next(bundle.recent_histories())
    context = RequestContext(timestamp=timestamp)
    vector = bundle.encoder.encode([history], [context])[0]
    offline = bundle.served_pipeline(settings.candidate_count)
    served = offline.recommend(
        CandidateRequest(history, context, vector), ServingRules(k=k, exclude_seen=True)
    )
    expected = [str(bundle.catalogue.raw_id[item]) for item in served.items]
    assert len(expected) == k and len(set(offline.generator.config.sources)) >= 3  # ANN and item-to-item
    assert not set(served.items.tolist()) & set(history.item.tolist())  # seen items excluded

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tandem.test") as client:
            body = {"user_id": user, "k": k, "context": {"timestamp": timestamp}}
            answer = (await client.post("/v1/recommend", json=body)).json()
    assert answer["meta"]["served_by"] == "online"
    assert [item["item_id"] for item in answer["items"]] == expected
    assert [item["source"] for item in answer["items"]] == served.sources()
    assert np.allclose([item["score"] for item in answer["items"]], served.item_scores(), atol=1e-5)


def test_history_from_events_sorts_keeps_the_newest_and_maps_unknown_names(baseline_bundle: Path) -> None:
    from app.stores.base import StoredEvent
    from models.data.schema import UNKNOWN_ID

    serving = ServingBundle(load_bundle(baseline_bundle), history_length=3)
    known_item = next(iter(serving.item_index))
    scene = next(iter(serving.scene_index))
    events = [
        StoredEvent(known_item, 5, 4.5, 30, scene, None),
        StoredEvent("no-such-item", 2, 1.0, 10, "no-such-scene", "no-such-device"),
        StoredEvent(known_item, 1, 0.0, 5),  # the oldest: cut by history_length 3
        StoredEvent("no-such-item", 3, 2.0, 20, None, None),
    ]
    history = serving.history_from_events(events)
    assert history.timestamp.tolist() == [10, 20, 30]
    assert history.item.tolist() == [UNKNOWN_ID, UNKNOWN_ID, serving.item_index[known_item]]
    assert history.action.tolist() == [2, 3, 5] and history.value.tolist() == [1.0, 2.0, 4.5]
    assert history.scene.tolist() == [UNKNOWN_ID, UNKNOWN_ID, serving.scene_index[scene]]
    assert history.device.tolist() == [UNKNOWN_ID] * 3
    assert history.item.dtype == np.int64 and history.value.dtype == np.float32
    assert len(serving.history_from_events([])) == 0
