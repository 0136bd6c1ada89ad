"""POST /v1/events: accepted events are durable (Redis Stream, or memory in embedded mode) before 202.
A store that cannot confirm the write, or a full backlog, is a 503 (``app.core.errors``)."""

from __future__ import annotations

import time

from fastapi import APIRouter

from app.api.deps import EventStreamDep, ServicesDep
from app.api.schemas import EventsRequest, EventsResponse
from app.core.errors import ApiError
from app.services.events import IncomingEvent, accept_events, future_timestamps

router = APIRouter()


@router.post("/v1/events", status_code=202, response_model=EventsResponse, summary="record behaviour events")
async def post_events(body: EventsRequest, stream: EventStreamDep, services: ServicesDep) -> EventsResponse:
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
    result = await accept_events(stream, events)
    return EventsResponse(accepted=len(events), duplicates=result.duplicates)
