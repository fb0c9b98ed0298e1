"""Redis key, stream and channel names, all under one prefix.

A prefix per deployment (``opex``) and per test run (``opex-t<uuid>``) keeps
runs from colliding on a shared Redis.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass


def shard_for(user_id: str, shards: int) -> int:
    """The engine shard that owns ``user_id`` (stable across processes)."""
    return zlib.crc32(user_id.encode()) % shards


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "opex"

    # --- engine input / output -------------------------------------------
    def input_stream(self, shard: int) -> str:
        """Ordered input of one engine shard: commands and price ticks."""
        return f"{self.prefix}:in:{shard}"

    def event_stream(self, shard: int) -> str:
        """Events leaving one shard (fills, closes, ledger entries...)."""
        return f"{self.prefix}:events:{shard}"

    def reply(self, command_id: str) -> str:
        """A list the engine LPUSHes one reply onto; the API BLPOPs it."""
        return f"{self.prefix}:reply:{command_id}"

    ENGINE_GROUP = "engine"
    HISTORY_GROUP = "history"
    PUSHER_GROUP = "pusher"

    # --- read models --------------------------------------------------------
    def account(self, user_id: str) -> str:
        """JSON read model of one account, written by its engine shard."""
        return f"{self.prefix}:acct:{user_id}"

    def engine_status(self, shard: int) -> str:
        return f"{self.prefix}:engine:{shard}:status"

    def prices(self) -> str:
        """Hash: market -> JSON of the latest bid/ask/mark/index/funding."""
        return f"{self.prefix}:prices"

    def feed_status(self) -> str:
        return f"{self.prefix}:feed:status"

    # --- live fan-out (pub/sub) -------------------------------------------
    def prices_channel(self) -> str:
        return f"{self.prefix}:live:prices"

    def accounts_channel(self) -> str:
        """Account read models as they change, one message per engine batch:
        {"accounts": [{"user_id", "account", "events": [...]}, ...]}."""
        return f"{self.prefix}:live:accounts"

    # --- auth / websocket ---------------------------------------------------
    def revoked_token(self, jti: str) -> str:
        return f"{self.prefix}:revoked:{jti}"

    def ws_ticket(self, ticket: str) -> str:
        return f"{self.prefix}:wsticket:{ticket}"

    def ws_connection(self, connection_id: str) -> str:
        """Hash: user_id, markets (JSON list), connected_at."""
        return f"{self.prefix}:ws:conn:{connection_id}"

    def ws_user_connections(self, user_id: str) -> str:
        """Set of connection ids of one user."""
        return f"{self.prefix}:ws:user:{user_id}"

    def ws_connections(self) -> str:
        """Set of every live connection id."""
        return f"{self.prefix}:ws:conns"

    def ws_changes_channel(self) -> str:
        """Pub/sub: the ws handlers announce registry changes so the pusher refreshes at once."""
        return f"{self.prefix}:ws:changes"

    def rate_limit(self, scope: str, client: str) -> str:
        return f"{self.prefix}:rl:{scope}:{client}"
