"""The near-line worker: stream entries -> users -> batched encoder forward -> vectors written -> ack.

At-least-once and idempotent: an entry is acknowledged only after the vectors of its users are written;
entries a crashed consumer left pending are re-claimed (XAUTOCLAIM) after ``claim_idle_ms``; a vector is a
pure function of the user's stored history (its request context is taken from the newest event, not the
clock), so processing an entry twice writes the same vector.

Resilience: the loop never exits on its own. A store outage pauses and retries; a vanished consumer group
(Redis flushed or failed over to an empty replica) is recreated by the store; any other error is logged,
counted and retried after a pause. Every ``maintain_every_s`` the worker deletes acknowledged stream
entries (the stream keeps only unprocessed ones) and removes consumers idle ``consumer_idle_ms`` with
nothing pending (crashed workers, after their entries were re-claimed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time

import numpy as np

from app.core import metrics
from app.services.serving_bundle import BundleHolder, ServingBundle
from app.services.vector_process import VectorProcess
from app.stores.base import (
    EventStream,
    StoredVector,
    StoreUnavailable,
    StreamEntry,
    UserHistoryRecord,
    UserStateStore,
)
from models.types import RequestContext, UserHistory

log = logging.getLogger("tandem.worker")
# Measured (docs/operations.md): on CPU a batch costs as much as its longest history, so users are sorted
# by history length and encoded in small batches; 8 similar-length users beat 1 by ~1.4x, 32 mixed lose 2.4x.
ENCODE_CHUNK = 8


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _context_of(history: UserHistory) -> RequestContext:
    """The anticipated next request: the newest event's time, scene and device."""
    if len(history) == 0:
        return RequestContext(timestamp=0)
    return RequestContext(
        timestamp=int(history.timestamp[-1]), scene=int(history.scene[-1]), device=int(history.device[-1])
    )


def compute_vectors(serving: ServingBundle, records: dict[str, UserHistoryRecord]) -> dict[str, StoredVector]:
    """Users' stored histories -> StoredVector each (users without events are skipped). CPU work."""
    import torch

    assert serving.encoder is not None
    users = sorted(
        (user for user, record in records.items() if record.events), key=lambda u: len(records[u].events)
    )
    histories = [serving.history_from_events(records[user].events) for user in users]
    out: dict[str, StoredVector] = {}
    now = time.time()
    with torch.inference_mode():
        for start in range(0, len(users), ENCODE_CHUNK):
            chunk = slice(start, start + ENCODE_CHUNK)
            batch = histories[chunk]
            vectors = np.asarray(serving.encoder.encode(batch, [_context_of(h) for h in batch]), np.float32)
            for user, history, vector in zip(users[chunk], batch, vectors, strict=True):
                newest = int(history.timestamp.max())
                out[user] = StoredVector(vector, serving.model_version, records[user].sequence, newest, now)
    return out


