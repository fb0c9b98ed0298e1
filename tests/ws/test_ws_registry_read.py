"""The pusher's full read of the connection registry, against real Redis."""

from __future__ import annotations

import asyncio
import zlib

import pytest
import redis.asyncio as aioredis

from opex_common.settings import Settings
from opex_engine.pusher.registry import RegistryReader
from opex_ws.registry import Registry


@pytest.mark.integration
def test_each_partition_reads_and_prunes_only_its_own_connections(settings: Settings, redis: object) -> None:
    # (the redis fixture deletes this test's keys afterwards)
    async def main() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            registry = Registry(client, settings.keys, ttl_s=600)
            ids = [f"conn-{i}" for i in range(40)]
            for i, cid in enumerate(ids):
                await registry.register(cid, f"user-{i % 7}", 1_000 + i)
            # two registrations expired without a $disconnect: ids left in the set
            dead = ids[:2]
            await client.delete(*(settings.keys.ws_connection(c) for c in dead))
            reader = RegistryReader(client, settings.keys, settings.markets)

            def part(k: int) -> object:
                return lambda cid: zlib.crc32(cid.encode()) % 2 == k

            seen: dict[str, str] = {}
            pruned = 0
            for k in (0, 1):
                regs, n = await reader.load_all(part(k))  # type: ignore[arg-type]
                assert all(zlib.crc32(c.encode()) % 2 == k for c in regs), "read another partition"
                seen.update({c: r.user_id for c, r in regs.items()})
                pruned += n
            assert seen == {cid: f"user-{i % 7}" for i, cid in enumerate(ids) if cid not in dead}
            assert pruned == 2
            left = {m.decode() for m in await client.smembers(settings.keys.ws_connections())}
            assert left == set(ids) - set(dead)
            everything, n = await reader.load_all()
            assert set(everything) == set(seen) and n == 0
        finally:
            await client.aclose()

    asyncio.run(main())
