"""The connection registry as the pusher reads it (the ws handlers write it:
functions/opex_ws/registry.py; docs/websocket.md describes the keys).

- ``{p}:ws:conns``: set of connection ids; ``{p}:ws:conn:{id}``: hash ``user_id``,
  ``markets`` (JSON list), ``connected_at``; ``{p}:ws:user:{user_id}``: set.
- ``{p}:ws:changes``: pub/sub ``{"op": "upsert"|"remove", "id"}``.

An id in ``ws:conns`` whose hash has expired is a connection whose $disconnect
never arrived: the full read removes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from opex_common.keys import Keys
from opex_common.markets import MarketSpec

UPSERT, REMOVE = "upsert", "remove"
# hashes read per pipeline in a full read: each chunk is one await, so a tick
# arriving meanwhile waits for at most one chunk's parsing (~2 ms), not the whole read
_CHUNK = 100


def changes_channel(keys: Keys) -> str:
    return keys.ws_changes_channel()


@dataclass(frozen=True, slots=True)
class Registration:
    connection_id: str
    user_id: str
    markets: frozenset[str]


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def parse_registration(connection_id: str, data: Mapping[Any, Any],
                       markets: Mapping[str, MarketSpec]) -> Registration | None:
    if not data:
        return None
    try:
        user_id = _text(data[b"user_id"])
        listed = orjson.loads(data.get(b"markets", b"[]"))
    except (KeyError, UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    if not user_id or not isinstance(listed, list):
        return None
    return Registration(connection_id, user_id, frozenset(m for m in listed if isinstance(m, str) and m in markets))


def parse_change(data: bytes) -> tuple[str, str] | None:
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(msg, dict):
        return None
    op, cid = msg.get("op"), msg.get("id")
    if op not in (UPSERT, REMOVE) or not isinstance(cid, str) or not 0 < len(cid) <= 256:
        return None
    return op, cid


class RegistryReader:
    def __init__(self, redis: Redis, keys: Keys, markets: Mapping[str, MarketSpec]) -> None:
        self.redis = redis
        self.keys = keys
        self.markets = markets
        self.channel = changes_channel(keys)

    async def load(self, connection_id: str) -> Registration | None:
        data = await self.redis.hgetall(self.keys.ws_connection(connection_id))
        return parse_registration(connection_id, data, self.markets)

    async def load_all(self, owns: Callable[[str], bool] | None = None) -> tuple[dict[str, Registration], int]:
        """Every registered connection (only those ``owns`` accepts: a pusher
        process reads its own partition, not every process all of them), and
        how many dead ids were pruned."""
        ids = [_text(i) for i in await self.redis.smembers(self.keys.ws_connections())]
        if owns is not None:
            ids = [i for i in ids if owns(i)]
        found: dict[str, Registration] = {}
        dead: list[str] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            async with self.redis.pipeline(transaction=False) as pipe:
                for cid in chunk:
                    pipe.hgetall(self.keys.ws_connection(cid))
                rows = await pipe.execute()
            for cid, row in zip(chunk, rows, strict=True):
                reg = parse_registration(cid, row, self.markets)
                if reg is not None:
                    found[cid] = reg
                elif not row:
                    dead.append(cid)
        if dead:
            await self.redis.srem(self.keys.ws_connections(), *dead)
        return found, len(dead)

    async def drop(self, gone: Iterable[tuple[str, str]]) -> None:
        """Remove connections API Gateway called gone: ``(connection_id, user_id)``."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            n = 0
            for cid, uid in gone:
                pipe.delete(k.ws_connection(cid))
                pipe.srem(k.ws_connections(), cid)
                pipe.srem(k.ws_user_connections(uid), cid)
                n += 1
            if n:
                await pipe.execute()
