"""The saturation curve of one setup: the shipped mix at a growing number of users, p50 / p99 against the
achieved rate, so a reader sees where the setup stops holding its budget.

    python -m loadtest.steps URL --setup serve [--users 8 16 32 64 128] [--seconds 30]
        [--out docs/results/loadtest-steps.json] [--png docs/results/loadtest-saturation.png]

Each step is a headless locust run (``loadtest/locustfile.py``, spawn within 2 s) whose record
(``loadtest/record.py``) is appended to ``--out`` with ``label`` = ``<setup>-steps``; the PNG draws every
setup found in ``--out`` side by side (its latest series each).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from loadtest.record import BUDGET_P99_MS, append, checkout_commit, make_record, served_bundle, stats_rows

HERE = Path(__file__).resolve().parent


def run_step(url: str, users: int, seconds: int, work: Path) -> dict[str, dict[str, Any]]:
    prefix = work / f"u{users}"
    command = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary",
        "-u", str(users), "-r", str(max(1, users // 2)), "-t", f"{seconds}s", "--host", url,
        "--csv", str(prefix), "--p99-budget-ms", "1e9", "--max-error-ratio", "1",
    ]  # fmt: skip
    # locust exits 1 when any request failed (429s past saturation): the step's CSV still says how many
    subprocess.run(command, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return stats_rows(Path(f"{prefix}_stats.csv"))


def series(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Setup -> its latest step series (records with label ``<setup>-steps``, in the order run; a new
    series starts where the users count stops growing)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        label = str(record.get("label", ""))
        if not label.endswith("-steps"):
            continue
        setup = label.removesuffix("-steps")
        current = out.setdefault(setup, [])
        if current and record["users"] <= current[-1]["users"]:
            current.clear()
        current.append(record)
    return out


def plot(records: list[dict[str, Any]], png: Path, budget_ms: float = BUDGET_P99_MS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
    for (setup, steps), color in zip(series(records).items(), colors, strict=False):
        rate = [s["achieved_rps"] for s in steps]
        axis.plot(rate, [s["p99_ms"] for s in steps], "-o", color=color, label=f"{setup} p99")
        axis.plot(rate, [s["p50_ms"] for s in steps], "--s", color=color, label=f"{setup} p50")
        for step in steps:
            axis.annotate(str(step["users"]), (step["achieved_rps"], step["p99_ms"]), fontsize=7)
    axis.axhline(budget_ms, color="red", linewidth=0.8, label=f"p99 budget {budget_ms:.0f} ms")
    axis.set_yscale("log")
    axis.set_xlabel("achieved requests/s (numbers: locust users)")
    axis.set_ylabel("latency ms (log)")
    axis.set_title("loadtest mix: latency against throughput as users grow")
    axis.legend(fontsize=8)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--setup", required=True, help="serve | stack-local | ...")
    parser.add_argument("--users", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=Path("docs/results/loadtest-steps.json"))
    parser.add_argument("--png", type=Path, default=Path("docs/results/loadtest-saturation.png"))
    args = parser.parse_args(argv)
    bundle = served_bundle(args.url)
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for users in sorted(args.users):
            before = list(os.getloadavg())
            stats = run_step(args.url, users, args.seconds, Path(work))
            record = make_record(
                stats, users, args.seconds, f"{args.setup}-steps", bundle, before, list(os.getloadavg())
            )
            record["commit"] = checkout_commit()
            records = append(args.out, record)
            print(
                f"{args.setup} {users} users: {record['achieved_rps']:.0f} req/s, p50 {record['p50_ms']} ms, "
                f"p99 {record['p99_ms']} ms, errors {record['error_ratio']:.4f}"
            )
    plot(records or json.loads(args.out.read_text()), args.png)
    print(f"wrote {args.out} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
