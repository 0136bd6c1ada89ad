"""The near-line worker's encoder forwards in a child process, so they neither hold the API process's GIL
nor share its core (``TANDEM_WORKER_PROCESS``, the embedded mode of ``make serve``).

Under the load-test mix the embedded worker's re-encoding was ~19% of the API process's samples, and while
it ran, the event loop waited for the GIL after each socket call (docs/performance.md). ``VectorProcess``
runs ``compute_vectors`` in one spawned process that loads the served bundle once per model version
(``load_bundle``, the default loader) and keeps it. The child answers only for the exact model version the
parent serves: on any other version, or when the child dies, that batch is computed in a thread of the
parent as before (counted in ``tandem_worker_process_fallbacks_total``) and a new child is started for the
next one. Vectors are a function of the stored events and the model, so where they are computed changes
nothing in them (tested equal).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from app.core import metrics
from app.services.serving_bundle import ServingBundle, load_bundle
from app.stores.base import StoredVector, UserHistoryRecord

log = logging.getLogger("tandem.worker")

_LOADED: dict[str, Any] = {}  # in the child: the serving bundle it loaded, by path


class StaleChildBundle(RuntimeError):
    """The child's bundle at that path has another model version than the parent serves."""


def _child_start(threads: int, parent: int, check_every_s: float = 1.0) -> None:
    """In the child: thread counts, and a watchdog that ends the child once ``parent`` is gone (killed
    or exited without closing the pool: the child would otherwise wait for work forever)."""
    from app.startup import set_thread_counts

    set_thread_counts(threads)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(check_every_s)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def child_compute(
    path: str, model_version: str, history_length: int, records: dict[str, UserHistoryRecord]
) -> dict[str, StoredVector]:
    """In the child: the vectors of ``records`` with the bundle at ``path`` (loaded on first use). The
    records travel as they are, pickled by the pool's feeder thread: converting them to tuples first
    (3x cheaper to pickle) ran on the event loop and cost more than it saved (locust mix, 2 paired runs:
    p99 43-96 ms with the conversion, 13-25 ms without)."""
    import torch

    from app.services.worker import compute_vectors

    serving = _LOADED.get(path)
    if serving is None or serving.model_version != model_version:
        with torch.inference_mode():
            serving = ServingBundle(load_bundle(Path(path)), history_length)
        _LOADED.clear()
        _LOADED[path] = serving
    if serving.model_version != model_version:
        raise StaleChildBundle(f"{path}: the child loaded {serving.model_version}, serving {model_version}")
    return compute_vectors(serving, records)


class VectorProcess:
    """``compute_vectors`` in one spawned child process; a thread of this process when it cannot."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_child_start,
                initargs=(self.threads, os.getpid()),
            )
        return self._pool

    async def compute(
        self, serving: ServingBundle, path: Path | None, records: dict[str, UserHistoryRecord]
    ) -> dict[str, StoredVector]:
        from app.services.worker import compute_vectors

        if path is not None:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(
                    self._executor(),
                    child_compute,
                    str(path),
                    serving.model_version,
                    serving.history_length,
                    records,
                )
            except Exception as exc:  # a dead child (BrokenProcessPool), another version, a load failure
                metrics.WORKER_PROCESS_FALLBACKS.inc()
                log.warning("worker process failed; this batch in a thread", extra={"error": str(exc)})
                self.close()
        return await asyncio.to_thread(compute_vectors, serving, records)

    def pids(self) -> list[int]:
        """The child's process id (none before the first batch or after ``close``)."""
        processes = getattr(self._pool, "_processes", None) or {}
        return [int(pid) for pid in processes]

    def close(self) -> None:
        """Ends the child now (a batch it was computing is dropped: its entries stay pending and are
        claimed again)."""
        if self._pool is not None:
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.terminate()
            self._pool = None
