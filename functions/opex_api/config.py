"""The API's settings: the shared ``Settings`` plus the few fields only the API reads.

Validated once when the app is created (a bad value stops start-up with a
message naming the variable, never the first request).
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field

from opex_common.markets import MarketSpec
from opex_common.settings import Settings


class ApiSettings(Settings):
    # Where the SPA opens its WebSocket (GET /api/v1/config).
    ws_public_url: str = Field(default="ws://127.0.0.1:8001", pattern=r"^wss?://\S+$")
    # Postgres pool: Lambda serves one request at a time, uvicorn many.
    db_pool_max: int = Field(default=8, ge=1, le=100)
    db_timeout_s: float = Field(default=3.0, gt=0, le=30)
    # Redis calls other than the engine's BLPOP give up after this long.
    redis_timeout_s: float = Field(default=2.0, gt=0, le=30)
    ws_ticket_ttl_s: int = Field(default=30, ge=5, le=300)
    closed_trades_default_limit: int = Field(default=200, ge=1, le=1000)
    # Locally, the built SPA to serve at / (empty: API only; in AWS the SPA is on S3 + CloudFront)
    frontend_dist: str = ""

    # parsed once (the base class re-parses MARKETS_JSON on every access)
    @cached_property
    def market_specs(self) -> dict[str, MarketSpec]:
        return self.markets


def api_settings(settings: Settings | None = None) -> ApiSettings:
    """The API's settings: from the environment, or extending ``settings``."""
    if settings is None:
        return ApiSettings()
    if isinstance(settings, ApiSettings):
        return settings
    return ApiSettings(**settings.model_dump())
