"""Shared per-app state and the ``Annotated`` dependency aliases the routes use.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
one thread hop per dependency per request; these only read attributes and compare keys.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

from app.core.config import Settings
from app.core.errors import ApiError
from app.services.bundle_sync import BundleSync
from app.services.serving_bundle import BundleHolder, ServingBundle
from app.services.worker import VectorWorker
from app.stores.base import EventStream, Stores, UserStateStore


@dataclass
class Lifecycle:
    """Readiness: true after bundle load + warm-up; draining flips readyz to 503 before shutdown."""

    ready: bool = False
    draining: bool = False

    def start_draining(self) -> None:
        self.draining = True


@dataclass
class Services:
    settings: Settings
    holder: BundleHolder
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    stores: Stores | None = None
    worker: VectorWorker | None = None
    worker_task: asyncio.Task[None] | None = None
    sync: BundleSync | None = None
    sync_task: asyncio.Task[None] | None = None
    upgrade_task: asyncio.Task[None] | None = None  # publishes a background build when it is ready


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_stores(services: ServicesDep) -> Stores:
    if services.stores is None:
        raise ApiError(503, "not_ready", "the service is starting")
    return services.stores


StoresDep = Annotated[Stores, Depends(get_stores)]


async def get_users(stores: StoresDep) -> UserStateStore:
    return stores.users


async def get_event_stream(stores: StoresDep) -> EventStream:
    return stores.events


async def get_serving(services: ServicesDep) -> ServingBundle:
    if not services.holder.loaded:
        raise ApiError(503, "not_ready", "no bundle loaded yet")
    return services.holder.current  # one snapshot per request: a reload never mixes bundles


UsersDep = Annotated[UserStateStore, Depends(get_users)]
EventStreamDep = Annotated[EventStream, Depends(get_event_stream)]
ServingDep = Annotated[ServingBundle, Depends(get_serving)]


def _matches(given: str | None, accepted: list[str]) -> bool:
    if given is None:
        return False
    # Compare against every key so timing does not tell which one almost matched.
    return any([hmac.compare_digest(given.encode(), key.encode()) for key in accepted])


async def require_api_key(
    services: ServicesDep, x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    keys = services.settings.api_keys
    if keys and not _matches(x_api_key, keys):
        raise ApiError(401, "unauthorized", "missing or invalid X-API-Key header")


async def require_admin_key(
    services: ServicesDep, x_admin_key: Annotated[str | None, Header(include_in_schema=False)] = None
) -> None:
    admin_key = services.settings.admin_key
    if admin_key is None:
        raise ApiError(403, "forbidden", "admin routes are disabled (TANDEM_ADMIN_KEY is not set)")
    if not _matches(x_admin_key, [admin_key]):
        raise ApiError(401, "unauthorized", "missing or invalid X-Admin-Key header")
