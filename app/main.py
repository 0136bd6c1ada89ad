"""The FastAPI application: ``create_app(settings)`` wires routes, middleware, the error handlers and a
lifespan that opens and closes every resource (stores, bundle, embedded worker, bundle sync) in order.

Start-up only loads (``app.startup.start_bundle``: nothing reachable from here trains): bundle loaded and
warmed up in a thread -> stores opened, user state seeded from the bundle's recent histories (embedded:
into memory; Redis: only users Redis does not know) -> embedded worker task -> bundle sync (follows the
registry's desired bundle: the one channel by which a later bundle arrives) -> the background build's
publisher when ``tandem serve`` started one -> ready.
Shutdown: readyz turns 503 (draining) -> sync, publisher and worker stopped -> store pool closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from app.api import routes_events, routes_items, routes_ops, routes_recommend
from app.api.deps import Services, require_api_key
from app.api.middleware import BodyTooLarge, RequestGuard
from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.errors import error_response, install_error_handlers
from app.core.logging import configure_logging
from app.services.bundle_sync import BundleSync, process_name
from app.services.bundle_upgrade import publish_when_built
from app.services.serving_bundle import BundleHolder, BundleLoader, load_bundle
from app.services.user_vectors import wait_for_write_backs
from app.services.vector_process import VectorProcess
from app.services.worker import VectorWorker
from app.startup import milvus_target, open_stores, set_thread_counts, start_bundle
from app.stores.base import Stores, StoreUnavailable

log = logging.getLogger("tandem.app")


def cpu_executor(threads: int, workers: int) -> ThreadPoolExecutor:
    """The event loop's default executor: ``workers`` threads that set their torch/faiss thread counts
    (``threads``) when they start. Few threads on purpose: the request work holds the GIL between kernels,
    and more threads than cores only queue on it."""
    return ThreadPoolExecutor(
        max_workers=workers,
        thread_name_prefix="tandem-cpu",
        initializer=set_thread_counts,
        initargs=(threads,),
    )


async def _seed(stores: Stores, holder: BundleHolder) -> None:
    try:
        written = await stores.users.seed_histories(holder.current.seed_records())
    except StoreUnavailable as exc:
        metrics.STORE_DEGRADED.labels("seed").inc()
        log.warning("could not seed user histories; serving from the bundle", extra={"error": str(exc)})
        return
    log.info("seeded user histories", extra={"users": written, "store": stores.kind})


def _lifespan(services: Services) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = services.settings
        set_thread_counts(settings.torch_threads)
        sys.setswitchinterval(settings.gil_switch_ms / 1000)
        asyncio.get_running_loop().set_default_executor(
            cpu_executor(settings.torch_threads, settings.cpu_workers)
        )
        path = await asyncio.to_thread(start_bundle, settings)
        await services.holder.load(path)
        stores = services.stores = open_stores(settings)
        await _seed(stores, services.holder)
        # The bundle and the seeded histories live as long as the process: out of the collector's way, so a
        # full collection does not walk them (millions of objects in the in-process store) in a request.
        gc.freeze()
        if settings.embedded:
            services.worker = VectorWorker(
                stores.events,
                stores.users,
                services.holder,
                consumer="embedded",
                batch_size=settings.worker_batch_size,
                block_ms=min(settings.worker_block_ms, 200),
                claim_idle_ms=settings.worker_claim_idle_ms,
                vector_ttl_s=settings.vector_ttl_s,
                consumer_idle_ms=settings.worker_consumer_idle_ms,
                warm_known_users=settings.warm_vectors,
                coalesce_ms=settings.worker_coalesce_ms,
                vector_process=VectorProcess(settings.torch_threads) if settings.worker_process else None,
            )
            services.worker_task = asyncio.create_task(services.worker.run(), name="embedded-worker")
        sync = services.sync = BundleSync(
            stores.registry,
            services.holder,
            process_name("api"),
            interval_s=settings.bundle_sync_interval_s,
            fetch_root=settings.fetch_dir,
            source=settings.bundle_source,
        )
        with contextlib.suppress(StoreUnavailable):
            await sync.tick()  # follow a reload made before this process started
        services.sync_task = asyncio.create_task(sync.run(), name="bundle-sync")
        if settings.bundle_upgrade_file is not None:
            services.upgrade_task = asyncio.create_task(
                publish_when_built(sync, settings.bundle_upgrade_file), name="bundle-upgrade"
            )
        services.lifecycle.ready = True
        log.info("ready", extra={"store": stores.kind, "bundle_path": str(path)})
        try:
            yield
        finally:
            services.lifecycle.start_draining()
            if services.sync is not None and services.sync_task is not None:
                services.sync.stop()
                await services.sync_task
            if services.upgrade_task is not None:
                services.upgrade_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await services.upgrade_task
            if services.worker is not None and services.worker_task is not None:
                services.worker.stop()
                await services.worker_task
            await wait_for_write_backs()
            await stores.connection.close()
            metrics.mark_process_dead(os.getpid())
            log.info("stopped")

    return lifespan


def create_app(settings: Settings | None = None, *, bundle_loader: BundleLoader | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    loader = bundle_loader or functools.partial(
        load_bundle,
        ranker_backend=settings.ranker_backend,
        threads=settings.torch_threads,
        milvus=milvus_target(settings),
    )
    holder = BundleHolder(loader, settings.history_length, settings.candidate_count)
    services = Services(settings=settings, holder=holder)
    app = FastAPI(
        title="tandem",
        version="0.1.0",
        description="Two-stage recommender: session-encoder retrieval, ANN, target-aware ranking.",
        lifespan=_lifespan(services),
    )
    app.state.services = services
    install_error_handlers(app)

    async def on_body_too_large(request: Request, exc: Exception) -> JSONResponse:
        return error_response(
            413, "payload_too_large", f"request body exceeds {settings.max_body_bytes} bytes"
        )

    app.add_exception_handler(BodyTooLarge, on_body_too_large)
    keyed = [Depends(require_api_key)]
    app.include_router(routes_recommend.router, dependencies=keyed, tags=["recommend"])
    app.include_router(routes_events.router, dependencies=keyed, tags=["events"])
    app.include_router(routes_items.router, dependencies=keyed, tags=["items"])
    app.include_router(routes_ops.router, tags=["operations"])
    app.add_middleware(
        RequestGuard, max_body_bytes=settings.max_body_bytes, max_in_flight=settings.in_flight_limit
    )
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory app.main:app_factory`` (several workers): settings from the environment."""
    return create_app()
