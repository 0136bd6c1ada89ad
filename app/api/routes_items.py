"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.answers import item_list_response
from app.api.deps import ServingDep
from app.api.middleware import SERVED_BY_KEY
from app.api.schemas import RecommendResponse
from app.core.errors import ApiError
from app.services.similar import similar_items

router = APIRouter()


@router.get("/v1/items/{item_id}/similar", response_model=RecommendResponse, summary="items like this one")
async def get_similar(
    item_id: str, request: Request, serving: ServingDep, k: Annotated[int, Query(ge=1, le=200)] = 10
) -> Response:
    item = serving.item_of(item_id)
    if item is None:
        raise ApiError(404, "item_not_found", f"item {item_id!r} is not in the catalogue")
    # Run on the event loop: one exact/IVF search costs less than a hop to a worker thread and back.
    items = similar_items(serving, item, k)
    source = items[0].source if items else "none"
    request.scope[SERVED_BY_KEY] = source
    warnings = [] if len(items) >= k else [f"only {len(items)} similar items found (k={k})"]
    return item_list_response(
        items,
        model_version=serving.model_version,
        index_version=serving.index_version,
        served_by=source,
        warnings=warnings,
    )
