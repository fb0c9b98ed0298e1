"""Connections the API holds: Redis (engine stream, read models), Postgres (users, history).

Created on first use and kept for the life of the process, so a warm Lambda
reuses them across invocations (Mangum runs every invocation on the same event
loop) and uvicorn shares them between requests. Nothing is opened at import,
which keeps the Lambda cold start short, and an outage at start-up does not
stop the app: the first request after the dependency is back succeeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool
from redis.exceptions import RedisError

from opex_common import messages
from opex_common.engine_client import EngineClient, EngineUnavailable, new_command_id
from opex_common.keys import shard_for

from .config import ApiSettings

# Submit a command unless the session is revoked, atomically. A revoked session
# gets a marker pushed onto the command's reply list, so the BLPOP that follows
# in the same pipeline returns at once instead of waiting for a reply that will
# never come. KEYS: revoked-token key, input stream, reply list.
_SUBMIT_LUA = """
if KEYS[1] ~= '' and redis.call('exists', KEYS[1]) == 1 then
  redis.call('lpush', KEYS[3], ARGV[2])
  redis.call('expire', KEYS[3], 60)
  return 0
end
redis.call('xadd', KEYS[2], '*', ARGV[3], ARGV[1])
return 1
"""
REVOKED_MARKER = b'{"revoked":true}'


class SessionRevoked(Exception):
    """The session was signed out: the command was not submitted."""


class PipelinedEngineClient(EngineClient):
    """EngineClient in one round trip: the XADD and the BLPOP for its reply go
    in one pipeline (Redis runs them in order on the connection, so the BLPOP
    waits for the reply to this very command). With ``revoked_key`` the XADD
    happens only if that session is not revoked (checked in the same round
    trip, atomically); with ``with_prices`` the live prices are read right
    after the reply, also in the same round trip.

    (The keys of one call are on different hash slots: Redis must not run in
    cluster mode, which a single ElastiCache primary is not.)"""

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        reply, _ = await self.submit(command)
        return reply

    async def submit(self, command: dict[str, Any], *, revoked_key: str | None = None, with_prices: bool = False
                     ) -> tuple[dict[str, Any], dict[bytes, bytes] | None]:
        cid = command.get("id")
        if not cid:
            cid = command["id"] = new_command_id()
        shard = shard_for(command["user_id"], self.shards)
        stream, reply_key = self.keys.input_stream(shard), self.keys.reply(cid)
        payload = messages.encode(command)
        commands: list[tuple[Any, ...]] = [
            ("XADD", stream, "*", messages.FIELD, payload) if revoked_key is None else
            ("EVAL", _SUBMIT_LUA, 3, revoked_key, stream, reply_key, payload, REVOKED_MARKER, messages.FIELD),
            ("BLPOP", reply_key, max(self.timeout_s, 0.01)),
        ]
        if with_prices:
            commands.append(("HGETALL", self.keys.prices()))
        try:
            results = await round_trip(self.redis, commands)
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"Redis is unavailable: {exc.__class__.__name__}") from exc
        if results[0] == 0:
            raise SessionRevoked()
        got = results[1]
        if got is None:
            raise EngineUnavailable("the trading engine did not answer in time; please retry")
        return messages.decode(got[1]), (as_mapping(results[2]) if with_prices else None)


async def round_trip(redis: aioredis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one write on one pooled connection and read their
    replies: what ``redis.pipeline(transaction=False).execute()`` does (one
    round trip, the same connection pool, health check and socket timeouts),
    without the pipeline object's per-call work, which cost about a third of
    the Redis client's CPU per request. Replies are as the parser returns them,
    without redis-py's response callbacks (``HGETALL``: see ``as_mapping``).
    A Redis error reply raises ``ResponseError``; on any failure the
    connection is closed (replies may be left unread), then released."""
    pool = redis.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        return [await conn.read_response() for _ in commands]
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


def as_mapping(reply: Any) -> dict[Any, Any]:
    """An ``HGETALL`` reply as a dict (RESP2 gives a flat list, RESP3 a map)."""
    if isinstance(reply, dict):
        return reply
    if not reply:
        return {}
    return dict(zip(reply[::2], reply[1::2], strict=True))


class Resources:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._redis: aioredis.Redis | None = None
        self._engine: PipelinedEngineClient | None = None
        self._pool: AsyncConnectionPool | None = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            s = self.settings
            self._redis = aioredis.Redis.from_url(
                s.redis_url,
                socket_connect_timeout=min(2.0, s.redis_timeout_s),
                # longer than the engine's reply wait, which is a BLPOP on this client
                socket_timeout=s.reply_timeout_s + s.redis_timeout_s,
                health_check_interval=30,
            )
        return self._redis

    @property
    def engine(self) -> PipelinedEngineClient:
        if self._engine is None:
            s = self.settings
            self._engine = PipelinedEngineClient(self.redis, s.keys, s.engine_shards, s.reply_timeout_s)
        return self._engine

    async def db(self) -> AsyncConnectionPool:
        if self._pool is None:
            s = self.settings
            pool = AsyncConnectionPool(
                conninfo=s.database_url,
                min_size=1,
                max_size=s.db_pool_max,
                timeout=s.db_timeout_s,
                open=False,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(s.db_timeout_s)),
                        "prepare_threshold": None},
                # a frozen Lambda's connections may be dead when it thaws
                check=AsyncConnectionPool.check_connection if s.environment == "aws" else None,
                reconnect_timeout=2.0,  # give up quickly; the next request that needs a connection tries again
                name="opex-api",
            )
            await pool.open(wait=False)
            self._pool = pool
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
            self._engine = None
