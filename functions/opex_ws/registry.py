"""The connection registry in Redis, as the ws handlers write it.

- ``{p}:ws:conn:{id}``: hash ``user_id``, ``markets`` (JSON list, sorted), ``connected_at`` (ms)
- ``{p}:ws:user:{user_id}``: set of the user's connection ids
- ``{p}:ws:conns``: set of every connection id
- ``{p}:ws:changes``: pub/sub, ``{"op": "upsert"|"remove", "id"}`` after each change,
  so the pusher updates its cache at once instead of waiting for its next full read

The connection hash and the user set expire after ``WS_CONNECTION_TTL_S``
(refreshed on every client message), so an entry whose $disconnect never came
disappears by itself. ``ws:conns`` cannot expire per member: readers treat an
id whose hash is gone as dead and remove it (the pusher on each full read,
$connect for the user's set). The pusher's side is
``engine_container/opex_engine/pusher/registry.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from opex_common.keys import Keys

UPSERT, REMOVE = "upsert", "remove"


def changes_channel(keys: Keys) -> str:
    return keys.ws_changes_channel()


# Atomic read-modify-write of a connection's markets (two messages of one
# connection may be handled by two Lambdas at once). Returns the new JSON list,
# or nil when the connection is not registered.
_CHANGE_MARKETS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local set = {}
local cur = redis.call('HGET', KEYS[1], 'markets')
if cur then
  local ok, list = pcall(cjson.decode, cur)
  if ok and type(list) == 'table' then
    for _, m in ipairs(list) do if type(m) == 'string' then set[m] = true end end
  end
end
for _, m in ipairs(cjson.decode(ARGV[2])) do
  if ARGV[1] == 'add' then set[m] = true else set[m] = nil end
end
local out = {}
for m, _ in pairs(set) do table.insert(out, m) end
table.sort(out)
local encoded = '[]'
if #out > 0 then encoded = cjson.encode(out) end
redis.call('HSET', KEYS[1], 'markets', encoded)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return encoded
"""


@dataclass(frozen=True, slots=True)
class Connection:
    connection_id: str
    user_id: str
    markets: list[str]
    connected_at: int


# Token bucket per connection: returns {allowed, send_error}. The error flag is
# raised at most once a second so that answers to a flood are not a flood.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2]); local now = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 'ts', 'e')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
local last_error = tonumber(b[3]) or 0
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local allowed, send_error = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
elseif now - last_error >= 1 then
  send_error = 1
  last_error = now
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now), 'e', tostring(last_error))
redis.call('EXPIRE', KEYS[1], 120)
return {allowed, send_error}
"""


class Registry:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.channel = changes_channel(keys)
        self._change_markets = redis.register_script(_CHANGE_MARKETS)

    def _note(self, op: str, connection_id: str) -> bytes:
        return orjson.dumps({"op": op, "id": connection_id})

    async def register(self, connection_id: str, user_id: str, connected_at: int) -> None:
        k = self.keys
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.ws_connection(connection_id), mapping={
                "user_id": user_id, "markets": "[]", "connected_at": str(connected_at)})
            pipe.expire(k.ws_connection(connection_id), self.ttl_s)
            pipe.sadd(k.ws_user_connections(user_id), connection_id)
            pipe.expire(k.ws_user_connections(user_id), self.ttl_s)
            pipe.sadd(k.ws_connections(), connection_id)
            pipe.publish(self.channel, self._note(UPSERT, connection_id))
            await pipe.execute()

    async def remove(self, connection_id: str) -> str | None:
        """Forget a connection; returns its user id (None if it was not registered)."""
        k = self.keys
        raw = await self.redis.hget(k.ws_connection(connection_id), "user_id")
        user_id = _text(raw) if raw else None
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k.ws_connection(connection_id))
            pipe.srem(k.ws_connections(), connection_id)
            if user_id:
                pipe.srem(k.ws_user_connections(user_id), connection_id)
            pipe.publish(self.channel, self._note(REMOVE, connection_id))
            await pipe.execute()
        return user_id

    async def get(self, connection_id: str) -> Connection | None:
        data = await self.redis.hgetall(self.keys.ws_connection(connection_id))
        return parse_connection(connection_id, data)

    async def touch(self, connection_id: str) -> bool:
        """Push the expiry back (a message is activity); False if not registered."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(k.ws_connection(connection_id), "user_id")
            pipe.expire(k.ws_connection(connection_id), self.ttl_s)
            raw, _ = await pipe.execute()
        if not raw:
            return False
        await self.redis.expire(k.ws_user_connections(_text(raw)), self.ttl_s)
        return True

    async def change_markets(self, connection_id: str, op: str, markets: list[str]) -> list[str] | None:
        """Add (``op="add"``) or remove markets; the connection's new list, or None
        if not registered. The pusher is told by ``notify_changed``."""
        encoded = await self._change_markets(
            keys=[self.keys.ws_connection(connection_id)],
            args=[op, orjson.dumps(markets), self.ttl_s],
        )
        if encoded is None:
            return None
        result = orjson.loads(encoded)
        return [m for m in result if isinstance(m, str)] if isinstance(result, list) else []

    async def notify_changed(self, connection_id: str) -> None:
        """Tell the pusher a connection's subscription changed (after the client has its reply)."""
        await self.redis.publish(self.channel, self._note(UPSERT, connection_id))

    async def live_connections(self, user_id: str) -> int:
        """How many of the user's connections are still registered (dead ids are removed)."""
        key = self.keys.ws_user_connections(user_id)
        ids = [_text(i) for i in await self.redis.smembers(key)]
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for cid in ids:
                pipe.exists(self.keys.ws_connection(cid))
            alive = await pipe.execute()
        dead = [cid for cid, ok in zip(ids, alive, strict=True) if not ok]
        if dead:
            await self.redis.srem(key, *dead)
        return len(ids) - len(dead)

    async def take_message_token(self, connection_id: str, rate_per_s: float, burst: int) -> tuple[bool, bool]:
        """(allowed, send_error) for one message of ``connection_id``."""
        key = f"{self.keys.prefix}:ws:rl:{connection_id}"
        allowed, send_error = await self.redis.eval(_BUCKET_LUA, 1, key, rate_per_s, burst, f"{time.time():.3f}")
        return bool(allowed), bool(send_error)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def parse_connection(connection_id: str, data: Mapping[Any, Any]) -> Connection | None:
    """A registry hash as a Connection; None when missing or malformed."""
    if not data:
        return None
    try:
        user_id = _text(data[b"user_id"])
        markets = orjson.loads(data.get(b"markets", b"[]"))
        connected_at = int(data.get(b"connected_at", b"0"))
    except (KeyError, ValueError, UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    if not user_id or not isinstance(markets, list):
        return None
    return Connection(connection_id, user_id, [m for m in markets if isinstance(m, str)], connected_at)
