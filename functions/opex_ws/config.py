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
    # replies posted to @connections (pong, subscribed, error)
    ws_post_timeout_s: float = Field(default=3.0, gt=0, le=30)


def ws_settings(settings: Settings | None = None) -> WsSettings:
    if settings is None:
        return WsSettings()
    if isinstance(settings, WsSettings):
        return settings
    return WsSettings(**settings.model_dump())
