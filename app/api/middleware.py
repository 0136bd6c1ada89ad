"""One pure-ASGI middleware: request id, body size limit, in-flight bound (429), request metrics.

Pure ASGI (not BaseHTTPMiddleware) so streaming bodies are counted as they arrive.

Oversized bodies get ``413 payload_too_large`` whether they declare their length or are chunked. The 413 is
sent first, then the rest of the body is read and discarded (up to ``DRAIN_MAX_BYTES`` and
``DRAIN_MAX_SECONDS``) before the connection closes, as nginx's lingering close does: a client that writes
its whole body before reading the answer (Python's urllib) would otherwise get a connection reset instead
of the 413. A client that sent ``Expect: 100-continue`` never sends the body, so nothing is drained.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import metrics
from app.core.errors import error_body
from app.core.logging import request_id_var

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
SERVED_BY_KEY = "tandem.served_by"
DRAIN_MAX_BYTES = 64 * 1024 * 1024  # discard at most this much of a refused body before closing
DRAIN_MAX_SECONDS = 10.0
log = logging.getLogger("tandem.errors")


class BodyTooLarge(Exception):
    pass


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def route_label(scope: Scope) -> str:
    """The matched route's template (``/v1/items/{item_id}/similar``), never the raw path: the router
    records the route in the scope; unmatched or refused requests are ``other`` (bounded label values)."""
    return str(getattr(scope.get("route"), "path", "other"))


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_in_flight: int):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status_holder = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"], status_holder["started"] = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        shed = scope["path"].startswith("/v1/") and self.in_flight >= self.max_in_flight
        try:
            if shed:
                metrics.LOAD_SHED.inc()
                # The unread body is drained after the answer, as for a 413: a client that closes after each
                # request would otherwise risk a reset instead of reading its 429.
                await _reply(
                    send_with_id,
                    429,
                    "too_many_requests",
                    "server busy, retry later",
                    retry_after=1,
                    drain=None if _expects_continue(scope) else receive,
                )
            elif (declared := _header(scope, b"content-length")) is not None:
                if declared.isdigit() and int(declared) > self.max_body_bytes:
                    await self._refuse_too_large(scope, receive, send_with_id)
                else:
                    await self._serve(scope, receive, send_with_id, status_holder)
            elif scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
                await self._serve(scope, receive, send_with_id, status_holder)
            else:  # a body of unknown length (chunked): read it within the limit before the app sees it
                body, complete = await self._read_bounded(receive)
                if complete:
                    await self._serve(scope, _replay(body, receive), send_with_id, status_holder)
                else:
                    await self._refuse_too_large(scope, receive, send_with_id)
        except Exception:
            # Here, not in Starlette's outermost handler, so the answer still carries the request id.
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            metrics.UNHANDLED_ERRORS.inc()
            if status_holder["started"]:
                raise
            await _reply(
                send_with_id, 500, "internal_error", "internal error; see the server log for this request id"
            )
        finally:
            served_by = str(scope.get(SERVED_BY_KEY, "none"))
            path = route_label(scope)
            metrics.REQUESTS.labels(path, served_by, str(status_holder["status"])).inc()
            metrics.REQUEST_SECONDS.labels(path).observe(time.perf_counter() - started)
            request_id_var.reset(token)

    def _too_large(self) -> str:
        return f"request body exceeds {self.max_body_bytes} bytes"

    async def _read_bounded(self, receive: Receive) -> tuple[bytes, bool]:
        """(body, True) when the whole body fits in the limit; (partial, False) as soon as it does not."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), True  # disconnected: let the app see an empty/partial body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"", False
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), True

    async def _refuse_too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        """413 at once, then discard the rest of the body (bounded) so the client can read the 413."""
        drain = None if _expects_continue(scope) else receive
        await _reply(send, 413, "payload_too_large", self._too_large(), drain=drain, close=True)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, status_holder: dict[str, Any]) -> None:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge
            return message

        self.in_flight += 1
        metrics.IN_FLIGHT.inc()
        try:
            await self.app(scope, limited_receive, send)
        except BodyTooLarge:
            if status_holder["started"]:
                raise
            await _reply(send, 413, "payload_too_large", self._too_large())
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.dec()


async def _reply(
    send: Send,
    status: int,
    code: str,
    message: str,
    retry_after: int | None = None,
    *,
    drain: Receive | None = None,
    close: bool = False,
) -> None:
    """The one error shape. With ``drain`` the whole answer is sent first, then the rest of the request
    body is read and dropped (bounded, ``_discard_body``) before the response is finished."""
    body = json.dumps(error_body(code, message)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": drain is not None})
    if drain is not None:
        await _discard_body(drain)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _expects_continue(scope: Scope) -> bool:
    """The client waits for ``100 Continue`` before sending its body: nothing to drain."""
    return (_header(scope, b"expect") or "").lower() == "100-continue"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that yields the already-read body once, then defers to the server (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _discard_body(receive: Receive) -> None:
    """Read and drop request body messages until the body ends, or the drain bounds are reached."""
    discarded = 0
    try:
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            while discarded <= DRAIN_MAX_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return
