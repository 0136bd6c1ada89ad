"""``tandem serve``: the HTTP API under uvicorn.

With one worker the app runs in this process under a uvicorn server that drains on SIGTERM: /readyz turns
503 at once, requests keep being served for ``TANDEM_DRAIN_SECONDS`` so a load balancer can stop routing,
then uvicorn finishes in-flight requests and the lifespan closes the store. Several workers need Redis
(each process would otherwise hold its own in-memory store) and use Prometheus multiprocess mode.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger("tandem.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (>1 needs Redis)")
    parser.add_argument(
        "--reuse-port",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --workers > 1 on Linux, one SO_REUSEPORT socket per worker so the kernel spreads "
        "connections over them (default); --no-reuse-port: uvicorn's one shared socket",
    )
    parser.add_argument("--bundle", type=Path, default=None, help="bundle directory (TANDEM_BUNDLE_PATH)")
    parser.add_argument(
        "--dataset",
        default=None,
        help="serve the newest bundle under var/bundles built from this dataset (e.g. a prepared dataset's "
        "--name, after `tandem bundle build --train --dataset NAME`)",
    )


def _draining_server(config: Any, app: Any, drain_seconds: float) -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """First SIGTERM/SIGINT: report not-ready, keep serving drain_seconds, then exit gracefully."""

        draining = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.draining or drain_seconds <= 0:
                super().handle_exit(sig, frame)
                return
            self.draining = True
            app.state.services.lifecycle.start_draining()
            log.info("draining", extra={"signal": sig, "drain_seconds": drain_seconds})
            timer = threading.Timer(drain_seconds, super().handle_exit, (sig, frame))
            timer.daemon = True
            timer.start()

    return DrainingServer(config)


def _prepare_multiprocess_dir() -> None:
    """Prometheus multiprocess mode: an existing, empty directory shared by the worker processes."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="tandem-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):  # files of a previous run would add to this one's counts
        stale.unlink()


def run(args: argparse.Namespace) -> int:
    from app.core.config import Settings
    from app.core.logging import configure_logging

    if args.bundle is None and args.dataset is not None:
        from models.bundle.default import latest_bundle

        args.bundle = latest_bundle(Settings().var_dir, args.dataset)
        if args.bundle is None:
            print(
                f"error: no bundle built from dataset '{args.dataset}' under {Settings().var_dir}/bundles: "
                f"run `tandem bundle build --train --dataset {args.dataset}` first",
                file=sys.stderr,
            )
            return 2
    if args.bundle is not None:
        os.environ["TANDEM_BUNDLE_PATH"] = str(args.bundle)
    settings = Settings()
    configure_logging(settings.log_level)
    if args.workers > 1 and settings.embedded:
        log.error("--workers > 1 needs TANDEM_REDIS_URL: each process would hold its own in-memory store")
        return 2
    if settings.bundle_path is None:
        from app.startup import serve_bundle

        # Find the default bundle (or build the baseline one, no training) once, here, not in every worker
        # process; the full one is trained in its own process, which this starts.
        bundle, upgrade = serve_bundle(settings)
        os.environ["TANDEM_BUNDLE_PATH"] = str(bundle)
        if upgrade is not None:
            os.environ["TANDEM_BUNDLE_UPGRADE_FILE"] = str(upgrade)
        settings = Settings()
    if not _index_backend_ready(settings):
        return 1

    import uvicorn

    if args.workers > 1:
        _prepare_multiprocess_dir()
        options: dict[str, Any] = {
            "factory": True,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "log_config": None,
            "timeout_graceful_shutdown": 30,
        }
        from app.reuse_port import ReusePortSupervisor, reuse_port_supported

        if args.reuse_port and reuse_port_supported():
            try:
                supervisor = ReusePortSupervisor(uvicorn.Config("app.main:app_factory", **options))
            except OSError as exc:
                log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
                return 1
            supervisor.run()
        else:
            uvicorn.run("app.main:app_factory", **options)
        return 0

    from app.main import create_app

    app = create_app(settings)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=None, timeout_graceful_shutdown=30
    )
    server = _draining_server(config, app, settings.drain_seconds)
    server.run()
    return 0 if server.started else 1  # the lifespan failed (uvicorn logged why)


def _index_backend_ready(settings: Any) -> bool:
    """With ``TANDEM_INDEX_BACKEND=milvus``: the bundle's collection published or checked once, here, before
    any server process starts; False (logged in one line naming the URI and the collection) when Milvus
    cannot serve it."""
    from app.startup import check_index_backend
    from models.index.milvus import MilvusUnavailable

    if settings.bundle_path is None:
        return True
    try:
        check_index_backend(settings, settings.bundle_path)
    except MilvusUnavailable as exc:
        log.error("cannot start: %s", exc)
        return False
    return True
