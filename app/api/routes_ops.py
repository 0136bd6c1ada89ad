"""Operations: /livez, /readyz, /metrics, GET /v1/admin/bundle, POST /v1/admin/reload."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from fastapi import APIRouter, Depends, Response

from app.api.deps import ServicesDep, require_admin_key
from app.api.schemas import BundleResponse, HealthResponse, ReloadRequest, ReloadResponse
from app.core import metrics
from app.core.errors import ApiError
from app.services.bundle_upgrade import upgrade_state
from app.stores.base import StoreUnavailable

router = APIRouter()
log = logging.getLogger("tandem.ops")


@router.get("/livez", response_model=HealthResponse, summary="the process is up")
async def livez() -> HealthResponse:
    return HealthResponse(status="alive")


@router.get("/readyz", response_model=HealthResponse, summary="bundle loaded, warmed up, not draining")
async def readyz(services: ServicesDep, response: Response) -> HealthResponse:
    lifecycle = services.lifecycle
    if lifecycle.draining or not lifecycle.ready or services.store is None:
        response.status_code = 503
        return HealthResponse(status="draining" if lifecycle.draining else "starting")
    try:
        store_state = "ok" if await services.store.ping() else "degraded"
    except StoreUnavailable:
        metrics.STORE_DEGRADED.labels("ping").inc()
        store_state = "degraded"  # still ready: requests are served on the online path
    serving = services.holder.current
    detail: dict[str, object] = {
        "store": f"{services.store.kind}:{store_state}",
        "model_version": serving.model_version,
        "index_version": serving.index_version,
        "serving_path": serving.served_path,
        "pid": os.getpid(),
        "bundle_path": str(services.holder.path),
        **upgrade_state(services.settings.bundle_upgrade_file, services.holder),
    }
    if services.sync is not None:
        detail["process"] = services.sync.process
        if store_state == "ok":
            with contextlib.suppress(StoreUnavailable):
                detail["processes"] = await services.sync.served()
    return HealthResponse(status="ready", detail=detail)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def get_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)


@router.get(
    "/v1/admin/bundle",
    response_model=BundleResponse,
    dependencies=[Depends(require_admin_key)],
    summary="the live bundle (versions, candidate sources and merge, ranker decision, offline metrics) and "
    "whether a better one is being built",
)
async def bundle_info(services: ServicesDep) -> BundleResponse:
    if not services.holder.loaded:
        raise ApiError(503, "not_ready", "no bundle loaded yet")
    serving = services.holder.current
    pipeline = serving.pipeline(services.settings.candidate_count)
    merge = pipeline.generator.config
    return BundleResponse(
        bundle_path=str(services.holder.path) if services.holder.path else None,
        model_version=serving.model_version,
        index_version=serving.index_version,
        serving_path=serving.served_path,
        candidate_sources=list(merge.sources),
        merge_weights=list(merge.weights),
        ranker_served=pipeline.use_ranker,
        allow_seen=merge.allow_seen,
        offline=serving.offline,
        **upgrade_state(services.settings.bundle_upgrade_file, services.holder),
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    dependencies=[Depends(require_admin_key)],
    summary="swap to another bundle without dropping requests",
)
async def reload_bundle(services: ServicesDep, body: ReloadRequest | None = None) -> ReloadResponse:
    requested = body.bundle_path if body and body.bundle_path else None
    path = Path(requested) if requested else (services.holder.path or services.settings.bundle_path)
    if path is None:
        raise ApiError(422, "validation_error", "bundle_path: required (no bundle configured)")
    sync = services.sync
    try:
        serving = await (sync.reload(path) if sync is not None else services.holder.load(path))
    except StoreUnavailable as exc:
        metrics.RELOADS.labels("unpublished").inc()
        raise ApiError(
            503,
            "store_unavailable",
            "loaded in this process only: the store could not tell the other processes; retry the reload",
            {"Retry-After": "1"},
        ) from exc
    except Exception as exc:
        # Whatever the loader raises (a changed file, a truncated checkpoint or index, a missing directory),
        # the old bundle keeps serving and the caller gets the one error shape.
        metrics.RELOADS.labels("failed").inc()
        log.warning(
            "reload failed; keeping the current bundle",
            extra={"bundle_path": str(path), "error": f"{exc.__class__.__name__}: {exc}"},
            exc_info=not isinstance(exc, (FileNotFoundError, ValueError, KeyError, OSError)),
        )
        raise ApiError(422, "reload_failed", f"{path}: {_first_line(exc)}") from exc
    metrics.RELOADS.labels("ok").inc()
    converged, processes = False, dict[str, str]()
    if sync is not None:
        try:
            converged, processes = await sync.wait_converged(
                serving.model_version, services.settings.reload_wait_s
            )
        except StoreUnavailable:
            metrics.STORE_DEGRADED.labels("reload_wait").inc()
    return ReloadResponse(
        model_version=serving.model_version,
        index_version=serving.index_version,
        serving_path=serving.served_path,
        bundle_path=str(path),
        process=sync.process if sync is not None else "",
        processes=processes,
        converged=converged,
    )


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0][:300]
