"""Small helpers shared by tests: feed ticks and commands to an engine shard."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import redis as redis_lib

from opex_common.keys import shard_for
from opex_common.settings import Settings


def send_tick(settings: Settings, market: str, bid: int, ask: int, mark: int | None = None,
              funding_rate: int = 0, client: redis_lib.Redis | None = None) -> None:
    """XADD one price tick to every shard's input stream."""
    r = client or redis_lib.Redis.from_url(settings.redis_url)
    msg = {"type": "tick", "market": market, "bid": bid, "ask": ask,
           "mark": mark if mark is not None else (bid + ask) // 2, "index": (bid + ask) // 2,
           "funding_rate": funding_rate, "next_funding_ms": 0, "ts": int(time.time() * 1000)}
    for shard in range(settings.engine_shards):
        r.xadd(settings.keys.input_stream(shard), {"d": orjson.dumps(msg)})


def call(settings: Settings, command: dict[str, Any], timeout: float = 10.0,
         client: redis_lib.Redis | None = None) -> dict[str, Any]:
    """Send a command to its shard and wait for the reply (sync)."""
    r = client or redis_lib.Redis.from_url(settings.redis_url)
    command.setdefault("id", uuid.uuid4().hex)
    shard = shard_for(command["user_id"], settings.engine_shards)
    r.xadd(settings.keys.input_stream(shard), {"d": orjson.dumps(command)})
    got = r.blpop([settings.keys.reply(command["id"])], timeout=timeout)
    assert got is not None, f"no reply to {command['type']} within {timeout}s"
    return orjson.loads(got[1])  # type: ignore[no-any-return]
