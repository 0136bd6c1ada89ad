"""First answer fast, best model soon after: build the full default bundle in a background process.

``tandem serve`` without a configured bundle starts from the full default bundle when it is already built;
otherwise it starts at once from the baseline bundle (popularity + co-occurrence, built in seconds) and
calls ``start_background_build``: a separate process (``python -m models.bundle.upgrade``) trains the quick
encoder and ranker and writes a small JSON status file that the API processes follow to hot-reload::

    {"status": "building", "pid": 123, "log": "var/logs/bundle-build.log", "started": 1764500000}
    {"status": "ready", "bundle_path": "var/bundles/ml-1m-...-encoder+ranker", ...}
    {"status": "failed", "error": "...", ...}
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)
STATUS_FILE = "upgrade.json"


def write_status(path: Path, **fields: Any) -> None:
    """Replaces the status file atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**fields, "updated": int(time.time())}) + "\n", encoding="utf-8")
    temporary.replace(path)


def read_status(path: Path) -> dict[str, Any]:
    """The status file's fields; ``{"status": "none"}`` when there is none or it is unreadable."""
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {"status": "none"}
    return status if isinstance(status, dict) and "status" in status else {"status": "none"}


def build_running(status_file: Path) -> bool:
    """True when the status file says "building" and its process is still alive."""
    status = read_status(status_file)
    if status["status"] != "building" or not isinstance(status.get("pid"), int):
        return False
    try:
        os.kill(status["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def start_background_build(data_dir: str | Path, root: str | Path = "var") -> Path:
    """Starts the full build in its own process (own session, log under ``root/logs``); returns the status
    file it will write. The status says "building" before this returns."""
    root = Path(root)
    status = root / "bundles" / STATUS_FILE
    log_path = root / "logs" / "bundle-build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "models.bundle.upgrade",
        "--data-dir",
        str(data_dir),
        "--root",
        str(root),
    ]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    write_status(status, status="building", pid=process.pid, log=str(log_path), started=int(time.time()))
    logger.info("building the full default bundle in the background (pid %d, log %s)", process.pid, log_path)
    return status


def build(data_dir: str | Path | None, root: Path) -> int:
    """The background process: the full default bundle, then the status file says where it is."""
    from models.bundle.default import ensure_default_bundle

    status = root / "bundles" / STATUS_FILE
    started = time.time()
    try:
        path = ensure_default_bundle(data_dir, root=root, progress=False)
    except Exception as exc:  # reported to the serving processes through the status file
        logger.exception("background bundle build failed")
        write_status(status, status="failed", error=f"{type(exc).__name__}: {exc}", pid=os.getpid())
        return 1
    seconds = round(time.time() - started, 1)
    write_status(status, status="ready", bundle_path=str(path), pid=os.getpid(), build_seconds=seconds)
    logger.info("full default bundle ready: %s (%.0f s)", path, seconds)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The background process ``start_background_build`` runs (not a user command: ``tandem serve`` starts
    it, with the server's data directory)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="raw data root")
    parser.add_argument("--root", type=Path, default=Path("var"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return build(args.data_dir, args.root)


if __name__ == "__main__":
    raise SystemExit(main())
