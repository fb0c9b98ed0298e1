"""Helpers for the price-poller tests: fast settings, a poller running in the
test's event loop, and waiting for conditions with a timeout (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from opex_common.settings import Settings
from opex_engine.prices.config import PollerConfig
from opex_engine.prices.poller import PricePoller
from tests.fakes.backpack import FakeBackpack


def poller_settings(base: Settings, fake: FakeBackpack | None = None, **changes: Any) -> Settings:
    update: dict[str, Any] = {"price_source": "backpack", "tick_interval_ms": 10}
    if fake is not None:
        update |= {"backpack_ws_url": fake.ws_url, "backpack_rest_url": fake.rest_url}
    update |= changes
    return base.model_copy(update=update)


def fast_config(**changes: Any) -> PollerConfig:
    values: dict[str, Any] = {
        "stale_ms": 10_000,
        "fallback_after_ms": 5_000,
        "connect_timeout_s": 1.0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
        "status_interval_ms": 50,
        "candle_flush_ms": 50,
        "backfill_minutes": 0,
        "warn_interval_s": 0.0,
        "rest_timeout_s": 2.0,
    }
    values |= changes
    return PollerConfig(**values)


async def wait_until(cond: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
                     interval: float = 0.01) -> Any:
    """Poll ``cond`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_poller(settings: Settings, config: PollerConfig, **kwargs: Any) -> AsyncIterator[PricePoller]:
    """A PricePoller running in this event loop; stopped (gracefully) on exit."""
    redis = aioredis.Redis.from_url(settings.redis_url)
    poller = PricePoller(settings, config, redis, schema_ready=True, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    try:
        yield poller
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await redis.aclose()


class StreamReader:
    """Reads the engine input streams of a key prefix (async)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = aioredis.Redis.from_url(settings.redis_url)

    async def entries(self, shard: int) -> list[tuple[str, dict[str, Any]]]:
        raw: Any = await self.redis.xrange(self.settings.keys.input_stream(shard))
        return [(eid.decode(), orjson.loads(fields[b"d"])) for eid, fields in raw]

    async def messages(self, shard: int, type_: str | None = None, market: str | None = None) -> list[dict[str, Any]]:
        return [m for _, m in await self.entries(shard)
                if (type_ is None or m.get("type") == type_) and (market is None or m.get("market") == market)]

    async def status(self) -> dict[str, Any] | None:
        raw = await self.redis.get(self.settings.keys.feed_status())
        return orjson.loads(raw) if raw else None

    async def price(self, market: str) -> dict[str, Any] | None:
        raw = await self.redis.hget(self.settings.keys.prices(), market)
        return orjson.loads(raw) if raw else None

    async def close(self) -> None:
        await self.redis.aclose()


def run(coro: Awaitable[Any]) -> Any:
    """Run one async scenario (the project has no pytest-asyncio; asyncio.run is enough)."""
    return asyncio.run(coro)  # type: ignore[arg-type]
