"""Send a command to the engine shard that owns the user and wait for its reply.

The command goes on the shard's input stream (XADD); the engine pushes the
reply onto a list named after the command id, which this side BLPOPs. Each
request waits on its own key, so nothing is skipped or read twice (the old
platform scanned a shared response stream from "now" on and lost replies).

A retry with the same command id is applied once by the engine and answered
with the original reply.
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import messages
from .keys import Keys, shard_for

REPLY_TTL_S = 60
INPUT_MAXLEN_HINT = None  # the engine trims the stream itself, only below a snapshot


class EngineUnavailable(Exception):
    """The engine did not answer in time, or Redis could not be reached."""


def new_command_id() -> str:
    """128 random bits as 32 hex digits (uuid4's shape, without building a UUID)."""
    return os.urandom(16).hex()


class EngineClient:
    def __init__(self, redis: aioredis.Redis, keys: Keys, shards: int, timeout_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.shards = shards
        self.timeout_s = timeout_s

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        """Submit ``command`` (which must carry ``id``, ``type``, ``user_id``)."""
        cid = command.get("id")
        if not cid:
            cid = command["id"] = new_command_id()
        shard = shard_for(command["user_id"], self.shards)
        try:
            await self.redis.xadd(self.keys.input_stream(shard), {messages.FIELD: messages.encode(command)})
            # BLPOP's timeout has 1 ms resolution in Redis >= 6; keep a floor.
            got = await self.redis.blpop([self.keys.reply(cid)], timeout=max(self.timeout_s, 0.01))
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"Redis is unavailable: {exc.__class__.__name__}") from exc
        if got is None:
            raise EngineUnavailable("the trading engine did not answer in time; please retry")
        return messages.decode(got[1])

    async def account(self, user_id: str) -> dict[str, Any] | None:
        """The engine's read model of one account, or None if it has none."""
        try:
            raw = await self.redis.get(self.keys.account(user_id))
        except (RedisError, OSError) as exc:
            raise EngineUnavailable(f"Redis is unavailable: {exc.__class__.__name__}") from exc
        return messages.decode(raw) if raw else None
