"""The worker's loop, maintenance and warm-up in the details ``make mutate`` found untested
(docs/results/mutation.md): when the group is (re)created and the bundle warmed, what maintenance asks the
stream, the logs and metrics an operator reads, a warm-up cut short by an outage, baseline bundles."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from app.core import metrics
from app.core.config import Settings
from app.services.serving_bundle import BundleHolder
from app.services.user_vectors import encode_one
from app.services.worker import ENCODE_CHUNK, VectorWorker, _context_of, compute_vectors
from app.stores.base import StoredEvent, StoreUnavailable, StreamEntry, UserHistoryRecord, keyed
from app.stores.memory import MemoryEventStream, MemoryUsers
from models.types import RequestContext, UserHistory
from tests.app.fake_bundle import FakeBundle

pytestmark = pytest.mark.anyio


class SpyStream(MemoryEventStream):
    """The in-process stream, recording what maintenance and the loop ask of it."""

    def __init__(self, users: MemoryUsers) -> None:
        super().__init__(users)
        self.calls: list[tuple[Any, ...]] = []

    async def ensure_group(self) -> None:
        self.calls.append(("ensure_group",))

    async def trim_processed(self) -> int:
        self.calls.append(("trim",))
        return 3

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        self.calls.append(("claim", min_idle_ms, count))
        return await super().claim_stale(consumer, min_idle_ms, count)

    async def remove_idle_consumers(self, min_idle_ms: int, keep: str) -> list[str]:
        self.calls.append(("remove", min_idle_ms, keep))
        return ["dead"]


async def spy_worker(bundle: Path, **options: Any) -> tuple[VectorWorker, SpyStream]:
    holder = BundleHolder(FakeBundle.load)
    await holder.load(bundle)
    users = MemoryUsers()
    stream = SpyStream(users)
    worker = VectorWorker(stream, users, holder, consumer="me", block_ms=10, claim_every_s=3600, **options)
    return worker, stream


def value(metric: Any) -> float:
    return float(metric._value.get())


def bought(user: str, item: str, timestamp: int) -> list[tuple[str, StoredEvent]]:
    return [(user, StoredEvent(item, 2, 1.0, timestamp, "home"))]


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tandem.worker" and r.getMessage() == message]


async def test_maintenance_runs_every_interval_and_reports(
    bundle_v1: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], perf_counter=time.perf_counter, time=time.time)
    monkeypatch.setattr("app.services.worker.time", clock)
    worker, stream = await spy_worker(bundle_v1, consumer_idle_ms=1234, maintain_every_s=60)
    await stream.append_events(keyed(bought("a", "i1", 1)))
    trimmed, removed = value(metrics.STREAM_TRIMMED), value(metrics.CONSUMERS_REMOVED)
    with caplog.at_level(logging.INFO, logger="tandem.worker"):
        await worker.maintain()
    assert stream.calls == [("trim",), ("remove", 1234, "me")]
    assert (value(metrics.STREAM_LAG), value(metrics.STREAM_PENDING)) == (1.0, 0.0)
    assert value(metrics.STREAM_TRIMMED) - trimmed == 3 and value(metrics.CONSUMERS_REMOVED) - removed == 1
    [log] = records(caplog, "removed idle consumers")
    assert log.__dict__["consumers"] == ["dead"]
    now[0] = 159.9
    await worker.maintain()
    assert len(stream.calls) == 2  # not yet
    now[0] = 160.0  # maintain_every_s after the last: due
    await worker.maintain()
    assert len(stream.calls) == 4


async def test_processing_and_the_batch_time_metric(bundle_v1: Path) -> None:
    worker, stream = await spy_worker(bundle_v1)
    assert await worker.process([]) == 0
    await stream.append_events(keyed(bought("a", "i1", 1)))
    seconds = metrics.WORKER_BATCH_SECONDS._sum.get()
    assert await worker.process([StreamEntry("1-0", ["a"])]) == 1
    assert 0 < metrics.WORKER_BATCH_SECONDS._sum.get() - seconds < 60
    worker.holder.current.encoder = None  # a baseline bundle: nothing to compute
    assert await worker.process([StreamEntry("1-0", ["a"])]) == 0
    assert await worker.warm_vectors() == 0


async def test_the_warm_up_writes_every_known_user_and_stops_at_an_outage(
    bundle_v1: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = await spy_worker(bundle_v1)
    known = len(worker.holder.current.fallback_histories)
    assert known >= 3
    seeded = [
        (user, [StoredEvent("i1", 2, 1.0, 1, "home")]) for user in worker.holder.current.fallback_histories
    ]
    assert await worker.users.seed_histories(seeded) == known  # as the API seeds them
    with caplog.at_level(logging.INFO, logger="tandem.worker"):
        assert await worker.warm_vectors(chunk=1) == known
    [done] = records(caplog, "warmed user vectors")
    assert done.__dict__["vectors"] == known and 0 <= done.__dict__["seconds"] < 60

    read = worker.users.get_histories
    calls = {"n": 0}

    async def failing_second_read(users: list[str]) -> dict[str, UserHistoryRecord]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise StoreUnavailable("redis get_histories failed: down")
        return await read(users)

    worker.users.get_histories = failing_second_read  # type: ignore[method-assign]
    degraded = value(metrics.STORE_DEGRADED.labels("worker"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tandem.worker"):
        assert await worker.warm_vectors(chunk=1) == 1  # the first chunk, then the outage
    assert worker.warmed == 1
    assert value(metrics.STORE_DEGRADED.labels("worker")) - degraded == 1
    [warning] = records(caplog, "store unavailable; vector warm-up stopped")
    assert warning.__dict__["error"] == "redis get_histories failed: down"


async def test_the_loop_creates_the_group_again_only_after_an_error_and_warms_once(
    bundle_v1: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker, stream = await spy_worker(bundle_v1, warm_known_users=True)
    warmed = {"n": 0}
    warm = worker.warm_vectors

    async def counted_warm_up(chunk: int = 256) -> int:
        warmed["n"] += 1
        return await warm(chunk)

    worker.warm_vectors = counted_warm_up  # type: ignore[method-assign]
    read = stream.read_new
    failures: list[Exception] = [StoreUnavailable("redis read_new failed: down"), RuntimeError("a bug")]

    async def failing_reads(consumer: str, count: int, block_ms: int) -> list[StreamEntry]:
        if failures:
            raise failures.pop(0)
        return await read(consumer, count, block_ms)

    stream.read_new = failing_reads  # type: ignore[method-assign]
    degraded, errors = value(metrics.STORE_DEGRADED.labels("worker")), value(metrics.WORKER_ERRORS)
    await stream.append_events(keyed(bought("a", "i1", 1)))

    async def vector_of(user: str) -> bool:
        for _ in range(300):
            if (await worker.users.get_state(user)).vector is not None:
                return True
            await asyncio.sleep(0.01)
        return False

    with caplog.at_level(logging.INFO, logger="tandem.worker"):
        task = asyncio.create_task(worker.run(idle_sleep_s=0.01, backoff_s=0.01))
        assert await vector_of("a")
        await asyncio.sleep(0.1)  # a few idle rounds
        await stream.append_events(keyed(bought("b", "i2", 2)))
        assert await vector_of("b")  # an idle loop still reads new events
        worker.stop()
        await asyncio.wait_for(task, timeout=5)
    assert stream.calls.count(("ensure_group",)) == 2  # at start, and after the unexpected error
    assert warmed["n"] == 1  # the bundle did not change: no second warm-up
    assert value(metrics.STORE_DEGRADED.labels("worker")) - degraded == 1
    assert value(metrics.WORKER_ERRORS) - errors == 1
    [started] = records(caplog, "worker started")
    assert started.__dict__["consumer"] == "me"
    [retrying] = records(caplog, "store unavailable; worker retrying")
    assert retrying.__dict__["error"] == "redis read_new failed: down"
    [stopped] = records(caplog, "worker stopped")
    assert stopped.__dict__["consumer"] == "me"
    [failed] = records(caplog, "worker step failed; retrying")
    assert failed.exc_info is not None and str(failed.exc_info[1]) == "a bug"


def test_the_context_of_a_stored_history_is_its_newest_event() -> None:
    history = UserHistory(
        item=np.array([3, 4]),
        action=np.array([1, 2]),
        value=np.ones(2, np.float32),
        timestamp=np.array([10, 20]),
        scene=np.array([1, 2]),
        device=np.array([0, 3]),
    )

    def fields(context: RequestContext) -> tuple[int, int, int]:
        return context.timestamp, context.scene, context.device

    assert fields(_context_of(history)) == (20, 2, 3)
    assert fields(_context_of(UserHistory.empty())) == fields(RequestContext(timestamp=0))


async def test_every_user_of_a_large_batch_gets_their_own_vector(bundle_v1: Path) -> None:
    worker, stream = await spy_worker(bundle_v1)
    users = [f"u{n}" for n in range(2 * ENCODE_CHUNK + 3)]  # three chunks, lengths all different
    for n, user in enumerate(users):
        await stream.append_events(
            keyed([(user, StoredEvent(f"i{k}", 2, 1.0, k, "home")) for k in range(n + 1)])
        )
    serving = worker.holder.current
    records = await worker.users.get_histories(users)
    vectors = compute_vectors(serving, records)
    assert sorted(vectors) == sorted(users)
    for user in users:
        history = serving.history_from_events(records[user].events)
        expected = encode_one(serving, history, _context_of(history))
        assert np.allclose(vectors[user].vector, expected, atol=1e-6), user
        assert vectors[user].sequence == records[user].sequence


async def test_the_worker_defaults_are_the_services(bundle_v1: Path) -> None:
    worker, _ = await spy_worker(bundle_v1)
    bare = VectorWorker(worker.events, worker.users, worker.holder)
    fields = Settings.model_fields
    assert bare.batch_size == fields["worker_batch_size"].default
    assert bare.block_ms == fields["worker_block_ms"].default
    assert bare.claim_idle_ms == fields["worker_claim_idle_ms"].default
    assert bare.vector_ttl_s == fields["vector_ttl_s"].default
    assert bare.consumer_idle_ms == fields["worker_consumer_idle_ms"].default
    assert bare.coalesce_ms == fields["worker_coalesce_ms"].default
    assert bare.warm_known_users is False
    # not settings: stale entries are looked for, and maintenance runs, every 5 s
    assert bare.claim_every_s == bare.maintain_every_s == 5.0


async def test_a_stopped_worker_warms_nothing_and_stale_entries_are_claimed(
    bundle_v1: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker, stream = await spy_worker(bundle_v1, claim_idle_ms=0)
    worker.stop()
    assert await worker.warm_vectors() == 0 and worker.warmed == 0
    await stream.append_events(keyed(bought("a", "i1", 1)))
    await stream.read_new("crashed", 10, 0)  # pending with a consumer that died
    claimed = value(metrics.WORKER_CLAIMED)
    worker.claim_every_s = 0.0
    with caplog.at_level(logging.INFO, logger="tandem.worker"):
        assert [e.users for e in await worker.next_entries()] == [["a"]]
    assert value(metrics.WORKER_CLAIMED) - claimed == 1
    [log] = records(caplog, "re-claimed pending entries")
    assert log.__dict__["entries"] == 1


async def test_stale_entries_are_looked_for_every_claim_interval(
    bundle_v1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    clock = SimpleNamespace(monotonic=lambda: now[0], perf_counter=time.perf_counter, time=time.time)
    monkeypatch.setattr("app.services.worker.time", clock)
    worker, stream = await spy_worker(bundle_v1, claim_idle_ms=777, batch_size=9)
    worker.claim_every_s = 5.0
    assert await worker.step() == 0  # nothing to read: nothing acknowledged
    now[0] = 104.9
    await worker.next_entries()
    now[0] = 105.0  # claim_every_s after the last look
    await worker.next_entries()
    assert stream.calls == [("claim", 777, 9), ("claim", 777, 9)]


async def test_events_arriving_within_the_coalesce_window_cost_one_recompute(
    bundle_v1: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[list[str]] = []

    def counting(serving: Any, records: dict[str, Any]) -> dict[str, Any]:
        computed.append(sorted(records))
        return compute_vectors(serving, records)

    monkeypatch.setattr("app.services.worker.compute_vectors", counting)
    for coalesce_ms, batches in [(300, [["a", "b"]]), (0, [["a"], ["a", "b"]])]:
        worker, stream = await spy_worker(bundle_v1, coalesce_ms=coalesce_ms)
        computed.clear()
        await stream.append_events(keyed(bought("a", "i1", 1)))
        first = asyncio.create_task(worker.step())
        await asyncio.sleep(0.05)  # inside the window: the step is still waiting for more
        await stream.append_events(keyed(bought("a", "i2", 2)))
        await stream.append_events(keyed(bought("b", "i1", 3)))
        acknowledged = await first
        if coalesce_ms == 0:  # no window: the first step took the one entry there was
            assert acknowledged == 1
            acknowledged += await worker.step()
        assert acknowledged == 3 and computed == batches, coalesce_ms
        states = {user: await worker.users.get_state(user) for user in ("a", "b")}
        assert all(
            s is not None and s.vector is not None and s.vector.sequence == s.sequence
            for s in states.values()
        )
