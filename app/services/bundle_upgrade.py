"""Following a background bundle build (models.bundle.upgrade) and hot-reloading its bundle when ready.

``tandem serve`` started from the baseline bundle sets ``TANDEM_BUNDLE_UPGRADE_FILE``; every API process
then polls that status file and swaps to the full bundle through ``BundleHolder.load`` (no dropped
requests) once the builder says it is ready. /readyz and GET /v1/admin/bundle report the state.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from app.core import metrics
from app.services.serving_bundle import BundleHolder
from models.bundle.upgrade import read_status

log = logging.getLogger("tandem.bundle_upgrade")


def upgrade_state(status_file: Path | None, holder: BundleHolder) -> dict[str, Any]:
    """``{"upgrade": none|building|ready|failed, ...}``: whether a better bundle is being built."""
    if status_file is None:
        return {"upgrade": "none"}
    status = read_status(status_file)
    state: dict[str, Any] = {"upgrade": status["status"]}
    if status["status"] == "ready":
        live = holder.path is not None and holder.path.resolve() == Path(status["bundle_path"]).resolve()
        state["upgrade"] = "live" if live else "ready"
    for key in ("bundle_path", "log", "error"):
        if key in status:
            state[f"upgrade_{key}"] = status[key]
    return state


async def follow_upgrade(holder: BundleHolder, status_file: Path, poll_s: float = 2.0) -> None:
    """Polls the status file until the build ends; loads its bundle when it succeeded."""
    while True:
        status = read_status(status_file)
        if status["status"] == "ready":
            path = Path(status["bundle_path"])
            if holder.path is not None and holder.path.resolve() == path.resolve():
                return
            try:
                await holder.load(path)
            except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
                metrics.RELOADS.labels("failed").inc()
                log.warning(
                    "the built bundle could not be loaded",
                    extra={"bundle_path": str(path), "error": str(exc)},
                )
                return
            metrics.RELOADS.labels("ok").inc()
            log.info("switched to the full bundle", extra={"bundle_path": str(path)})
            return
        if status["status"] != "building":
            log.warning("background bundle build ended without a bundle", extra={"status": str(status)})
            return
        await asyncio.sleep(poll_s)
