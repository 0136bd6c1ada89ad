"""One bundle for every process: the registry's *desired* bundle is the one channel by which every process
learns what to serve after it started.

A successful ``POST /v1/admin/reload``, and a finished background build (``bundle_upgrade``), records the
bundle (path and verified model version) as the desired one in the ``BundleRegistry`` (Redis, or the
API's in-process registry in embedded mode). Every process (each uvicorn worker, each ``tandem worker``)
runs ``BundleSync``: once per ``interval_s`` it reports what it serves (process name -> path, model
version; a heartbeat) and, when the desired bundle differs from its own, loads it. A process that starts
later, or missed a reload while Redis was down, converges on its next tick. A desired bundle that fails
to load in a process (or loads with another version: its files changed) is retried only after
``retry_after_s``, and the process keeps serving what it has.

The reload answer and ``/readyz`` list the processes that reported within ``report_max_age_s`` with their
versions, so a process still on the old bundle is visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from app.core import metrics
from app.core.failures import BundleRefused
from app.services.serving_bundle import BundleHolder, ServingBundle
from app.stores.base import BundleRecord, BundleRegistry, StoreUnavailable

log = logging.getLogger("tandem.bundle_sync")


def process_name(role: str) -> str:
    """``<role>:<host>:<pid>``: unique per process, readable in answers and logs."""
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Reloaded:
    """A reload's outcome: the bundle served here, and whether every live process serves it too."""

    serving: ServingBundle
    converged: bool
    processes: dict[str, str]  # live process -> the model version it serves


