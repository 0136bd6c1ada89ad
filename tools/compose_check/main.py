"""``make compose-check``: the steps in order (see the package's docstring), timed, with a report under
var/compose-check/report.json; exit status 0 only when everything held."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import tools.compose_check as package
from tools.compose_check import shell
from tools.compose_check.behaviour import check_behaviour
from tools.compose_check.bundle import default_bundle, staged_bundle
from tools.compose_check.engine import Engine
from tools.compose_check.images import PUBLIC_BASE, base_image_pullable, build_local_base, make_wheelhouse
from tools.compose_check.shell import ROOT, CheckFailed, run, say, step
from tools.compose_check.stack import Stack, free_port

# Under docker/: the prebuilt-bundle override always; the Debian-packages one without registry access.
OVERRIDES = ("compose.check.yml", "compose.debian.yml")
IMAGE_LABEL = "org.opencontainers.image.title=tandem"  # docker/Dockerfile; prunes old builds


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=package.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_data = Path(os.environ.get("TANDEM_DATA_HOST_DIR", ROOT.parent / "shared" / "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data, help="mounted read-only at /data")
    parser.add_argument("--bundle", type=Path, default=None, help="a bundle directory (default: built here)")
    parser.add_argument("--healthy-timeout", type=float, default=300.0, help="seconds for up -> healthy")
    parser.add_argument("--wait", type=float, default=90.0, help="seconds for the worker and Prometheus")
    parser.add_argument("--project", default="tandemcheck", help="compose project name")
    return parser.parse_args(argv)


def check(
    args: argparse.Namespace, engine: Engine, timings: dict[str, float], report: dict[str, Any]
) -> None:
    with step("engine", timings):
        engine.start()
    say(f"docker: {engine.docker}, compose: {' '.join(engine.compose)}")
    files = [ROOT / "docker-compose.yml", ROOT / "docker" / OVERRIDES[0]]
    with step("base images", timings):
        if base_image_pullable(engine):
            say(f"{PUBLIC_BASE} is available: the shipped images are used")
        else:
            build_local_base(engine)
            make_wheelhouse(engine)
            files.append(ROOT / "docker" / OVERRIDES[1])
    with step("bundle", timings):
        bundle = args.bundle.resolve() if args.bundle else default_bundle(args.data_dir.resolve())
        bundle = staged_bundle(bundle)
    say(f"bundle: {bundle}")
    api_port, prometheus_port = free_port(), free_port()
    stack = Stack(
        engine,
        files,
        args.project,
        {
            "TANDEM_BUNDLE_HOST_DIR": str(bundle),
            "TANDEM_DATA_HOST_DIR": str(args.data_dir.resolve()),
            "TANDEM_API_PORT": str(api_port),
            "TANDEM_PROMETHEUS_PORT": str(prometheus_port),
        },
    )
    report["compose_files"] = [str(file.relative_to(ROOT)) for file in files]
    stack.down()  # what an interrupted earlier run may have left
    try:
        with step("build", timings):
            stack.compose("build", timeout=3600)
        run([engine.docker, "image", "prune", "-f", "--filter", f"label={IMAGE_LABEL}"])
        size = run([engine.docker, "image", "inspect", "-f", "{{.Size}}", "tandem:latest"]).stdout
        report["image_mb"] = round(int(size) / 1e6)
        say(f"tandem:latest is {report['image_mb']} MB")
        try:
            with step("up to healthy", timings):
                stack.up_until_healthy(args.healthy_timeout)
            with step("behaviour", timings):
                report["behaviour"] = check_behaviour(
                    stack, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prometheus_port}", args.wait
                )
            say("behaviour: " + json.dumps(report["behaviour"]))
        except CheckFailed:
            stack.print_logs()
            raise
    finally:
        with step("teardown", timings):
            left = stack.down()
            shutil.rmtree(shell.WORK / "bundle", ignore_errors=True)
        if left:
            raise CheckFailed(f"teardown left {', '.join(left)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    engine = Engine()
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"timings_s": timings}
    try:
        check(args, engine, timings, report)
    except CheckFailed as failure:
        say(f"FAILED: {failure}")
        return 1
    finally:
        engine.stop()
        shell.WORK.mkdir(parents=True, exist_ok=True)
        (shell.WORK / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    say(f"passed: {json.dumps(timings)} (report: {shell.WORK / 'report.json'})")
    return 0
