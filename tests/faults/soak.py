"""``make soak``: the stack under a steady 70% of its measured capacity for SOAK_SECONDS (default 600),
reporting each process's resident memory growth after warm-up. Not part of any test run.

    python -m tests.faults.soak --seconds 600

Capacity is measured first on the same stack (8 closed-loop clients for 10 s, served answers per second);
the soak then paces recommends (and one event batch per ten requests) at 70% of it. RSS comes from
/proc/<pid>/status every 10 s; growth is the last sample against the first one after the warm-up (the first
20% of the run). Writes docs/results/soak.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.app.conftest import build_encoder_bundle
from tests.faults.harness import Stack, catalogue_ids
from tests.faults.report import RESULTS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def closed_loop(base_url: str, users: list[str], clients: int, seconds: float) -> float:
    """Served recommends per second with ``clients`` back-to-back clients."""
    served = [0] * clients
    deadline = time.monotonic() + seconds

    def run(slot: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            n = slot
            while time.monotonic() < deadline:
                n += clients
                if client.post("/v1/recommend", json={"user_id": users[n % len(users)]}).status_code == 200:
                    served[slot] += 1

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(served) / seconds


def paced(base_url: str, users: list[str], items: list[str], rate: float, seconds: float) -> dict[str, int]:
    """Open loop at ``rate`` requests/s spread over 8 clients; returns answers by status."""
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    clients = 8
    interval = clients / rate
    deadline = time.monotonic() + seconds

    def run(slot: int) -> None:
        next_at = time.monotonic() + slot * interval / clients
        n = slot
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while next_at < deadline:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
                n += clients
                user = users[n % len(users)]
                if n % 10 == 0:
                    event = {"user_id": user, "item_id": items[n % len(items)], "action": "click"}
                    event["timestamp"] = int(time.time())
                    response = client.post("/v1/events", json={"events": [event]})
                else:
                    response = client.post("/v1/recommend", json={"user_id": user})
                with lock:
                    statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def soak(seconds: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="tandem-soak-"))
    bundle = build_encoder_bundle(root / "bundle")
    stack = Stack(root / "stack", bundle)
    stack.start()
    try:
        items, users = catalogue_ids(bundle)
        capacity = closed_loop(stack.base_url, users, clients=8, seconds=10)
        pids = {f"api-{pid}": pid for pid in stack.api_pids()}
        assert stack.workers[0].process is not None
        pids["worker"] = stack.workers[0].process.pid
        samples: list[dict[str, int]] = []
        result: dict[str, dict[str, int]] = {}
        runner = threading.Thread(
            target=lambda: result.update(
                statuses=paced(stack.base_url, users, items, 0.7 * capacity, seconds)
            )
        )
        runner.start()
        while runner.is_alive():
            samples.append(
                {name: rss_kib(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()}
            )
            runner.join(timeout=10)
        samples.append({name: rss_kib(pid) for name, pid in pids.items() if Path(f"/proc/{pid}").exists()})
        warm = samples[max(1, len(samples) // 5)]
        growth = {
            name: round(100 * (samples[-1].get(name, 0) - warm[name]) / warm[name], 2)
            for name in warm
            if warm[name] > 0
        }
        return {
            "seconds": seconds,
            "capacity_rps": round(capacity, 1),
            "rate_rps": round(0.7 * capacity, 1),
            "statuses": result.get("statuses", {}),
            "rss_kib_after_warmup": warm,
            "rss_kib_end": samples[-1],
            "rss_growth_pct": growth,
            "samples": len(samples),
        }
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args()
    outcome = soak(args.seconds)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(outcome, indent=2, sort_keys=True) + "\n")
    end, growth = outcome["rss_kib_end"], outcome["rss_growth_pct"]
    rows = [
        f"| {name} | {warm} | {end.get(name, '')} | {growth.get(name)} |"
        for name, warm in outcome["rss_kib_after_warmup"].items()
    ]
    text = [
        "# Soak: RSS under 70% of capacity",
        "",
        f"`make soak` (`python -m tests.faults.soak --seconds {outcome['seconds']:g}`): capacity "
        f"{outcome['capacity_rps']} req/s measured on the same stack, paced at {outcome['rate_rps']} req/s; "
        f"answers {outcome['statuses']}.",
        "",
        "| process | RSS after warm-up (KiB) | RSS at end (KiB) | growth % |",
        "|---|---|---|---|",
        *rows,
        "",
    ]
    (RESULTS / "soak.md").write_text("\n".join(text))
    print(json.dumps(outcome["rss_growth_pct"]))


if __name__ == "__main__":
    main()
