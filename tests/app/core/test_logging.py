"""JSON log lines carry the request id and extras."""

from __future__ import annotations

import json
import logging

from app.core.logging import JsonFormatter, request_id_var


def test_json_line_has_request_id_and_extras() -> None:
    record = logging.makeLogRecord(
        {"name": "tandem.x", "levelname": "INFO", "msg": "hello %s", "args": ("you",)}
    )
    record.user_count = 3
    token = request_id_var.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello you" and line["request_id"] == "rid-1" and line["user_count"] == 3
    assert "request_id" not in json.loads(JsonFormatter().format(record))
