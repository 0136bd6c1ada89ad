"""RequestGuard on its own: unexpected errors keep the request id; body limits; load shedding."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from app.api.middleware import RequestGuard
from tests.app.conftest import free_port


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


@pytest.mark.anyio
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


async def chunks(total: int, size: int = 1000):
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.anyio
async def test_a_chunked_body_over_the_limit_is_413_and_one_within_reaches_the_app() -> None:
    async with client_for(echo_length_app, max_body_bytes=4096) as client:
        over = await client.post("/v1/events", content=chunks(10_000))
        within = await client.post("/v1/events", content=chunks(3_000))
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"
    assert within.status_code == 200 and within.text == "3000"


@pytest.mark.anyio
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_of_exactly_the_limit_reaches_the_app_and_one_byte_more_is_413(chunked: bool) -> None:
    def body(size: int):
        return chunks(size) if chunked else b"x" * size  # chunked: no content-length, read as it comes

    calls = []

    async def counting_app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await echo_length_app(scope, receive, send)

    async with client_for(counting_app, max_body_bytes=4096) as client:
        at_limit = await client.post("/v1/events", content=body(4096))
        over = await client.post("/v1/events", content=body(4097))
    assert at_limit.status_code == 200 and at_limit.text == "4096"
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"
    assert len(calls) == 1  # refused before the app saw any of it (then the connection closes)
    assert over.headers["connection"] == "close"


@pytest.mark.anyio
@pytest.mark.parametrize(("size", "status"), [(4096, 200), (4097, 413)])
async def test_a_body_longer_than_declared_is_counted_as_it_arrives(size: int, status: int) -> None:
    guard = RequestGuard(echo_length_app, max_body_bytes=4096, max_in_flight=8)
    parts = [b"x" * 4000, b"x" * (size - 4000)]
    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": [(b"content-length", b"10")]}
    sent: list[dict] = []

    async def receive() -> dict:
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await guard(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == status


@contextmanager
def served(app) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread (the lingering close needs a real socket)."""

    # uvicorn gets a plain coroutine function: under mutmut the guard's __call__ takes any arguments and is
    # no coroutine function, so uvicorn would take it for an app factory (called with none) or ASGI 2
    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    config = uvicorn.Config(asgi, host="127.0.0.1", port=free_port(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("chunked", [False, True])
def test_urllib_reads_the_413_of_a_large_body_instead_of_a_reset(chunked: bool) -> None:
    guard = RequestGuard(echo_length_app, max_body_bytes=64 * 1024, max_in_flight=8)
    body = b"x" * (8 * 1024 * 1024)
    with served(guard) as base:
        data: bytes | Iterator[bytes] = body
        headers = {"content-type": "application/json"}
        if chunked:
            data = iter([body[i : i + 65536] for i in range(0, len(body), 65536)])
            headers["transfer-encoding"] = "chunked"
        request = urllib.request.Request(f"{base}/v1/events", data=data, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"]["code"] == "payload_too_large"


def test_urllib_reads_a_429_sent_before_its_body_was_read() -> None:
    guard = RequestGuard(echo_length_app, max_body_bytes=4 * 1024 * 1024, max_in_flight=0)  # sheds everything
    with served(guard) as base:
        request = urllib.request.Request(f"{base}/v1/events", data=b"x" * (2 * 1024 * 1024), method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 429 and refused.value.headers["retry-after"] == "1"
    assert json.loads(refused.value.read())["error"]["code"] == "too_many_requests"
