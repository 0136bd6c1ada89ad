"""Item-list answers (recommend, similar items) serialised once with orjson.

The routes keep ``response_model=RecommendResponse`` for the OpenAPI schema, but return these bytes
directly: building pydantic models for up to 200 items and validating them again on the way out cost more
than the rest of a cached request. A test checks that every answer validates as ``RecommendResponse``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from app.core.logging import request_id_var
from app.services.items import RankedItem


def item_list_response(
    items: list[RankedItem],
    *,
    model_version: str,
    index_version: str,
    served_by: str,
    warnings: list[str],
    timings_ms: dict[str, float] | None = None,
) -> Response:
    """-> application/json ``{"items": [...], "meta": {...}, "warnings": [...]}`` (RecommendResponse)."""
    body: dict[str, Any] = {
        "items": [vars(item) for item in items],
        "meta": {
            "request_id": request_id_var.get(),
            "model_version": model_version,
            "index_version": index_version,
            "served_by": served_by,
            "timings_ms": timings_ms,
        },
        "warnings": warnings,
    }
    return Response(orjson.dumps(body), media_type="application/json")
