"""POST /v1/recommend, and POST /recommend: the same handler for callers written against the plain path."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.api.answers import item_list_response
from app.api.deps import ServicesDep, ServingDep, UsersDep
from app.api.middleware import SERVED_BY_KEY
from app.api.schemas import RecommendRequest, RecommendResponse
from app.core.errors import ApiError
from app.services.recommend import RecommendQuery, recommend

router = APIRouter()


def to_query(body: RecommendRequest, services: ServicesDep) -> RecommendQuery:
    settings = services.settings
    if body.k > settings.k_max:
        raise ApiError(422, "validation_error", f"k: at most {settings.k_max} (TANDEM_K_MAX)")
    if len(body.anchors) > settings.anchors_max:
        raise ApiError(422, "validation_error", f"anchors: at most {settings.anchors_max} items")
    if len(body.exclude) > settings.exclude_max:
        raise ApiError(422, "validation_error", f"exclude: at most {settings.exclude_max} items")
    context = body.context
    if context is not None and len(context.model_extra or {}) > settings.context_extra_max:
        raise ApiError(
            422, "validation_error", f"context: at most {settings.context_extra_max} free-form keys"
        )
    return RecommendQuery(
        user_id=str(body.user_id),
        k=body.k,
        scene=context.scene if context else None,
        device=context.device if context else None,
        timestamp=context.timestamp if context else None,
        anchors=[str(item) for item in body.anchors],
        exclude=[str(item) for item in body.exclude],
        category_in=body.filters.category_in,
        category_not_in=body.filters.category_not_in,
        diversity=body.options.diversity,
        exclude_seen=body.options.exclude_seen,
    )


@router.post("/v1/recommend", response_model=RecommendResponse, summary="top-k items for a user")
@router.post(
    "/recommend",
    response_model=RecommendResponse,
    summary="alias of POST /v1/recommend (same body, same answer)",
)
async def post_recommend(
    body: RecommendRequest, request: Request, services: ServicesDep, serving: ServingDep, users: UsersDep
) -> Response:
    query = to_query(body, services)
    result = await recommend(
        serving,
        users,
        query,
        candidate_count=services.settings.candidate_count,
        vector_ttl_s=services.settings.vector_ttl_s,
    )
    request.scope[SERVED_BY_KEY] = result.served_by
    return item_list_response(
        result.items,
        model_version=result.model_version,
        index_version=result.index_version,
        served_by=result.served_by,
        warnings=result.warnings,
        timings_ms=result.timings_ms if body.options.explain else None,
    )
