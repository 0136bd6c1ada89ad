"""Load test for the tandem API: recommend (known and unknown users), events and similar items.

Headless run with a budget check (exit code 1 when the p99 latency or the error ratio is over budget):

    make loadtest            # against a running service: CSV/HTML and latency.png under loadtest/results/
    locust -f loadtest/locustfile.py --config loadtest/locust.conf --host http://127.0.0.1:8000 \
        --p99-budget-ms 100 --max-error-ratio 0

Known users are drawn with a Zipf-like skew (user at popularity rank r weighs 1 / r^LOADTEST_SKEW, default
1.0), as a few heavy users make most of a product's traffic; their vectors are then mostly cached.

Ids default to MovieLens-1M raw ids (users 1-2998, movies 1-3952); override with LOADTEST_USERS /
LOADTEST_ITEMS ("first-last"). X-API-Key comes from TANDEM_API_KEY when the server requires one.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time

from locust import HttpUser, between, events, task


def _id_range(variable: str, default: str) -> tuple[int, int]:
    first, _, last = os.environ.get(variable, default).partition("-")
    return int(first), int(last or first)


KNOWN_USERS = _id_range("LOADTEST_USERS", "1-2998")
ITEMS = _id_range("LOADTEST_ITEMS", "1-3952")
SCENES = ("home", "detail", "search")
SKEW = float(os.environ.get("LOADTEST_SKEW", "1.0"))
# user ids in a fixed shuffled order = popularity rank; cumulative Zipf weights for random.choices
_KNOWN_IDS = list(range(KNOWN_USERS[0], KNOWN_USERS[1] + 1))
random.Random(7).shuffle(_KNOWN_IDS)
_CUMULATIVE = list(itertools.accumulate(1.0 / rank**SKEW for rank in range(1, len(_KNOWN_IDS) + 1)))


@events.init_command_line_parser.add_listener
def _add_budget_options(parser) -> None:  # type: ignore[no-untyped-def]
    parser.add_argument("--p99-budget-ms", type=float, default=100.0, help="fail when p99 exceeds this")
    parser.add_argument("--max-error-ratio", type=float, default=0.0, help="fail when more requests fail")


@events.quitting.add_listener
def _check_budget(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    """Sets a non-zero exit code when the run broke its latency or error budget."""
    total = environment.stats.total
    options = environment.parsed_options
    if total.num_requests == 0:
        logging.error("budget: no requests were made")
        environment.process_exit_code = 1
        return
    p99_ms = total.get_response_time_percentile(0.99)
    error_ratio = total.fail_ratio
    logging.info(
        "budget: requests=%d p99=%.1fms (budget %.1f) errors=%.4f (budget %.4f)",
        total.num_requests,
        p99_ms,
        options.p99_budget_ms,
        error_ratio,
        options.max_error_ratio,
    )
    if p99_ms > options.p99_budget_ms or error_ratio > options.max_error_ratio:
        logging.error("budget exceeded")
        environment.process_exit_code = 1


class ProductBackend(HttpUser):
    """One calling service: mostly recommendations, some event batches, a few similar-item lookups."""

    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        key = os.environ.get("TANDEM_API_KEY")
        if key:
            self.client.headers["X-API-Key"] = key

    def _known_user(self) -> str:
        return str(random.choices(_KNOWN_IDS, cum_weights=_CUMULATIVE)[0])

    def _item(self) -> str:
        return str(random.randint(*ITEMS))

    @task(6)
    def recommend_known_user(self) -> None:
        body = {"user_id": self._known_user(), "k": 20, "context": {"scene": random.choice(SCENES)}}
        self.client.post("/v1/recommend", json=body, name="/v1/recommend [known]")

    @task(2)
    def recommend_unknown_user(self) -> None:
        body = {"user_id": f"guest-{random.randint(0, 10**9)}", "k": 20}
        if random.random() < 0.5:
            body["anchors"] = [self._item() for _ in range(3)]
        self.client.post("/v1/recommend", json=body, name="/v1/recommend [unknown]")

    @task(2)
    def send_events(self) -> None:
        user, now = self._known_user(), int(time.time())
        batch = [
            {
                "user_id": user,
                "item_id": self._item(),
                "action": random.choice(("view", "click")),
                "timestamp": now,
            }
            for _ in range(random.randint(1, 5))
        ]
        self.client.post("/v1/events", json={"events": batch}, name="/v1/events")

    @task(1)
    def similar_items(self) -> None:
        with self.client.get(
            f"/v1/items/{self._item()}/similar?k=10", name="/v1/items/{id}/similar", catch_response=True
        ) as response:
            if response.status_code == 404:  # ids outside the catalogue are expected, not errors
                response.success()