class VectorWorker:
    """One consumer of the event stream's worker group; reads histories and writes vectors in ``users``."""

    def __init__(
        self,
        events: EventStream,
        users: UserStateStore,
        holder: BundleHolder,
        *,
        consumer: str | None = None,
        batch_size: int = 256,
        block_ms: int = 500,
        claim_idle_ms: int = 30_000,
        vector_ttl_s: int = 86400,
        claim_every_s: float = 5.0,
        consumer_idle_ms: int = 3_600_000,
        maintain_every_s: float = 5.0,
        warm_known_users: bool = False,
        coalesce_ms: int = 50,
        vector_process: VectorProcess | None = None,
    ):
        self.events = events
        self.users = users
        self.holder = holder
        self.consumer = consumer or default_consumer_name()
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.vector_ttl_s = vector_ttl_s
        self.claim_every_s = claim_every_s
        self.consumer_idle_ms = consumer_idle_ms
        self.maintain_every_s = maintain_every_s
        self.warm_known_users = warm_known_users
        self.coalesce_ms = coalesce_ms
        self.vector_process = vector_process  # None: the encoder runs in a thread of this process
        self.warmed: int | None = None  # vectors written by the latest warm-up (None: none finished yet)
        self._last_claim = -float("inf")
        self._last_maintenance = -float("inf")
        self._stopping = asyncio.Event()

    async def next_entries(self) -> list[StreamEntry]:
        """Stale pending entries of other consumers first (every claim_every_s), else new ones."""
        now = time.monotonic()
        if now - self._last_claim >= self.claim_every_s:
            self._last_claim = now
            claimed = await self.events.claim_stale(self.consumer, self.claim_idle_ms, self.batch_size)
            if claimed:
                metrics.WORKER_CLAIMED.inc(len(claimed))
                log.info("re-claimed pending entries", extra={"entries": len(claimed)})
                return claimed
        return await self.events.read_new(self.consumer, self.batch_size, self.block_ms)

    async def process(self, entries: list[StreamEntry]) -> int:
        """Recompute and write the vectors of the entries' users; returns how many were written."""
        users = list(dict.fromkeys(user for entry in entries for user in entry.users))
        serving = self.holder.current
        if not users or serving.encoder is None:  # baseline bundles serve straight from the history
            return 0
        started = time.perf_counter()
        records = await self.users.get_histories(users)
        vectors = await self._compute(serving, records)
        await self.users.put_vectors(vectors, self.vector_ttl_s)
        metrics.WORKER_BATCH_SECONDS.observe(time.perf_counter() - started)
        metrics.WORKER_VECTORS.inc(len(vectors))
        return len(vectors)

    async def _compute(
        self, serving: ServingBundle, records: dict[str, UserHistoryRecord]
    ) -> dict[str, StoredVector]:
        """``compute_vectors`` in the worker's child process when it has one, else in a thread."""
        if self.vector_process is not None:
            return await self.vector_process.compute(serving, self.holder.path, records)
        return await asyncio.to_thread(compute_vectors, serving, records)

    async def step(self) -> int:
        """Read (or claim), process, acknowledge one batch; returns entries acknowledged. A read that finds
        fewer than a batch waits ``coalesce_ms`` and takes what arrived meanwhile: the events of one user
        in that window cost one recompute (measured in docs/performance.md)."""
        entries = await self.next_entries()
        if not entries:
            return 0
        if self.coalesce_ms and len(entries) < self.batch_size:
            await self._pause(self.coalesce_ms / 1000)
            entries += await self.events.read_new(self.consumer, self.batch_size - len(entries), 1)
        await self.process(entries)
        await self.events.ack([entry.entry_id for entry in entries])
        metrics.WORKER_ENTRIES.inc(len(entries))
        return len(entries)

    async def report_backlog(self) -> None:
        backlog = await self.events.backlog()
        metrics.STREAM_LAG.set(backlog.lag)
        metrics.STREAM_PENDING.set(backlog.pending)

    async def maintain(self) -> None:
        """Backlog gauges, trim acknowledged entries, forget dead consumers (every maintain_every_s)."""
        if time.monotonic() - self._last_maintenance < self.maintain_every_s:
            return
        self._last_maintenance = time.monotonic()
        await self.report_backlog()
        metrics.STREAM_TRIMMED.inc(await self.events.trim_processed())
        removed = await self.events.remove_idle_consumers(self.consumer_idle_ms, keep=self.consumer)
        if removed:
            metrics.CONSUMERS_REMOVED.inc(len(removed))
            log.info("removed idle consumers", extra={"consumers": removed})

    def stop(self) -> None:
        self._stopping.set()

    async def warm_vectors(self, chunk: int = 256) -> int:
        """Near-line pre-computation at start and after a reload: vectors for the bundle's known users (the
        histories the API seeds into the store), so their requests hit the cache, not the encoder.
        Returns how many were written; a store outage ends the warm-up early (requests then compute)."""
        serving = self.holder.current
        if serving.encoder is None:
            return 0
        users = list(serving.fallback_histories)
        written = 0
        started = time.perf_counter()
        for start in range(0, len(users), chunk):
            if self._stopping.is_set():
                break
            try:
                records = await self.users.get_histories(users[start : start + chunk])
                vectors = await self._compute(serving, records)
                await self.users.put_vectors(vectors, self.vector_ttl_s)
            except StoreUnavailable as exc:
                metrics.STORE_DEGRADED.labels("worker").inc()
                log.warning("store unavailable; vector warm-up stopped", extra={"error": str(exc)})
                break
            written += len(vectors)
            metrics.WORKER_VECTORS.inc(len(vectors))
        log.info("warmed user vectors", extra={"vectors": written, "seconds": time.perf_counter() - started})
        self.warmed = written
        return written

    async def run(self, idle_sleep_s: float = 0.0, backoff_s: float = 1.0) -> None:
        """Loop until ``stop()``; store outages and unexpected errors pause and retry, never exit."""
        log.info("worker started", extra={"consumer": self.consumer})
        group_ready = False
        warmed_version: str | None = None
        while not self._stopping.is_set():
            try:
                # at start and after every bundle reload (a new model makes every cached vector stale)
                if self.warm_known_users and self.holder.current.model_version != warmed_version:
                    warmed_version = self.holder.current.model_version
                    await self.warm_vectors()
                if not group_ready:
                    await self.events.ensure_group()
                    group_ready = True
                done = await self.step()
                await self.maintain()
            except StoreUnavailable as exc:
                metrics.STORE_DEGRADED.labels("worker").inc()
                log.warning("store unavailable; worker retrying", extra={"error": str(exc)})
                await self._pause(backoff_s)
                continue
            except Exception:
                metrics.WORKER_ERRORS.inc()
                log.exception("worker step failed; retrying")
                group_ready = False  # whatever broke, start again from a known group
                await self._pause(backoff_s)
                continue
            if not done and idle_sleep_s:
                await self._pause(idle_sleep_s)
        if self.vector_process is not None:
            self.vector_process.close()
        log.info("worker stopped", extra={"consumer": self.consumer})

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
        except TimeoutError:
            return
