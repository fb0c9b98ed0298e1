"""Tuning knobs of the price poller that the shared Settings do not carry.

The shared :class:`opex_common.settings.Settings` holds what other processes also
read (PRICE_SOURCE, BACKPACK_WS_URL, BACKPACK_REST_URL, TICK_INTERVAL_MS,
SIMULATOR_SEED, ENGINE_SHARDS). Everything only the poller needs lives here, read
from ``POLLER_*`` environment variables and validated once at start-up.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class PollerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POLLER_", case_sensitive=False, extra="ignore")

    # A market with no good price from any source for this long is declared stale
    # to the engine (which then refuses market orders on it).
    stale_ms: int = Field(default=10_000, ge=100)
    # A price more than this far (bps) from the last good one is dropped as a
    # glitch, unless the new level persists (see jump_confirm_*).
    sanity_band_bps: int = Field(default=1_000, ge=1, le=100_000)
    # A jump beyond the band is accepted once prices at the new level keep coming
    # for this long and for at least this many frames (a real crash, not a typo).
    jump_confirm_ms: int = Field(default=3_000, ge=0)
    jump_confirm_frames: int = Field(default=3, ge=1)
    # PRICE_SOURCE=auto: switch to the simulator when Backpack gave no good price
    # for this long (at start: within this long of starting).
    fallback_after_ms: int = Field(default=5_000, ge=50)
    # WebSocket client
    connect_timeout_s: float = Field(default=5.0, gt=0)
    reconnect_min_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    silence_timeout_s: float = Field(default=15.0, gt=0)  # open socket, no frame: reconnect
    ping_interval_s: float = Field(default=20.0, gt=0)  # our own keep-alive pings
    ping_timeout_s: float = Field(default=20.0, gt=0)
    # REST (klines backfill, markPrices priming)
    rest_timeout_s: float = Field(default=5.0, gt=0)
    backfill_minutes: int = Field(default=2_880, ge=0, le=100_000)  # 0 disables backfill
    backfill_page_minutes: int = Field(default=500, ge=1, le=1_000)
    # periodic work
    status_interval_ms: int = Field(default=1_000, ge=10)
    candle_flush_ms: int = Field(default=1_000, ge=10)
    candle_retention_minutes: int = Field(default=3, ge=1, le=60)
    warn_interval_s: float = Field(default=10.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PollerConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("POLLER_RECONNECT_MAX_S must be >= POLLER_RECONNECT_MIN_S")
        return self
