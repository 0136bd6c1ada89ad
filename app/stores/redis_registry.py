"""The Redis bundle registry: the bundle every process should serve, and what each process serves.

Keys:
    <prefix>:bundle:desired the bundle every process should serve (a reload, a finished background build)
    <prefix>:bundle:served  hash process -> the bundle it serves, refreshed every second by each process
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from app.stores.base import BundleRecord
from app.stores.redis_connection import RedisConnection, text

T = TypeVar("T")
_FORGET_PROCESS_S = 3600.0


class RedisRegistry:
    def __init__(self, connection: RedisConnection):
        self.connection = connection
        self.client = connection.client
        self.prefix = connection.prefix

    async def _call(self, operation: str, make: Callable[[], Awaitable[T]]) -> T:
        return await self.connection.call(operation, make)

    async def set_desired_bundle(self, record: BundleRecord) -> None:
        await self._call(
            "set_desired_bundle", lambda: self.client.set(f"{self.prefix}:bundle:desired", record.encode())
        )

    async def desired_bundle(self) -> BundleRecord | None:
        raw = await self._call("desired_bundle", lambda: self.client.get(f"{self.prefix}:bundle:desired"))
        return BundleRecord.decode(raw) if raw else None

    async def report_bundle(self, process: str, record: BundleRecord | None) -> None:
        key = f"{self.prefix}:bundle:served"
        if record is None:
            await self._call("report_bundle", lambda: self.client.hdel(key, process))
        else:
            await self._call("report_bundle", lambda: self.client.hset(key, process, record.encode()))

    async def served_bundles(self, max_age_s: float) -> dict[str, BundleRecord]:
        key = f"{self.prefix}:bundle:served"
        raw: dict[Any, Any] = await self._call("served_bundles", lambda: self.client.hgetall(key))
        records = {text(process): BundleRecord.decode(value) for process, value in raw.items()}
        now = time.time()
        gone = [process for process, record in records.items() if record.at < now - _FORGET_PROCESS_S]
        if gone:  # processes killed long ago (a clean stop removes itself): forget them
            await self._call("served_bundles", lambda: self.client.hdel(key, *gone))
        return {process: record for process, record in records.items() if record.at >= now - max_age_s}
