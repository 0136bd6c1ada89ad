"""RequestGuard message by message (a scripted ASGI server): what the app is given, the exact answers and
headers, the drain of refused bodies, the in-flight count, and the metrics and log of each request."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.types import Message

import app.api.middleware as middleware
from app.api.middleware import SERVED_BY_KEY, RequestGuard
from app.core import metrics

pytestmark = pytest.mark.anyio


class Server:
    """The server's side: the request's body messages in order, then http.disconnect (or, with ``hang``, a
    receive that never returns); every message sent back."""

    def __init__(self, messages: list[Message] | None = None, hang: bool = False) -> None:
        self.messages = list(messages or [])
        self.hang = hang
        self.received = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.received += 1
        if self.messages:
            return self.messages.pop(0)
        if self.hang:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def body(self) -> dict[str, Any]:
        return dict(json.loads(b"".join(m.get("body", b"") for m in self.sent[1:])))


def parts(*chunks: bytes) -> list[Message]:
    return [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]


def scope_of(method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None, **extra: Any) -> dict:
    return {"type": "http", "method": method, "path": "/v1/events", "headers": headers or [], **extra}


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def guard(app: Any = ok_app, max_in_flight: int = 8) -> RequestGuard:
    return RequestGuard(app, max_body_bytes=4096, max_in_flight=max_in_flight)


async def test_other_scopes_pass_through_untouched() -> None:
    seen: list[tuple] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    server, scope = Server(), {"type": "lifespan"}
    await guard(app)(scope, server.receive, server.send)
    assert seen == [(scope, server.receive, server.send)]


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "DELETE"])
async def test_a_bodyless_method_reaches_the_app_before_anything_is_read(method: str) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append((scope["method"], server.received))
        await ok_app(scope, receive, send)

    server = Server(parts(b"x"))
    await guard(app)(scope_of(method), server.receive, server.send)
    assert seen == [(method, 0)] and server.sent[0]["status"] == 200


async def test_a_get_whose_body_grows_over_the_limit_is_413_and_one_within_is_read() -> None:
    async def reading_app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        body = str(len(message["body"])).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    within, over = Server(parts(b"x" * 4096)), Server(parts(b"x" * 4097))
    await guard(reading_app)(scope_of("GET"), within.receive, within.send)
    await guard(reading_app)(scope_of("GET"), over.receive, over.send)
    assert within.sent[0]["status"] == 200 and within.sent[1]["body"] == b"4096"
    assert over.sent[0]["status"] == 413
    assert over.body()["error"]["message"] == "request body exceeds 4096 bytes"
    assert over.body()["error"]["code"] == "payload_too_large"


async def test_a_scope_without_headers_is_served() -> None:
    server = Server()
    scope = scope_of("GET")
    del scope["headers"]
    await guard()(scope, server.receive, server.send)
    assert server.sent[0]["status"] == 200


async def test_a_declared_length_over_the_limit_is_refused_before_the_app_reads_anything() -> None:
    calls: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope)
        await ok_app(scope, receive, send)

    server = Server(parts(b"tiny"))
    await guard(app)(scope_of(headers=[(b"content-length", b"10000")]), server.receive, server.send)
    assert server.sent[0]["status"] == 413 and not calls


async def test_a_chunked_body_is_replayed_once_then_the_server_is_asked() -> None:
    given: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        given.append(await receive())
        given.append(await receive())  # e.g. a streaming response watching for the client leaving
        await ok_app(scope, receive, send)

    # one message without a body (optional in ASGI), one without more_body (the last)
    server = Server([{"type": "http.request", "more_body": True}, {"type": "http.request", "body": b"ab"}])
    await guard(app)(scope_of(), server.receive, server.send)
    assert given == [{"type": "http.request", "body": b"ab", "more_body": False}, {"type": "http.disconnect"}]


async def test_a_chunked_body_reaches_the_app_as_soon_as_it_ends() -> None:
    started: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.append(server.received)
        await ok_app(scope, receive, send)

    server = Server([{"type": "http.request", "body": b"ab"}], hang=True)
    await asyncio.wait_for(guard(app)(scope_of(), server.receive, server.send), 5)
    assert started == [1]


async def test_a_client_that_leaves_mid_body_lets_the_app_see_what_came() -> None:
    given: list[Message] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        given.append(await receive())
        await ok_app(scope, receive, send)

    server = Server([{"type": "http.request", "body": b"ab", "more_body": True}, *parts(b"cd", b"ef")[:1]])
    await guard(app)(scope_of(), server.receive, server.send)
    assert given[0]["body"] == b"abcd" and server.sent[0]["status"] == 200


async def test_the_response_keeps_the_apps_headers_and_adds_the_request_id() -> None:
    async def bare_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    server = Server()
    await guard(bare_app)(scope_of("GET", [(b"x-request-id", b"r-1")]), server.receive, server.send)
    assert server.sent[0] == {
        "type": "http.response.start",
        "status": 204,
        "headers": [(b"x-request-id", b"r-1")],
    }


async def test_shed_requests_get_the_one_429_and_their_body_is_drained() -> None:
    server = Server(parts(b"a", b"b", b"c"))
    busy = guard(max_in_flight=0)
    await busy(scope_of(headers=[(b"x-request-id", b"r-2")]), server.receive, server.send)
    body = json.dumps(
        {"error": {"code": "too_many_requests", "message": "server busy, retry later", "request_id": "r-2"}}
    ).encode()
    assert server.sent == [
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"x-request-id", b"r-2"),
            ],
        },
        {"type": "http.response.body", "body": body, "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    assert server.received == 3  # the whole body, then the answer ends


@pytest.mark.parametrize("expect", [b"100-continue", b"100-Continue"])
async def test_a_client_waiting_for_100_continue_is_refused_without_a_drain(expect: bytes) -> None:
    shed, large = Server(parts(b"a")), Server(parts(b"a"))
    await guard(max_in_flight=0)(scope_of(headers=[(b"expect", expect)]), shed.receive, shed.send)
    headers = [(b"expect", expect), (b"content-length", b"5000")]
    await guard()(scope_of(headers=headers), large.receive, large.send)
    assert shed.received == large.received == 0
    assert shed.sent[1]["more_body"] is False and large.sent[1]["more_body"] is False


async def test_a_refused_large_body_says_so_and_closes_the_connection() -> None:
    server = Server(parts(b"a", b"b"))
    await guard()(scope_of(headers=[(b"content-length", b"5000")]), server.receive, server.send)
    assert [name for name, _ in server.sent[0]["headers"]] == [
        b"content-type",
        b"content-length",
        b"connection",
        b"x-request-id",
    ]
    assert dict(server.sent[0]["headers"])[b"connection"] == b"close"
    assert server.body()["error"]["message"] == "request body exceeds 4096 bytes"
    assert server.received == 2


async def test_the_drain_stops_past_its_byte_bound_or_at_the_end_of_the_body(monkeypatch) -> None:
    monkeypatch.setattr(middleware, "DRAIN_MAX_BYTES", 10)
    endless = Server([{"type": "http.request", "body": b"x" * 5, "more_body": True}] * 10)
    await middleware._discard_body(endless.receive)
    assert endless.received == 3  # 0, 5 and 10 bytes are within the bound: read on; 15 is past it
    ended = Server([{"type": "http.request", "body": b"x"}, *parts(b"more")])
    await middleware._discard_body(ended.receive)
    assert ended.received == 1  # a message without more_body is the last


async def test_the_drain_gives_up_after_its_time_bound(monkeypatch) -> None:
    monkeypatch.setattr(middleware, "DRAIN_MAX_SECONDS", 0.05)
    silent = Server(hang=True)  # a client that stops sending its body
    await asyncio.wait_for(middleware._discard_body(silent.receive), 10)
    assert silent.received == 1


async def test_in_flight_counts_the_requests_inside_the_app() -> None:
    seen: list[int] = []
    inside, release = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(busy.in_flight)
        if len(seen) == 1:
            inside.set()
            await release.wait()
        await ok_app(scope, receive, send)

    busy = guard(app, max_in_flight=2)
    first, second = Server(), Server()
    waiting = asyncio.ensure_future(busy(scope_of("GET"), first.receive, first.send))
    await inside.wait()
    await busy(scope_of("GET"), second.receive, second.send)
    release.set()
    await waiting
    assert seen == [1, 2] and busy.in_flight == 0
    assert first.sent[0]["status"] == second.sent[0]["status"] == 200
    alone = Server()
    await guard(max_in_flight=1)(scope_of("GET"), alone.receive, alone.send)  # one allowed: served
    assert alone.sent[0]["status"] == 200


def requests_counted(path: str, served_by: str, status: str) -> float:
    return float(metrics.REQUESTS.labels(path, served_by, status)._value.get())


async def test_each_request_is_counted_by_route_template_serving_path_and_status(monkeypatch) -> None:
    route = SimpleNamespace(path="/v1/items/{item_id}/similar")
    clock = iter([100.0, 100.25])
    monkeypatch.setattr(middleware, "time", SimpleNamespace(perf_counter=lambda: next(clock)))

    async def cached_app(scope: Any, receive: Any, send: Any) -> None:
        scope[SERVED_BY_KEY] = "cache"
        await ok_app(scope, receive, send)

    routed = requests_counted(route.path, "cache", "200")
    seconds = metrics.REQUEST_SECONDS.labels(route.path)._sum.get()
    server = Server()
    await guard(cached_app)(scope_of("GET", route=route), server.receive, server.send)
    assert requests_counted(route.path, "cache", "200") == routed + 1
    assert metrics.REQUEST_SECONDS.labels(route.path)._sum.get() == pytest.approx(seconds + 0.25)
    monkeypatch.setattr(middleware, "time", SimpleNamespace(perf_counter=lambda: 0.0))
    unrouted = requests_counted("other", "none", "200")
    await guard()(scope_of("GET"), server.receive, server.send)
    assert requests_counted("other", "none", "200") == unrouted + 1


async def test_an_app_that_never_answers_is_counted_as_a_500() -> None:
    async def silent_app(scope: Any, receive: Any, send: Any) -> None:
        return None

    before = requests_counted("other", "none", "500")
    server = Server()
    await guard(silent_app)(scope_of("GET"), server.receive, server.send)
    assert requests_counted("other", "none", "500") == before + 1 and server.sent == []


async def test_an_error_after_the_answer_started_is_raised_not_answered_twice(caplog) -> None:
    async def late_app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("late")

    server = Server()
    before = requests_counted("other", "none", "200")
    with caplog.at_level(logging.ERROR, logger="tandem.errors"), pytest.raises(RuntimeError, match="late"):
        await guard(late_app)(scope_of("GET"), server.receive, server.send)
    assert [message["type"] for message in server.sent] == ["http.response.start"]
    assert requests_counted("other", "none", "200") == before + 1
    assert [record.getMessage() for record in caplog.records] == ["unhandled error on GET /v1/events"]
