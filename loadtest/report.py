"""Helpers of ``make loadtest``: refuse to start without a running service; plot latency over time.

python loadtest/report.py check http://127.0.0.1:8000      # exit 2 with a message when nothing answers
python loadtest/report.py plot loadtest/results/run_stats_history.csv loadtest/results/latency.png
"""

from __future__ import annotations

import argparse
import csv
import sys
import urllib.error
import urllib.request
from pathlib import Path


def check(url: str) -> int:
    """0 when ``url``/readyz answers 200; else a message saying how to start a service, and 2."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/readyz", timeout=3) as response:
            if response.status == 200:
                return 0
            problem = f"answered {response.status}"
    except urllib.error.HTTPError as error:
        problem = f"answered {error.code} (starting or draining)"
    except (urllib.error.URLError, OSError) as error:
        problem = f"is not reachable ({getattr(error, 'reason', error)})"
    print(
        f"make loadtest: no ready tandem service: {url}/readyz {problem}.\n"
        "It starts nothing itself: run `make serve` or `make stack-local` first (or set HOST/PORT).",
        file=sys.stderr,
    )
    return 2


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # locust writes "N/A" before the first response
        return float("nan")


def plot(history_csv: Path, out: Path) -> int:
    """Aggregated rows of locust's stats history -> p50/p95/p99 and requests/s over time (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(history_csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    if not rows:
        print(f"{history_csv}: no aggregated rows to plot", file=sys.stderr)
        return 1
    start = _number(rows[0]["Timestamp"])
    seconds = [_number(row["Timestamp"]) - start for row in rows]
    figure, (latency, rate) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for column in ("50%", "95%", "99%"):
        latency.plot(seconds, [_number(row[column]) for row in rows], label=f"p{column.rstrip('%')}")
    latency.set_ylabel("latency ms")
    latency.legend()
    latency.set_title("locust: latency over time (all requests)")
    rate.plot(seconds, [_number(row["Requests/s"]) for row in rows], label="requests/s")
    rate.plot(seconds, [_number(row["Failures/s"]) for row in rows], label="failures/s")
    rate.set_xlabel("seconds since start")
    rate.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check").add_argument("url")
    plotter = commands.add_parser("plot")
    plotter.add_argument("history_csv", type=Path)
    plotter.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.url)
    return plot(args.history_csv, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
