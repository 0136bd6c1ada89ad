"""POST /v1/events: accepted events are durable (Redis Stream, or memory in embedded mode) before 202."""

from __future__ import annotations

import time

from fastapi import APIRouter

from app.api.deps import ServicesDep, StoreDep
from app.api.schemas import EventsRequest, EventsResponse
from app.core import metrics
from app.core.errors import ApiError
from app.services.events import IncomingEvent, accept_events, future_timestamps
from app.stores.base import BacklogFull, StoreUnavailable

router = APIRouter()


@router.post("/v1/events", status_code=202, response_model=EventsResponse, summary="record behaviour events")
async def post_events(body: EventsRequest, store: StoreDep, services: ServicesDep) -> EventsResponse:
    events = [
        IncomingEvent(
            user_id=str(event.user_id),
            item_id=str(event.item_id),
            action=str(event.action),
            timestamp=event.timestamp,
            value=event.value,
            scene=event.context.scene if event.context else None,
            device=event.context.device if event.context else None,
            event_id=event.event_id,
        )
        for event in body.events
    ]
    too_new = future_timestamps(events, time.time(), services.settings.event_max_future_s)
    if too_new:
        raise ApiError(422, "validation_error", "; ".join(too_new[:10]))
    try:
        result = await accept_events(store, events)
    except BacklogFull as exc:
        metrics.EVENTS_REFUSED.inc(len(events))
        raise ApiError(
            503,
            "backlog_full",
            "the worker is behind: nothing was stored; retry later",
            {"Retry-After": "5"},
        ) from exc
    except StoreUnavailable as exc:
        # Unlike reads, an event we cannot make durable must not be acknowledged. The events may have been
        # stored (a lost reply); retrying the same events is safe: their idempotency keys dedupe them.
        metrics.STORE_DEGRADED.labels("append_events").inc()
        raise ApiError(
            503,
            "store_unavailable",
            "events may not have been stored; retrying the same events is safe",
            {"Retry-After": "1"},
        ) from exc
    return EventsResponse(accepted=len(events), duplicates=result.duplicates)
