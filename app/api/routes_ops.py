"""Operations: /livez, /readyz, /metrics, GET /v1/admin/bundle, POST /v1/admin/reload."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, Depends, Response

from app.api.deps import ServicesDep, require_admin_key
from app.api.schemas import HealthResponse, ReloadRequest, ReloadResponse
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
    return HealthResponse(
        status="ready",
        detail={
            "store": f"{services.store.kind}:{store_state}",
            "model_version": serving.model_version,
            "index_version": serving.index_version,
            "serving_path": serving.serving_path,
            "bundle_path": str(services.holder.path),
            **upgrade_state(services.settings.bundle_upgrade_file, services.holder),
        },
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def get_metrics() -> Response:
    body, content_type = metrics.render()
    return Response(content=body, media_type=content_type)


@router.get(
    "/v1/admin/bundle",
    dependencies=[Depends(require_admin_key)],
    summary="the live bundle, and whether a better one is being built",
)
async def live_bundle(services: ServicesDep) -> dict[str, object]:
    if not services.holder.loaded:
        raise ApiError(503, "not_ready", "no bundle loaded yet")
    serving = services.holder.current
    return {
        "bundle_path": str(services.holder.path),
        "model_version": serving.model_version,
        "index_version": serving.index_version,
        "serving_path": serving.serving_path,
        **upgrade_state(services.settings.bundle_upgrade_file, services.holder),
    }


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
    try:
        serving = await services.holder.load(path)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        metrics.RELOADS.labels("failed").inc()
        log.warning("reload failed; keeping the current bundle", extra={"bundle_path": str(path)})
        raise ApiError(422, "reload_failed", f"{path}: {exc}") from exc
    metrics.RELOADS.labels("ok").inc()
    return ReloadResponse(
        model_version=serving.model_version,
        index_version=serving.index_version,
        serving_path=serving.serving_path,
        bundle_path=str(path),
    )
