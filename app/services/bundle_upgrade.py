"""A background bundle build (``models.bundle.upgrade``) reaches the serving processes through the bundle
registry, like any reload: its status file only reports progress.

``tandem serve`` started from the baseline bundle sets ``TANDEM_BUNDLE_UPGRADE_FILE``. Every API process
polls that file; when the build says ready, ``publish_when_built`` publishes the built bundle exactly as
``POST /v1/admin/reload`` does (``BundleSync.reload``: loaded and warmed up here, then recorded as the
desired bundle in the registry), and every other process, each ``tandem worker`` included, follows the
registry. It never replaces a bundle someone reloaded after this process started (the registry names
another one), and a registry outage is retried on the next poll. /readyz and GET /v1/admin/bundle report
the build's state (``upgrade_state``).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from app.core import metrics
from app.core.failures import BundleRefused
from app.services.bundle_sync import BundleSync
from app.services.serving_bundle import BundleHolder
from app.stores.base import StoreUnavailable
from models.bundle.upgrade import read_status

log = logging.getLogger("tandem.bundle_upgrade")


def upgrade_state(status_file: Path | None, holder: BundleHolder) -> dict[str, Any]:
    """``{"upgrade": none|building|ready|live|failed, ...}``: whether a better bundle is being built."""
    if status_file is None:
        return {"upgrade": "none"}
    status = read_status(status_file)
    state: dict[str, Any] = {"upgrade": status["status"]}
    if status["status"] == "ready":
        live = holder.path is not None and _same(holder.path, status["bundle_path"])
        state["upgrade"] = "live" if live else "ready"
    for key in ("bundle_path", "log", "error"):
        if key in status:
            state[f"upgrade_{key}"] = status[key]
    return state


def _same(path: Path | str, other: Path | str) -> bool:
    return Path(path).resolve() == Path(other).resolve()


async def publish_when_built(sync: BundleSync, status_file: Path, poll_s: float = 2.0) -> None:
    """Polls the status file until the build ends; publishes its bundle through the registry when it
    succeeded (see the module docstring). Returns when done, failed, or superseded."""
    started_from = sync.holder.path
    while True:
        status = read_status(status_file)
        if status["status"] == "ready":
            try:
                await _publish(sync, Path(status["bundle_path"]), started_from)
                return
            except BundleRefused as exc:
                metrics.RELOADS.labels("failed").inc()
                log.warning("the built bundle could not be loaded", extra={"error": str(exc)})
                return
            except StoreUnavailable as exc:  # the registry will hear of it on a later poll
                metrics.STORE_DEGRADED.labels("bundle_upgrade").inc()
                log.warning("could not publish the built bundle yet", extra={"error": str(exc)})
        elif status["status"] != "building":
            log.warning("background bundle build ended without a bundle", extra={"status": str(status)})
            return
        await asyncio.sleep(poll_s)


async def _publish(sync: BundleSync, built: Path, started_from: Path | None) -> None:
    desired = await sync.registry.desired_bundle()
    if desired is not None and _same(desired.path, built):
        return  # published already (by another process): the sync loop follows it
    if desired is not None and (started_from is None or not _same(desired.path, started_from)):
        log.info(
            "a bundle was reloaded since this process started: the built one does not replace it",
            extra={"bundle_path": str(built), "desired": desired.path},
        )
        return
    if sync.holder.path is not None and _same(sync.holder.path, built):
        await sync.publish()  # loaded on an earlier poll, the registry was down then
        return
    await sync.reload(built)
    metrics.RELOADS.labels("ok").inc()
    log.info("switched to the full bundle and published it", extra={"bundle_path": str(built)})
