"""RequestGuard on its own: unexpected errors keep the request id; body limits; load shedding."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.api.middleware import RequestGuard

pytestmark = pytest.mark.anyio


async def crashing_app(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


async def echo_length_app(scope: Scope, receive: Receive, send: Send) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


def client_for(app, **limits) -> httpx.AsyncClient:
    guard = RequestGuard(app, max_body_bytes=limits.get("max_body_bytes", 2048), max_in_flight=8)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guard, raise_app_exceptions=False), base_url="http://t"
    )


async def test_an_unexpected_error_is_a_500_in_the_one_shape_with_the_request_id() -> None:
    async with client_for(crashing_app) as client:
        response = await client.post("/v1/recommend", json={}, headers={"X-Request-ID": "req-9"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal error; see the server log for this request id",
            "request_id": "req-9",
        }
    }
    assert response.headers["x-request-id"] == "req-9"
