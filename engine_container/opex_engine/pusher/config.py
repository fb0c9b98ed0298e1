"""The pusher's settings: the shared ``Settings`` plus the few fields only it reads."""

from __future__ import annotations

from pydantic import Field

from opex_common.settings import Settings


class PusherSettings(Settings):
    # boto3 posts run in this many threads; in AWS each post waits ~10 ms on the
    # network, so more threads than CPUs keep the fan-out short.
    ws_push_threads: int = Field(default=32, ge=1, le=512)
    # pusher processes, each owning the connections whose crc32(id) % N is its
    # index: boto3's CPU cost per post (~0.5 ms) is the pusher's limit, and
    # one process uses one CPU
    ws_push_processes: int = Field(default=1, ge=1, le=64)
    ws_post_timeout_s: float = Field(default=3.0, gt=0, le=60)
    # full re-read of the registry (changes arrive at once on {p}:ws:changes;
    # this catches what pub/sub dropped and prunes expired entries)
    ws_registry_refresh_s: float = Field(default=5.0, gt=0, le=600)
    # a failed account push is retried this many times, then dropped
    ws_account_retries: int = Field(default=3, ge=0, le=20)
    ws_stats_interval_s: float = Field(default=60.0, gt=0)


def pusher_settings(settings: Settings | None = None) -> PusherSettings:
    if settings is None:
        return PusherSettings()
    if isinstance(settings, PusherSettings):
        return settings
    return PusherSettings(**settings.model_dump())
