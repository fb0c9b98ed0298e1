"""Small helpers shared by tests: feed ticks and commands to an engine shard,
free ports and subprocess environments."""

from __future__ import annotations

import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment variables that reproduce ``settings`` in a subprocess, plus
    ``extra``; Powertools logs only warnings unless told otherwise."""
    from tests.conftest import settings_env

    env = {**settings_env(settings), **extra}
    env.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    return env
