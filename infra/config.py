"""Deployment settings read from CDK context (cdk.json, or ``-c key=value``).

Every knob lives under the ``opex:`` prefix. Values given on the command line
arrive as strings, so each one is parsed and checked here, and a bad value
stops ``cdk synth`` with a message naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from constructs import Construct

ROOT = Path(__file__).resolve().parent.parent

ARCHITECTURES = ("arm64", "x86_64")


class ConfigError(ValueError):
    pass


def _get(scope: Construct, key: str, default: object) -> object:
    value = scope.node.try_get_context(f"opex:{key}")
    return default if value is None else value


def _int(scope: Construct, key: str, default: int, lo: int, hi: int) -> int:
    raw = _get(scope, key, default)
    try:
        value = int(str(raw).strip())
    except ValueError as exc:
        raise ConfigError(f"context opex:{key}={raw!r} is not an integer") from exc
    if not lo <= value <= hi:
        raise ConfigError(f"context opex:{key}={value} must be between {lo} and {hi}")
    return value


def _bool(scope: Construct, key: str, default: bool) -> bool:
    raw = _get(scope, key, default)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"context opex:{key}={raw!r} is not a boolean")


def _str(scope: Construct, key: str, default: str, pattern: str | None = None) -> str:
    value = str(_get(scope, key, default)).strip()
    if pattern is not None and not re.fullmatch(pattern, value):
        raise ConfigError(f"context opex:{key}={value!r} does not match {pattern}")
    return value


@dataclass(frozen=True)
class OpexConfig:
    # naming: stack ids, secret names and log groups start with this
    name: str = "opex"
    # Redis key prefix shared by every process (Settings.key_prefix)
    key_prefix: str = "opex"
    engine_shards: int = 1
    # one CPU architecture for the Lambda layer's wheels, the Lambdas and Fargate
    architecture: str = "arm64"
    # False: synthesize the layer from its source folder without installing the
    # third-party wheels (fast, offline; for tests and template review, not for deploy)
    bundle: bool = True
    max_azs: int = 2
    nat_gateways: int = 1
    redis_node_type: str = "cache.t4g.small"
    redis_replicas: int = 1
    redis_port: int = 6390
    engine_cpu: int = 1024
    engine_memory_mib: int = 2048
    workers_cpu: int = 512
    workers_memory_mib: int = 1024
    api_memory_mib: int = 1024
    ws_memory_mib: int = 512
    # 0 = no reserved concurrency (share the account pool)
    api_reserved_concurrency: int = 0
    log_retention_days: int = 30
    price_source: str = "auto"
    spa_dir: Path = field(default_factory=lambda: ROOT / "frontend" / "dist")
    domain_name: str = ""
    certificate_arn: str = ""
    alarm_email: str = ""
    engine_lag_alarm_ms: int = 2000
    # cost levers (docs/deployment.md): snapshot upload volume and WebSocket message count
    snapshot_interval_s: int = 5
    ws_price_rate_per_s: int = 2
    http_rate_limit: int = 500
    http_burst_limit: int = 1000

    @property
    def repo_root(self) -> Path:
        return ROOT

    @property
    def secret_prefix(self) -> str:
        return f"{self.name}/"

    @classmethod
    def from_context(cls, scope: Construct) -> OpexConfig:
        spa = Path(_str(scope, "spa_dir", "frontend/dist"))
        if not spa.is_absolute():
            spa = ROOT / spa
        cfg = cls(
            name=_str(scope, "name", "opex", r"[a-z][a-z0-9-]{1,20}"),
            key_prefix=_str(scope, "key_prefix", "opex", r"[A-Za-z0-9_.\-]{1,64}"),
            engine_shards=_int(scope, "engine_shards", 1, 1, 64),
            architecture=_str(scope, "architecture", "arm64", "|".join(ARCHITECTURES)),
            bundle=_bool(scope, "bundle", True),
            max_azs=_int(scope, "max_azs", 2, 2, 3),
            nat_gateways=_int(scope, "nat_gateways", 1, 1, 3),
            redis_node_type=_str(scope, "redis_node_type", "cache.t4g.small", r"cache\.[a-z0-9]+\.[a-z0-9]+"),
            redis_replicas=_int(scope, "redis_replicas", 1, 0, 5),
            redis_port=_int(scope, "redis_port", 6390, 1024, 65535),
            engine_cpu=_int(scope, "engine_cpu", 1024, 256, 16384),
            engine_memory_mib=_int(scope, "engine_memory_mib", 2048, 512, 122880),
            workers_cpu=_int(scope, "workers_cpu", 512, 256, 16384),
            workers_memory_mib=_int(scope, "workers_memory_mib", 1024, 512, 122880),
            api_memory_mib=_int(scope, "api_memory_mib", 1024, 128, 10240),
            ws_memory_mib=_int(scope, "ws_memory_mib", 512, 128, 10240),
            api_reserved_concurrency=_int(scope, "api_reserved_concurrency", 0, 0, 10000),
            log_retention_days=_int(scope, "log_retention_days", 30, 1, 3653),
            price_source=_str(scope, "price_source", "auto", "auto|backpack|simulated"),
            spa_dir=spa,
            domain_name=_str(scope, "domain_name", "", r"|[a-z0-9.-]+\.[a-z]{2,}"),
            certificate_arn=_str(scope, "certificate_arn", "", r"|arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate/[0-9a-f-]+"),
            alarm_email=_str(scope, "alarm_email", "", r"|[^@\s]+@[^@\s]+\.[^@\s]+"),
            engine_lag_alarm_ms=_int(scope, "engine_lag_alarm_ms", 2000, 100, 600_000),
            snapshot_interval_s=_int(scope, "snapshot_interval_s", 5, 1, 3600),
            ws_price_rate_per_s=_int(scope, "ws_price_rate_per_s", 2, 1, 50),
            http_rate_limit=_int(scope, "http_rate_limit", 500, 1, 100_000),
            http_burst_limit=_int(scope, "http_burst_limit", 1000, 1, 100_000),
        )
        if bool(cfg.domain_name) != bool(cfg.certificate_arn):
            raise ConfigError("context opex:domain_name and opex:certificate_arn go together")
        if cfg.nat_gateways > cfg.max_azs:
            raise ConfigError("context opex:nat_gateways cannot exceed opex:max_azs")
        return cfg
