"""``milvus_down``: the Milvus server killed and restarted under a steady recommend load.

One API process (``tandem serve --workers 1``, ``TANDEM_INDEX_BACKEND=milvus``, the in-process store, a
tiny bundle) against a ``milvus-lite server`` process; two client threads send ``POST /v1/recommend`` in
turn for the bundle's users. Phases: ``before`` (Milvus up), ``down`` (``kill -9`` of the server),
``after`` (restarted on the same port and data directory). Targets: ``failed`` 0 (a request without its ANN
list is answered by the other sources), ``ann_unavailable`` > 0: ``tandem_stage_failures_total{stage="ann"}``
counted while Milvus was down. Each phase's ANN failures are reported apart, so failures of a slow search
while Milvus is up are not mistaken for the outage.

    python -m tools.scale.milvus_down [--before-s 8] [--down-s 8] [--after-s 12]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.app.conftest import free_port
from tests.faults.harness import catalogue_ids, wait_until
from tests.milvus_server import _answers
from tools.scale.common import Api, Load, metric_total, small_bundles, write_measurement

NAME = "milvus_down"
ANN = {"stage": "ann"}
TIMEOUT_MS = 1000  # a search's deadline: milvus-lite on this loaded 2-core machine, not the outage, decides


class MilvusLite:
    """A ``milvus-lite server`` on a fixed port and data directory, restartable after a kill."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        binary = Path(sys.executable).with_name("milvus-lite")
        command = [str(binary), "server", "--data-dir", str(self.root / "data"), "--host", "127.0.0.1"]
        with (self.root / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT
            )
        if not wait_until(lambda: _answers(self.uri), 90, 0.25):
            raise RuntimeError(
                f"milvus-lite did not answer: {(self.root / 'server.log').read_text()[-2000:]}"
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


def ann_failures(api: Api) -> float:
    return metric_total(api.metrics(), "tandem_stage_failures_total", **ANN)


def measure(root: Path, before_s: float, down_s: float, after_s: float) -> dict[str, Any]:
    bundle, _ = small_bundles(root / "bundles")
    _, users = catalogue_ids(bundle)
    milvus = MilvusLite(root / "milvus")
    milvus.start()
    env = {
        "TANDEM_BUNDLE_PATH": str(bundle),
        "TANDEM_INDEX_BACKEND": "milvus",
        "TANDEM_MILVUS_URI": milvus.uri,
        "TANDEM_MILVUS_TIMEOUT_MS": str(TIMEOUT_MS),
        "TANDEM_VAR_DIR": str(root / "api" / "var"),
    }
    api = Api("api", root / "api", env)
    phases: dict[str, dict[str, Any]] = {}
    try:
        api.start()
        load = Load(api.url, users).start()
        marks = [(time.monotonic(), 0, ann_failures(api))]

        def mark(name: str) -> None:
            now, requests, failures = time.monotonic(), load.counts()["requests"], ann_failures(api)
            then, requests_then, failures_then = marks[-1]
            phases[name] = {
                "seconds": round(now - then, 1),
                "requests": requests - requests_then,
                "ann_unavailable": int(failures - failures_then),
            }
            marks.append((now, requests, failures))

        time.sleep(before_s)
        mark("before")
        milvus.kill()
        time.sleep(down_s)
        mark("down")
        started = time.monotonic()
        milvus.start()
        restart_s = time.monotonic() - started
        mark("restarting")
        last_failure_s, seen = 0.0, ann_failures(api)
        while (elapsed := time.monotonic() - started) < restart_s + after_s:
            time.sleep(0.5)
            if (now_failures := ann_failures(api)) > seen:
                last_failure_s, seen = elapsed, now_failures
        mark("after")
        load.stop()
        counts = load.counts()
    finally:
        api.stop()
        milvus.kill()
    down = phases["down"]["ann_unavailable"] + phases["restarting"]["ann_unavailable"]
    recovered = last_failure_s < restart_s + after_s - 2  # no ANN failure in the last 2 s at least
    return {
        "requests": counts["requests"],
        "failed": counts["failed"],
        "ann_unavailable": down,
        "ann_unavailable_total": sum(phase["ann_unavailable"] for phase in phases.values()),
        "statuses": counts["statuses"],
        "phases": phases,
        "milvus_restart_seconds": round(restart_s, 1),
        "ann_recovered_after_restart": recovered,
        "last_ann_failure_after_restart_began_s": round(last_failure_s, 1),
        "recovered_note": (
            f"ANN answered again {last_failure_s:.1f} s after the restart began (milvus-lite keeps the "
            "collection released after a restart: the backend loads it again on that error)"
            if recovered
            else f"ANN failures went on to the end ({phases['after']['ann_unavailable']} after the restart)"
        ),
        "setup": f"tandem serve --workers 1 (TANDEM_INDEX_BACKEND=milvus, {TIMEOUT_MS} ms search deadline, "
        "in-process store, tiny bundle) against a milvus-lite server process; 2 client threads of "
        f"recommends; milvus-lite kill -9 after {before_s:g} s, {down_s:g} s down, restarted on the same "
        f"port and data dir, {after_s:g} s more load",
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-s", type=float, default=8.0)
    parser.add_argument("--down-s", type=float, default=8.0)
    parser.add_argument("--after-s", type=float, default=12.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="scale-milvus-down-"))
    try:
        result = measure(root, args.before_s, args.down_s, args.after_s)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    write_measurement(NAME, result, " ".join(["python -m tools.scale.milvus_down", *argv]))
    return 0 if result["failed"] == 0 and result["ann_unavailable"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
