"""Where the embedded service spends its time under the shipped load-test mix: py-spy on ``tandem serve``
(one process, in-process store and worker, the default bundle) while locust runs ``loadtest/locustfile.py``.

    python -m tools.bench.profile_serve [--bundle DIR] [--users 32] [--seconds 30] [--out PREFIX]

Writes ``<out>.svg`` (py-spy's flame graph, every thread), ``<out>.json`` and ``<out>.md`` (``--out``,
default docs/results/profile-serve): the share of samples per stage (inclusive: a sample counts for every
stage on its stack), per thread, and the top functions by own time. Needs py-spy (``pip install -e
'.[profile]'``) and locust (``.[load]``); py-spy reads another process's memory, which needs root or
ptrace permission.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.record import stats_rows
from models.reporting.provenance import command_line, machine_info
from tools.bench.service import serve_command, start_process, stop_process, wait_ready

# stage -> a frame that marks it (function name as py-spy prints it, then the file)
STAGES: dict[str, str] = {
    "recommend (all of it)": "post_recommend (app/api/routes_recommend.py",
    "candidates: sources + merge": "CandidateGenerator.generate (",
    "features (GBDT)": "request_features (",
    "trees (GBDT)": "GbdtRanker.score_batch (",
    "online encoder forward (request)": "encode_one (",
    "near-line worker recompute": "compute_vectors (",
    "events route": "post_events (",
    "similar items route": "similar (app/",
    "uvicorn / starlette / fastapi": "RequestResponseCycle.run_asgi (",
    "access log": "Logger.info (",
}
_PATH = re.compile(r" \(/[^)]*?/(?:site-packages|lib/python3\.\d+|main|app|models)/")


def _frame(frame: str) -> str:
    return _PATH.sub(" (", frame)


def summarise(raw: str) -> dict[str, Any]:
    """py-spy ``--format raw`` lines (``thread;frame;...;frame count``) -> shares of samples."""
    total = 0
    stages: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[re.sub(r"^thread \([^)]*\):\s*", "", frames[0])] += n
        for stage, marker in STAGES.items():
            if any(marker in frame for frame in frames[1:]):
                stages[stage] += n
        own[_frame(frames[-1])] += n

    def share(counter: collections.Counter[str], top: int | None = None) -> dict[str, float]:
        return {key: round(value / max(total, 1), 4) for key, value in counter.most_common(top)}

    return {"samples": total, "stages": share(stages), "threads": share(threads), "own_time": share(own, 15)}


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# Where the embedded service spends its time under the load-test mix",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; load average at start {meta['load_average_start']}.  ",
        f"Load: locust, {meta['users']} users of `loadtest/locustfile.py` for {meta['seconds']} s "
        f"(achieved {meta['achieved_rps']} req/s); py-spy at {meta['rate']} Hz on every thread, "
        f"{summary['samples']} samples. Flame graph: `{meta['svg']}`.",
        "",
        "| stage (inclusive share of all samples) | share |",
        "|---|---|",
        *[f"| {stage} | {share:.1%} |" for stage, share in summary["stages"].items()],
        "",
        "| thread | share |",
        "|---|---|",
        *[f"| {thread} | {share:.1%} |" for thread, share in summary["threads"].items()],
        "",
        "| function (own time) | share |",
        "|---|---|",
        *[f"| `{name}` | {share:.1%} |" for name, share in summary["own_time"].items()],
        "",
    ]
    return "\n".join(lines)


def _locust(url: str, users: int, seconds: int, prefix: Path) -> subprocess.Popen[bytes]:
    locustfile = Path(__file__).resolve().parents[2] / "loadtest" / "locustfile.py"
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "--only-summary",
        "-u", str(users), "-r", str(max(1, users // 4)), "-t", f"{seconds}s", "--host", url,
        "--csv", str(prefix), "--p99-budget-ms", "1e9", "--max-error-ratio", "1",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--bundle", type=Path, default=None, help="default: the default bundle (built if needed)"
    )
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--port", type=int, default=8397)
    parser.add_argument("--out", type=Path, default=Path("docs/results/profile-serve"))
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("profile_serve needs py-spy: pip install -e '.[profile]'", file=sys.stderr)
        return 2
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        command = serve_command(args.bundle, args.port, 1) if args.bundle else [
            sys.executable, "-m", "cli.main", "serve", "--host", "127.0.0.1", "--port", str(args.port),
        ]  # fmt: skip
        env = {"TANDEM_LOG_LEVEL": "WARNING", "TANDEM_VAR_DIR": str(work_dir / "var")}
        if args.bundle is None:
            env.pop("TANDEM_VAR_DIR")  # the default bundle lives under the project's var/
        server = start_process(command, env, work_dir / "serve.log")
        url = f"http://127.0.0.1:{args.port}"
        try:
            wait_ready(url, server, 900)
            load = _locust(url, args.users, args.seconds + 10, work_dir / "run")
            time.sleep(5)  # spawned and warm
            raw = work_dir / "profile.raw"
            svg = args.out.with_suffix(".svg")
            svg.parent.mkdir(parents=True, exist_ok=True)
            record = [spy, "record", "-p", str(server.pid), "-d", str(args.seconds), "-r", str(args.rate)]
            record += ["--threads", "--nonblocking"]
            # two samplers side by side: the flame graph, and the raw stacks the tables are counted from
            samplers = [
                subprocess.Popen([*record, "-f", "flamegraph", "-o", str(svg)], stdout=subprocess.DEVNULL),
                subprocess.Popen([*record, "-f", "raw", "-o", str(raw)], stdout=subprocess.DEVNULL),
            ]
            for sampler in samplers:
                sampler.wait(timeout=args.seconds + 60)
            load.wait(timeout=args.seconds + 120)
            achieved = _achieved(work_dir / "run_stats.csv")
        finally:
            stop_process(server)
        text = raw.read_text()
    summary = summarise(text)
    meta = {
        "command": command_line(),
        "machine": machine_info().get("cpu", "?"),
        "load_average_start": round(load_start, 2),
        "users": args.users,
        "seconds": args.seconds,
        "rate": args.rate,
        "achieved_rps": achieved,
        "svg": str(svg),
    }
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, **summary}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(summary, meta))
    print(markdown(summary, meta))
    return 0


def _achieved(stats_csv: Path) -> float | None:
    """The aggregated req/s of locust's ``_stats.csv`` (None when it wrote none)."""
    if not stats_csv.exists():
        return None
    rps = stats_rows(stats_csv)["Aggregated"]["rps"]
    return None if rps is None else round(float(rps), 1)


if __name__ == "__main__":
    raise SystemExit(main())
