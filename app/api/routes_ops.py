"""Operations: /livez, /readyz, /metrics, GET /v1/admin/bundle, POST /v1/admin/reload. A reload that
fails is answered by ``app.core.errors`` (422 reload_failed, 503 store_unavailable)."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Depends, Response

from app.api.deps import ServicesDep, require_admin_key
from app.api.schemas import BundleResponse, HealthResponse, ReloadRequest, ReloadResponse
from app.core import metrics
from app.core.errors import ApiError
from app.services.bundle_upgrade import upgrade_state
from app.services.health import served_processes, store_state

router = APIRouter()


@router.get("/livez", response_model=HealthResponse, summary="the process is up")
async def livez() -> HealthResponse:
    return HealthResponse(status="alive")


@router.get("/readyz", response_model=HealthResponse, summary="bundle loaded, warmed up, not draining")
async def readyz(services: ServicesDep, response: Response) -> HealthResponse:
    lifecycle = services.lifecycle
    if lifecycle.draining or not lifecycle.ready or services.stores is None:
        response.status_code = 503
        return HealthResponse(status="draining" if lifecycle.draining else "starting")
    store = await store_state(services.stores.connection)  # degraded is still ready: requests degrade
    serving = services.holder.current
    detail: dict[str, object] = {
        "store": store,
        "model_version": serving.model_version,
        "index_version": serving.index_version,
        "serving_path": serving.served_path,
        "pid": os.getpid(),
        "bundle_path": str(services.holder.path),
        **upgrade_state(services.settings.bundle_upgrade_file, services.holder),
    }
    if services.sync is not None:
        detail["process"] = services.sync.process
        if store.endswith(":ok") and (processes := await served_processes(services.sync)) is not None:
            detail["processes"] = processes
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
        ranker_kind=serving.ranker_kind,
        ranker_gain=serving.ranker_gain,
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
    source = (body.bundle_url, body.sha256) if body and body.bundle_url and body.sha256 else None
    path = Path(requested) if requested else (services.holder.path or services.settings.bundle_path)
    if path is None and source is None:
        raise ApiError(422, "validation_error", "bundle_path: required (no bundle configured)")
    if services.sync is None:
        raise ApiError(503, "not_ready", "the service is starting")
    reloaded = await services.sync.reload_everywhere(
        None if source else path, services.settings.reload_wait_s, source
    )
    return ReloadResponse(
        model_version=reloaded.serving.model_version,
        index_version=reloaded.serving.index_version,
        serving_path=reloaded.serving.served_path,
        bundle_path=str(services.holder.path),
        process=services.sync.process,
        processes=reloaded.processes,
        converged=reloaded.converged,
    )
