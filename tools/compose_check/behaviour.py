"""Step 5: the stack behaves. Recommendations and events through the API port; the worker turns the events
into the vector that serves the user's next answer; Prometheus has scraped that answer and both targets."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from tools.compose_check.shell import CheckFailed
from tools.compose_check.stack import Stack


def http_json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        raise CheckFailed(f"{url}: HTTP {error.code}: {error.read()[:300]!r}") from error
    except urllib.error.URLError as error:
        raise CheckFailed(f"{url}: {error.reason}") from error


def metric_total(text: str, name: str) -> float:
    """Sum of a metric's samples over all label sets in Prometheus text format."""
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.M)
    return sum(float(value) for value in pattern.findall(text))


def check_behaviour(stack: Stack, api: str, prometheus: str, wait_s: float) -> dict[str, Any]:
    """Recommend, send events, see the worker's vector serve the next answer, find the API in Prometheus."""
    user = f"compose-check-{uuid.uuid4().hex[:12]}"
    before = http_json(f"{api}/v1/recommend", {"user_id": user, "k": 10})
    if not before["items"] or before["meta"]["served_by"] != "popular":
        raise CheckFailed(f"a new user should get popular items: {before}")
    seed_item = before["items"][0]["item_id"]
    similar = http_json(f"{api}/v1/items/{urllib.parse.quote(seed_item)}/similar?k=5")
    liked = [seed_item, *[item["item_id"] for item in similar["items"]][:4]]
    written_before = metric_total(stack.metrics_of("worker", 9101), "tandem_worker_vectors_written_total")
    now = int(time.time())
    events = [
        {"user_id": user, "item_id": item, "action": "click", "timestamp": now - len(liked) + i}
        for i, item in enumerate(liked)
    ]
    accepted = http_json(f"{api}/v1/events", {"events": events})
    if accepted.get("accepted") != len(events):
        raise CheckFailed(f"events not accepted: {accepted}")
    # No request for this user until the worker has written vectors: a cache hit afterwards can only
    # come from the worker (the API writes a vector back only when it answers a request).
    deadline = time.monotonic() + wait_s
    written = written_before
    while written <= written_before:
        if time.monotonic() > deadline:
            raise CheckFailed(f"the worker wrote no user vector within {wait_s:.0f}s of the events")
        time.sleep(1)
        written = metric_total(stack.metrics_of("worker", 9101), "tandem_worker_vectors_written_total")
    after = http_json(f"{api}/v1/recommend", {"user_id": user, "k": 10})
    if after["meta"]["served_by"] != "cache":
        raise CheckFailed(f"after the worker ran, served_by is {after['meta']['served_by']!r}, not 'cache'")
    old = [item["item_id"] for item in before["items"]]
    new = [item["item_id"] for item in after["items"]]
    if new == old or set(new) & set(liked):
        raise CheckFailed(f"the answer did not follow the events: before {old}, after {new}, liked {liked}")

    # The answer just served from the worker's vector, as Prometheus scraped it from the API.
    series = 'tandem_requests_total{job="tandem-api",path="/v1/recommend",served_by="cache",status="200"}'
    query = urllib.parse.urlencode({"query": f"sum({series})"})
    deadline = time.monotonic() + wait_s
    scraped = 0.0
    while scraped < 1:
        if time.monotonic() > deadline:
            raise CheckFailed(f"Prometheus has not scraped {series} within {wait_s:.0f}s")
        time.sleep(2)
        result = http_json(f"{prometheus}/api/v1/query?{query}")["data"]["result"]
        scraped = float(result[0]["value"][1]) if result else 0.0
    targets = http_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    health = {target["labels"]["job"]: target["health"] for target in targets}
    if health != {"tandem-api": "up", "tandem-worker": "up"}:
        raise CheckFailed(f"Prometheus targets: {health}")
    return {
        "before": {"served_by": before["meta"]["served_by"], "items": old},
        "events": liked,
        "after": {"served_by": after["meta"]["served_by"], "items": new},
        "worker_vectors_written": written - written_before,
        "prometheus_cache_answers": scraped,
        "prometheus_targets": health,
    }
