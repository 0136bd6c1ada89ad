"""What /readyz reports about the store and the other processes; a store outage is a state, not an error
(the process stays ready: requests degrade), counted in ``tandem_store_degraded_total``."""

from __future__ import annotations

from app.core import metrics
from app.services.bundle_sync import BundleSync
from app.stores.base import StoreConnection, StoreUnavailable


async def store_state(connection: StoreConnection) -> str:
    """``<kind>:ok`` or ``<kind>:degraded``."""
    try:
        reachable = await connection.ping()
    except StoreUnavailable:
        metrics.STORE_DEGRADED.labels("ping").inc()
        reachable = False
    return f"{connection.kind}:{'ok' if reachable else 'degraded'}"


async def served_processes(sync: BundleSync) -> dict[str, str] | None:
    """Every live process -> the model version it serves; None when the registry does not answer."""
    try:
        return await sync.served()
    except StoreUnavailable:
        metrics.STORE_DEGRADED.labels("served_bundles").inc()
        return None
