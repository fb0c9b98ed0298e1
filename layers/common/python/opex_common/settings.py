"""Settings from the environment, validated once at start-up.

One class for every process (API, ws handlers, engine, poller, pusher, history
writer); each reads the fields it needs. A bad value stops the process at start
with a message naming the variable, never at the first request.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .keys import Keys
from .markets import MarketSpec, load_markets


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    environment: Literal["local", "test", "aws"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    # Empty: the local stack starts an embedded nx-27017 server and fills this in.
    mongo_url: str = ""
    mongo_db: str = "opex"
    key_prefix: str = Field(default="opex", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    engine_shards: int = Field(default=1, ge=1, le=64)
    markets_json: str = ""

    # engine
    engine_batch: int = Field(default=1000, ge=1, le=100_000)
    engine_block_ms: int = Field(default=50, ge=1, le=10_000)
    snapshot_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # back the engine's heap with 2 MiB pages so a snapshot fork copies few page table entries
    engine_huge_pages: bool = True
    price_stale_ms: int = Field(default=15_000, ge=100)
    dedup_window_ms: int = Field(default=3_600_000, ge=1000)

    # api
    reply_timeout_s: float = Field(default=3.0, gt=0, le=30)
    jwt_secret: str = ""
    jwt_secret_name: str = ""  # Secrets Manager name (AWS); read via Powertools Parameters
    # AWS: the Lambdas read the Neon connection string from this secret (ECS gets it injected)
    database_url_secret: str = ""
    # where the SPA opens its WebSocket (GET /api/v1/config); the API Gateway wss URL in AWS
    ws_public_url: str = "ws://127.0.0.1:8001"
    jwt_ttl_s: int = Field(default=86_400, ge=60)
    cookie_secure: bool | None = None  # default: Secure everywhere but local/test
    max_body_bytes: int = Field(default=16_384, ge=256)
    signin_rate_per_min: int = Field(default=10, ge=1)
    signup_rate_per_min: int = Field(default=10, ge=1)

    # prices
    price_source: Literal["auto", "backpack", "simulated"] = "auto"
    backpack_ws_url: str = "wss://ws.backpack.exchange"
    backpack_rest_url: str = "https://api.backpack.exchange"
    tick_interval_ms: int = Field(default=100, ge=1)
    simulator_seed: int = 42

    # websocket push
    ws_callback_url: str = "http://127.0.0.1:8001"
    ws_price_rate_per_s: float = Field(default=2.0, gt=0, le=50)
    ws_connection_ttl_s: int = Field(default=7200, ge=60)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: str) -> str:
        if not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must start with redis://, rediss:// or unix://")
        return v

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    @property
    def markets(self) -> dict[str, MarketSpec]:
        return load_markets(self.markets_json or None)

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.environment == "aws"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
