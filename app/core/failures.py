"""Failures the stores and services raise and ``app.core.errors`` answers, on the ground floor (the
stores import them; ``app.stores.base`` re-exports the store's two) and free of the web stack: ``tandem
worker`` imports them and never imports FastAPI."""

from __future__ import annotations

from pathlib import Path


class StoreUnavailable(Exception):
    """The store could not answer in time (connection refused, timeout); callers degrade, never 500."""


class BacklogFull(Exception):
    """The event stream holds ``stream_maxlen`` unprocessed entries: nothing was stored, retry later.

    The stream is never trimmed below unprocessed entries, so when the worker is down or far behind,
    ingestion pushes back instead of silently dropping work. ``refused``: the events not stored."""

    def __init__(self, message: str, refused: int = 0):
        super().__init__(message)
        self.refused = refused


class BundleRefused(Exception):
    """A bundle that could not be loaded or verified (``cause``: whatever the loader raised); the bundle
    served before keeps serving."""

    def __init__(self, path: Path, cause: Exception):
        lines = str(cause).strip().splitlines() or [cause.__class__.__name__]
        super().__init__(f"{path}: {lines[0][:300]}")
        self.path = path
        self.cause = cause


class StoreMisconfigured(Exception):
    """The store settings contradict the store itself (``TANDEM_REDIS_CLUSTER`` against the server's
    ``cluster_enabled``, a db other than 0 in cluster mode): a start-up error naming the URL."""
