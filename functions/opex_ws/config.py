"""The ws handlers' settings: the shared ``Settings`` plus the few fields only they read."""

from __future__ import annotations

from pydantic import Field

from opex_common.settings import Settings


class WsSettings(Settings):
    # A user's open connections beyond this are refused at $connect (403): a
    # leaked tab loop cannot fill the registry.
    ws_max_connections_per_user: int = Field(default=20, ge=1, le=1000)
    # Client messages are tiny ({"type": "subscribe", "markets": [...]}); API
    # Gateway itself allows 128 KB.
    ws_max_message_bytes: int = Field(default=4096, ge=256, le=131_072)
    ws_redis_timeout_s: float = Field(default=2.0, gt=0, le=30)
    # Per-connection message budget (token bucket in Redis, shared by every
    # Lambda instance): RATE messages a second on average, bursts of BURST.
    # Messages over it are not acted on; one rate_limited error a second at most.
    ws_message_rate_per_s: float = Field(default=5.0, gt=0, le=1000)
    ws_message_burst: int = Field(default=20, ge=1, le=10_000)
    # replies posted to @connections (pong, subscribed, error)
    ws_post_timeout_s: float = Field(default=3.0, gt=0, le=30)


def ws_settings(settings: Settings | None = None) -> WsSettings:
    if settings is None:
        return WsSettings()
    if isinstance(settings, WsSettings):
        return settings
    return WsSettings(**settings.model_dump())
