"""Start-up helpers shared by the API (``app.main``), ``tandem serve`` and ``tandem worker``: open the store,
find the bundle (``first_bundle``: the one a server starts from), set torch threads. Kept apart from the
FastAPI app so the worker process never imports the web stack."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from app.core.config import Settings
from app.stores.base import UserStateStore
from app.stores.memory import MemoryStore
from app.stores.redis_store import RedisStore

log = logging.getLogger("tandem.serve")


def open_store(settings: Settings, block_ms: int = 0) -> UserStateStore:
    """Redis when TANDEM_REDIS_URL is set, else the in-process store."""
    if settings.redis_url is None:
        return MemoryStore(settings.history_length, settings.stream_maxlen, settings.event_dedupe_ttl_s)
    return RedisStore(
        settings.redis_url,
        socket_timeout_s=settings.redis_socket_timeout_s,
        connect_timeout_s=settings.redis_connect_timeout_s,
        retries=settings.redis_retries,
        max_connections=settings.redis_max_connections,
        key_prefix=settings.key_prefix,
        history_length=settings.history_length,
        stream_maxlen=settings.stream_maxlen,
        block_ms=block_ms,
        dedupe_ttl_s=settings.event_dedupe_ttl_s,
    )


def resolve_bundle_path(settings: Settings) -> Path:
    """The configured bundle, else the default one for the configured data (built on first use)."""
    if settings.bundle_path is not None:
        return settings.bundle_path
    from models.bundle.default import ensure_default_bundle

    return Path(ensure_default_bundle(settings.data_dir, root=str(settings.var_dir)))


def first_bundle(settings: Settings) -> tuple[Path, Path | None]:
    """(bundle to start from, status file of a background build or None).

    The full default bundle when it is built already (later starts); else the baseline bundle, built in
    seconds, so the first answer does not wait for training, and the full one built in its own process."""
    from models.bundle.default import default_bundle_if_built, ensure_default_bundle
    from models.bundle.upgrade import STATUS_FILE, build_running, start_background_build

    full = default_bundle_if_built(settings.data_dir, settings.var_dir)
    if full is not None:
        return full, None
    baseline = default_bundle_if_built(
        settings.data_dir, settings.var_dir, stages=()
    ) or ensure_default_bundle(settings.data_dir, root=settings.var_dir, stages=())
    log.info(
        "answering from the baseline bundle while the full one is built", extra={"bundle_path": str(baseline)}
    )
    status = Path(settings.var_dir) / "bundles" / STATUS_FILE
    if build_running(status):  # a build started by an earlier start is still going: follow it
        return baseline, status
    return baseline, start_background_build(settings.data_dir, settings.var_dir)


def set_thread_counts(threads: int) -> None:
    """Deliberate CPU threading: a few intra-op threads per process, no inter-op pool oversubscription.

    faiss's OpenMP thread count is a per-thread setting: call this in every thread that searches (the
    event loop's, and each worker thread through ``app.main.cpu_executor``). Left at the default (one per
    core), a single-query search on the loop thread took 0.85 ms instead of 0.47 ms here.
    """
    import torch

    from models.index import set_faiss_threads

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # already set once in this process (tests)
        torch.set_num_interop_threads(1)
    set_faiss_threads(threads)
