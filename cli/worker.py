"""``tandem worker``: the near-line user-vector worker against Redis (one consumer of the worker group).

Run as many as needed: each is a consumer; entries a crashed one left pending are re-claimed after
``TANDEM_WORKER_CLAIM_IDLE_MS``. A worker starts from the bundle ``app.startup.start_bundle`` finds (it never
trains) and follows the bundle registry (``BundleSync``): reloads made through the API and a background
build the API published.
SIGTERM stops after the batch in hand is written and acknowledged. Metrics are served on ``--metrics-port``
for Prometheus.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.core.config import Settings
    from app.services.bundle_sync import BundleSync
    from app.services.serving_bundle import BundleHolder
    from app.services.worker import VectorWorker
    from app.stores.base import Stores

log = logging.getLogger("tandem.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (TANDEM_BUNDLE_PATH)")
    parser.add_argument("--consumer", default=None, help="consumer name (default: host-pid)")
    parser.add_argument("--metrics-port", type=int, default=9101, help="Prometheus port; 0 = none")


def runtime_modules() -> list[ModuleType]:
    """What the worker process imports to run (lazily, so ``tandem --help`` stays fast): never the FastAPI
    app or the web stack (a test checks it)."""
    names = [
        "app.core.config",
        "app.services.bundle_sync",
        "app.services.serving_bundle",
        "app.services.worker",
        "app.startup",
    ]
    return [importlib.import_module(name) for name in names]


@dataclass
class WorkerProcess:
    """What ``tandem worker`` runs: the bundle it computes vectors with, the stores, the vector worker
    and the bundle sync that follows the registry (the one channel by which a later bundle arrives)."""

    holder: BundleHolder
    stores: Stores
    worker: VectorWorker
    sync: BundleSync


async def start(settings: Settings, consumer: str | None = None) -> WorkerProcess:
    """Start-up only loads: ``app.startup.start_bundle`` (the configured bundle, else the default one
    built already, else the baseline one, built now without training)."""
    from app.services.bundle_sync import BundleSync, process_name
    from app.services.serving_bundle import BundleHolder
    from app.services.worker import VectorWorker
    from app.startup import open_stores, set_thread_counts, start_bundle

    set_thread_counts(settings.torch_threads)
    holder = BundleHolder(history_length=settings.history_length)
    await holder.load(await asyncio.to_thread(start_bundle, settings))
    stores = open_stores(settings, block_ms=settings.worker_block_ms)
    worker = VectorWorker(
        stores.events,
        stores.users,
        holder,
        consumer=consumer or settings.worker_consumer,
        batch_size=settings.worker_batch_size,
        block_ms=settings.worker_block_ms,
        claim_idle_ms=settings.worker_claim_idle_ms,
        vector_ttl_s=settings.vector_ttl_s,
        consumer_idle_ms=settings.worker_consumer_idle_ms,
        warm_known_users=settings.warm_vectors,
        coalesce_ms=settings.worker_coalesce_ms,
    )
    # Follow the registry (reloads, a finished background build), so the vectors are the serving model's.
    sync = BundleSync(
        stores.registry,
        holder,
        process_name("worker"),
        interval_s=settings.bundle_sync_interval_s,
        fetch_root=settings.fetch_dir,
        source=settings.bundle_source,
    )
    return WorkerProcess(holder, stores, worker, sync)


async def _serve(args: argparse.Namespace) -> int:
    runtime_modules()
    from app.core.config import Settings

    process = await start(Settings(), args.consumer)
    worker, sync = process.worker, process.sync
    sync_task = asyncio.create_task(sync.run(), name="bundle-sync")

    def stop() -> None:
        worker.stop()
        sync.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await worker.run()
    finally:
        sync.stop()
        await sync_task
        await process.stores.connection.close()
    return 0


def run(args: argparse.Namespace) -> int:
    from app.core.config import Settings
    from app.core.logging import configure_logging

    if args.bundle is not None:
        os.environ["TANDEM_BUNDLE_PATH"] = str(args.bundle)
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.embedded:
        log.error("tandem worker needs TANDEM_REDIS_URL; without Redis the worker runs inside `tandem serve`")
        return 2
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port)
    return asyncio.run(_serve(args))
