"""Start-up helpers shared by the API (``app.main``), ``tandem serve`` and ``tandem worker``: open the
stores, find the bundle to start from, set torch threads. Kept apart from the FastAPI app so the worker
process never imports the web stack.

Start-up only loads. ``start_bundle`` (the lifespan, ``tandem worker``) never trains: a configured bundle,
else the full default bundle when it is built, else the baseline one when it is built, else it builds the
baseline bundle (the encoder-free sources, seconds). The full bundle is trained only in its own process
(``models.bundle.upgrade``), which ``tandem serve`` starts (``serve_bundle``), never a lifespan.
"""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from pathlib import Path

from app.core.config import Settings
from app.services.serving_bundle import MilvusTarget, milvus_search
from app.stores.base import Stores
from app.stores.memory import memory_stores
from app.stores.redis_cluster import check_server_mode, cluster_stores
from app.stores.redis_stores import redis_stores

log = logging.getLogger("tandem.serve")


def open_stores(settings: Settings, block_ms: int = 0) -> Stores:
    """Redis when TANDEM_REDIS_URL is set (a Redis Cluster with TANDEM_REDIS_CLUSTER), else the in-process
    stores. ``block_ms``: the longest blocking stream read this process makes (``tandem worker``'s).
    Raises ``StoreMisconfigured`` when the cluster flag contradicts the server; no server answering is not
    an error (the process starts degraded)."""
    if settings.redis_url is None:
        return memory_stores(settings.history_length, settings.stream_maxlen, settings.event_dedupe_ttl_s)
    # TANDEM_REDIS_CLUSTER against the server's cluster_enabled: StoreMisconfigured naming the URL
    check_server_mode(settings.redis_url, settings.redis_cluster, settings.redis_connect_timeout_s)
    # the cluster's stores take the same settings, and the number of stream shards
    factory = (
        partial(cluster_stores, stream_shards=settings.stream_shards)
        if settings.redis_cluster
        else redis_stores
    )
    return factory(
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


def start_bundle(settings: Settings) -> Path:
    """The bundle a process starts from, without training: the configured one; else the full default
    bundle when built; else the baseline one when built; else the baseline one, built now (the
    encoder-free sources fitted on the default data: seconds, no training)."""
    if settings.bundle_path is not None:
        return settings.bundle_path
    if settings.bundle_source is not None:
        return fetched_bundle(settings)
    return _default_start(settings)[0]


def fetched_bundle(settings: Settings) -> Path:
    """The packed bundle ``TANDEM_BUNDLE_URL`` names, fetched (or found fetched) under ``fetch_dir`` and
    checked against ``TANDEM_BUNDLE_SHA256`` (``models.bundle.pack.fetch_bundle``)."""
    from models.bundle.pack import fetch_bundle

    assert settings.bundle_source is not None
    url, sha256 = settings.bundle_source
    log.info("fetching the configured bundle", extra={"bundle_url": url})
    return fetch_bundle(url, sha256, settings.fetch_dir)


def _default_start(settings: Settings) -> tuple[Path, bool]:
    """(the default bundle to start from, whether it is the full one); builds only the baseline one."""
    from models.bundle.default import default_bundle_if_built, ensure_default_bundle

    full = default_bundle_if_built(settings.data_dir, settings.var_dir)
    if full is not None:
        return full, True
    baseline = default_bundle_if_built(settings.data_dir, settings.var_dir, stages=())
    if baseline is None:
        log.info("no default bundle built yet: building the baseline bundle (no training)")
        baseline = ensure_default_bundle(settings.data_dir, root=settings.var_dir, stages=(), progress=False)
    return baseline, False


def serve_bundle(settings: Settings) -> tuple[Path, Path | None]:
    """``tandem serve`` without a configured bundle: (bundle to start from, status file of the background
    build or None). Once, before the server's processes start: ``start_bundle``'s choice, and when that is
    not the full default bundle, the full one is built in its own process (or an earlier start's build,
    still running, is followed); the API publishes it when ready (``app.services.bundle_upgrade``)."""
    from models.bundle.upgrade import STATUS_FILE, build_running, start_background_build

    if settings.bundle_source is not None:  # fetched once here, before the server's processes start
        return fetched_bundle(settings), None
    bundle, full = _default_start(settings)
    if full:
        return bundle, None
    log.info(
        "answering from the baseline bundle while the full one is built", extra={"bundle_path": str(bundle)}
    )
    status = Path(settings.var_dir) / "bundles" / STATUS_FILE
    if build_running(status):  # a build started by an earlier start is still going: follow it
        return bundle, status
    return bundle, start_background_build(settings.data_dir, settings.var_dir)


def milvus_target(settings: Settings) -> MilvusTarget | None:
    """Where the ANN source searches with ``TANDEM_INDEX_BACKEND=milvus`` (None: the bundle's faiss index)."""
    if settings.index_backend != "milvus" or not settings.milvus_uri:
        return None
    return MilvusTarget(settings.milvus_uri, settings.key_prefix, settings.milvus_timeout_ms / 1000)


def check_index_backend(settings: Settings, bundle: Path) -> None:
    """With ``TANDEM_INDEX_BACKEND=milvus``, once before the server's processes start: the bundle's collection
    published (or found fitting). Raises ``MilvusUnavailable`` naming the URI and the collection (pymilvus
    not installed, Milvus not answering, a collection of another size or dimension): ``tandem serve`` exits
    1 rather than start processes that cannot load the bundle."""
    target = milvus_target(settings)
    if target is None:
        return
    from models.bundle.format import Manifest
    from models.index import ItemIndex

    index_dir = Manifest.read(bundle).files.get("index")
    if index_dir:
        milvus_search(ItemIndex.load(bundle / str(index_dir)), target)


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