class BundleSync:
    """Follows the registry's desired bundle and reports this process's one."""

    def __init__(
        self,
        registry: BundleRegistry,
        holder: BundleHolder,
        process: str,
        *,
        interval_s: float = 1.0,
        retry_after_s: float = 30.0,
        fetch_root: Path | None = None,
        source: tuple[str, str] | None = None,
    ):
        """fetch_root: where bundles named by URL are fetched (``var_dir/fetched``); None: a desired bundle
        with a URL is loaded from its path only. source: (url, sha256) of the bundle served at start when
        it was fetched."""
        self.registry = registry
        self.holder = holder
        self.process = process
        self.fetch_root = fetch_root
        self._source = source
        self.interval_s = interval_s
        self.retry_after_s = retry_after_s
        self.report_max_age_s = max(5.0, 5 * interval_s)
        self._failed: dict[BundleRecord, float] = {}  # desired bundle -> monotonic time of the failure
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()  # a reload and a tick never interleave (no flapping back)

    def serving_record(self) -> BundleRecord:
        serving = self.holder.current
        url, sha256 = self._source or (None, None)
        return BundleRecord(str(self.holder.path), serving.model_version, time.time(), url, sha256)

    async def reload(self, path: Path) -> ServingBundle:
        """Load ``path`` here, then make it every process's desired bundle.

        Raises ``BundleRefused`` (the loader failed: nothing changes) or ``StoreUnavailable`` (this process
        serves the new bundle until the registry is back, then follows the desired one again: retry)."""
        return await self._reload(path, None)

    async def reload_url(self, url: str, sha256: str) -> ServingBundle:
        """``reload`` of a packed bundle: fetched here (checked against ``sha256``), loaded, and published
        with its URL, so every process without it on its disk fetches it too. Raises ``BundleRefused``."""
        return await self._reload(None, (url, sha256))

    async def _reload(self, path: Path | None, source: tuple[str, str] | None) -> ServingBundle:
        async with self._lock:
            try:
                if source is not None:
                    path = await asyncio.to_thread(self._fetch, *source)
                assert path is not None
                serving = await self.holder.load(path)
            except Exception as exc:  # any loader failure: a changed file, a truncated index, no directory
                raise BundleRefused(path or Path(source[0] if source else ""), exc) from exc
            self._source = source
            await self._publish()
            return serving

    def _fetch(self, url: str, sha256: str) -> Path:
        from models.bundle.pack import fetch_bundle

        if self.fetch_root is None:
            raise ValueError("this process fetches no bundle by URL (no fetch directory)")
        return fetch_bundle(url, sha256, self.fetch_root)

    async def publish(self) -> None:
        """Record the bundle this process serves as every process's desired one."""
        async with self._lock:
            await self._publish()

    async def _publish(self) -> None:
        record = self.serving_record()
        await self.registry.set_desired_bundle(record)
        await self.registry.report_bundle(self.process, record)

    async def reload_everywhere(
        self, path: Path | None, wait_s: float, source: tuple[str, str] | None = None
    ) -> Reloaded:
        """``reload`` (or ``reload_url`` with ``source`` = (url, sha256)), then wait up to ``wait_s`` for
        every live process to serve it (a registry outage while waiting is counted and answered as not
        converged)."""
        serving = await (self.reload_url(*source) if source is not None else self.reload(path or Path()))
        metrics.RELOADS.labels("ok").inc()
        try:
            converged, processes = await self.wait_converged(serving.model_version, wait_s)
        except StoreUnavailable:
            metrics.STORE_DEGRADED.labels("reload_wait").inc()
            converged, processes = False, {}
        return Reloaded(serving, converged, processes)

    async def tick(self) -> None:
        """Load the desired bundle if it differs from ours; then report what we serve."""
        await self.follow()
        await self.report()

    async def follow(self) -> None:
        """Load the desired bundle if it differs from ours (and did not just fail here)."""
        async with self._lock:
            desired = await self.registry.desired_bundle()
            if desired is not None and self._differs(desired) and self._may_try(desired):
                await self._follow(desired)

    async def report(self) -> None:
        """Heartbeat: what this process serves now (the old bundle while a new one is loading)."""
        await self.registry.report_bundle(self.process, self.serving_record())

    def _differs(self, desired: BundleRecord) -> bool:
        if desired.url is not None:  # fetched into each process's own directory: the version decides
            return desired.model_version != self.holder.current.model_version
        return (
            desired.path != str(self.holder.path)
            or desired.model_version != self.holder.current.model_version
        )

    def _may_try(self, desired: BundleRecord) -> bool:
        failed_at = self._failed.get(_key(desired))
        return failed_at is None or time.monotonic() - failed_at >= self.retry_after_s

    async def _follow(self, desired: BundleRecord) -> None:
        log.info(
            "following a reload", extra={"bundle_path": desired.path, "model_version": desired.model_version}
        )
        try:
            path = Path(desired.path)
            if desired.url is not None and desired.sha256 is not None and self.fetch_root is not None:
                path = await asyncio.to_thread(self._fetch, desired.url, desired.sha256)
            serving = await self.holder.load(path, expected_version=desired.model_version)
            if desired.url is not None and desired.sha256 is not None:
                self._source = (desired.url, desired.sha256)
        except Exception as exc:
            self._failed[_key(desired)] = time.monotonic()
            metrics.RELOADS.labels("failed").inc()
            log.warning(
                "could not follow a reload; keeping the current bundle",
                extra={"bundle_path": desired.path, "error": f"{exc.__class__.__name__}: {exc}"},
            )
            return
        metrics.RELOADS.labels("followed").inc()
        log.info("reloaded", extra={"bundle_path": desired.path, "model_version": serving.model_version})

    async def served(self) -> dict[str, str]:
        """Process -> model version, for every process that reported recently."""
        records = await self.registry.served_bundles(self.report_max_age_s)
        return {process: record.model_version for process, record in sorted(records.items())}

    async def wait_converged(self, model_version: str, timeout_s: float) -> tuple[bool, dict[str, str]]:
        """Poll the reports until every live process serves ``model_version`` (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            served = await self.served()
            converged = all(version == model_version for version in served.values())
            if converged or time.monotonic() >= deadline:
                return converged, served
            await asyncio.sleep(min(0.2, self.interval_s))

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until ``stop()``: follow reloads, and report every ``interval_s`` in a loop of its own, so a
        process busy loading a bundle still reports (the old version) and never looks gone."""
        heartbeat = asyncio.create_task(self._every_interval(self.report), name="bundle-heartbeat")
        await self._every_interval(self.follow)
        await heartbeat
        with contextlib.suppress(StoreUnavailable):
            await self.registry.report_bundle(self.process, None)

    async def _every_interval(self, step: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping.is_set():
            try:
                await step()
            except StoreUnavailable:
                metrics.STORE_DEGRADED.labels("bundle_sync").inc()
            except Exception:
                log.exception("bundle sync step failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval_s)
            except TimeoutError:
                continue


def _key(record: BundleRecord) -> BundleRecord:
    """Failures are remembered per (path, version, url), whatever time the record was written."""
    return BundleRecord(record.path, record.model_version, 0.0, record.url, record.sha256)
