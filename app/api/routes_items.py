"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import ServingDep
from app.api.middleware import SERVED_BY_KEY
from app.api.schemas import Item, Meta, RecommendResponse
from app.core.errors import ApiError
from app.core.logging import request_id_var
from app.services.similar import similar_items

router = APIRouter()


@router.get("/v1/items/{item_id}/similar", response_model=RecommendResponse, summary="items like this one")
async def get_similar(
    item_id: str, request: Request, serving: ServingDep, k: Annotated[int, Query(ge=1, le=200)] = 10
) -> RecommendResponse:
    item = serving.item_of(item_id)
    if item is None:
        raise ApiError(404, "item_not_found", f"item {item_id!r} is not in the catalogue")
    items = await asyncio.to_thread(similar_items, serving, item, k)
    source = items[0].source if items else "none"
    request.scope[SERVED_BY_KEY] = source
    warnings = [] if len(items) >= k else [f"only {len(items)} similar items found (k={k})"]
    meta = Meta(
        request_id=request_id_var.get(),
        model_version=serving.model_version,
        index_version=serving.index_version,
        served_by=source,
    )
    return RecommendResponse(items=[Item(**vars(found)) for found in items], meta=meta, warnings=warnings)
