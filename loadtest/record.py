"""One load-test run as a record a reader can take on its own: what was offered, what was achieved, the
latency and errors against the budget, the machine's load and the bundle that served.

    python -m loadtest.record RESULTS_PREFIX URL --users 32 --seconds 60 --label default [--out FILE]

reads locust's ``<prefix>_stats.csv`` (the ``Aggregated`` row and one row per request name) and the
service's ``/readyz``, and appends the record to ``--out`` (a JSON list; default
``loadtest/results/loadtest.json``). ``offered_rps`` is the rate the users would send if every answer were
instant: users / the mean pause between a user's requests (``MEAN_WAIT_S``, locustfile's ``between(0.05,
0.2)``); a closed loop sends less as latency grows, so ``achieved_rps`` below it is the service falling
behind, not the users idling.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

MEAN_WAIT_S = 0.125  # locustfile.ProductBackend.wait_time = between(0.05, 0.2)
BUDGET_P99_MS = 100.0


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:  # "N/A" before any response
        return None


def stats_rows(stats_csv: Path) -> dict[str, dict[str, Any]]:
    """Request name -> {requests, failures, rps, p50_ms, p99_ms} from locust's ``_stats.csv``."""
    rows: dict[str, dict[str, Any]] = {}
    with open(stats_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            rows[row["Name"]] = {
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "rps": _number(row["Requests/s"]),
                "p50_ms": _number(row["50%"]),
                "p99_ms": _number(row["99%"]),
            }
    return rows


def served_bundle(url: str) -> dict[str, Any]:
    """The /readyz detail that names what served (model version, bundle, serving path, store)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/readyz", timeout=3) as response:
            detail = json.loads(response.read()).get("detail", {})
    except (OSError, ValueError) as error:
        return {"error": str(error)}
    keys = ("model_version", "index_version", "bundle_path", "serving_path", "store", "processes")
    return {key: detail.get(key) for key in keys}


def make_record(
    stats: dict[str, dict[str, Any]],
    users: int,
    seconds: float,
    label: str,
    bundle: dict[str, Any],
    load_before: list[float],
    load_after: list[float],
    budget_p99_ms: float = BUDGET_P99_MS,
) -> dict[str, Any]:
    total = stats["Aggregated"]
    errors = total["failures"] / max(total["requests"], 1)
    within = total["p99_ms"] is not None and total["p99_ms"] <= budget_p99_ms and total["failures"] == 0
    return {
        "label": label,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "users": users,
        "seconds": seconds,
        "offered_rps": round(users / MEAN_WAIT_S, 1),
        "achieved_rps": total["rps"],
        "p50_ms": total["p50_ms"],
        "p99_ms": total["p99_ms"],
        "requests": total["requests"],
        "error_ratio": round(errors, 6),
        "budget_p99_ms": budget_p99_ms,
        "within_budget": within,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpus": os.cpu_count(),
        "bundle": bundle,
        "by_request": {name: row for name, row in stats.items() if name != "Aggregated"},
    }


def append(out: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    records = json.loads(out.read_text()) if out.exists() else []
    records.append(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2) + "\n")
    return records


def checkout_commit() -> str | None:
    """The checkout's short commit (None outside a git checkout)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("prefix", help="locust --csv prefix (reads <prefix>_stats.csv)")
    parser.add_argument("url")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--label", default="run")
    parser.add_argument("--load-before", default="", help="the load average at the start (3 numbers)")
    parser.add_argument("--budget-p99-ms", type=float, default=BUDGET_P99_MS)
    parser.add_argument("--out", type=Path, default=Path("loadtest/results/loadtest.json"))
    args = parser.parse_args(argv)
    before = [float(x) for x in args.load_before.split()] if args.load_before else []
    record = make_record(
        stats_rows(Path(f"{args.prefix}_stats.csv")),
        args.users,
        args.seconds,
        args.label,
        served_bundle(args.url),
        before,
        list(os.getloadavg()),
        args.budget_p99_ms,
    )
    record["commit"] = checkout_commit()
    append(args.out, record)
    verdict = "within" if record["within_budget"] else "OVER"
    print(
        f"{args.label}: {record['achieved_rps']:.0f} of {record['offered_rps']:.0f} req/s offered, "
        f"p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms ({verdict} budget {args.budget_p99_ms:.0f}), "
        f"errors {record['error_ratio']:.4f}, load {before} -> {[round(x, 2) for x in os.getloadavg()]}: "
        f"appended to {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
