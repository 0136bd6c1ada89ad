"""One JSON error shape for every failure: ``{"error": {"code", "message", "request_id"}}``, and the one
place that turns exceptions into answers: routes call services and let exceptions propagate.

Bad input is a 4xx with a message naming the field; anything unexpected is a 500 that is logged once with
its traceback and never leaks internals to the client. Store failures a route cannot degrade around are a
503 (``StoreUnavailable``: what it means for the caller depends on the route, ``STORE_UNAVAILABLE``;
``BacklogFull``: nothing stored), counted in metrics here; a bundle that fails to load is a 422
(``BundleRefused``) while the old one keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core import metrics
from app.core.failures import BacklogFull, BundleRefused, StoreUnavailable
from app.core.logging import request_id_var
from models.index.milvus import MilvusUnavailable

log = logging.getLogger("tandem.errors")


class ApiError(Exception):
    """An error the client should see, with a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class StoreAnswer:
    """What a route's caller is told when the store did not answer, and how it is counted."""

    message: str
    count: Callable[[], None]


# route template -> the answer to StoreUnavailable there (routes that degrade never raise it)
STORE_UNAVAILABLE: dict[str, StoreAnswer] = {
    # Unlike reads, an event the store cannot make durable must not be acknowledged. The events may have
    # been stored (a lost reply); retrying the same events is safe: their idempotency keys dedupe them.
    "/v1/events": StoreAnswer(
        "events may not have been stored; retrying the same events is safe",
        metrics.STORE_DEGRADED.labels("append_events").inc,
    ),
    "/v1/admin/reload": StoreAnswer(
        "loaded in this process only: the store could not tell the other processes; retry the reload",
        metrics.RELOADS.labels("unpublished").inc,
    ),
}


def route_template(request: Request) -> str:
    """The matched route's path template (``other`` when none matched)."""
    return str(getattr(request.scope.get("route"), "path", "other"))


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": request_id_var.get()}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        location = ".".join(str(piece) for piece in err.get("loc", ()) if piece != "body")
        parts.append(f"{location or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type through the one error shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "validation_error", _describe_validation(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    async def on_store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        route = route_template(request)
        answer = STORE_UNAVAILABLE.get(route)
        if answer is None:
            metrics.STORE_DEGRADED.labels(route).inc()
            message = "the store did not answer; retry later"
        else:
            answer.count()
            message = answer.message
        log.warning("store unavailable", extra={"route": route, "error": str(exc)})
        return error_response(503, "store_unavailable", message, {"Retry-After": "1"})

    async def on_backlog_full(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BacklogFull)
        metrics.EVENTS_REFUSED.inc(exc.refused)
        message = "the worker is behind: nothing was stored; retry later"
        return error_response(503, "backlog_full", message, {"Retry-After": "5"})

    async def on_bundle_refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BundleRefused)
        metrics.RELOADS.labels("failed").inc()
        expected = isinstance(
            exc.cause, (FileNotFoundError, ValueError, KeyError, OSError, MilvusUnavailable)
        )
        log.warning(
            "reload failed; keeping the current bundle",
            extra={"bundle_path": str(exc.path), "error": f"{exc.cause.__class__.__name__}: {exc.cause}"},
            exc_info=None if expected else exc.cause,
        )
        return error_response(422, "reload_failed", str(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; see the server log for this request id")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreUnavailable, on_store_unavailable)
    app.add_exception_handler(BacklogFull, on_backlog_full)
    app.add_exception_handler(BundleRefused, on_bundle_refused)
    app.add_exception_handler(Exception, on_unexpected)
