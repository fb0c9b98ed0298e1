"""Market specifications: the per-market constants of trading-rules.md as data."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from .units import PRICE_DECIMALS, QTY_DECIMALS, RATE_SCALE, to_units_exact


@dataclass(frozen=True, slots=True)
class MarketSpec:
    symbol: str  # Backpack's name, e.g. BTC_USDC_PERP
    name: str  # human name, e.g. Bitcoin
    base: str  # BTC
    tick_size: int  # price units (1e-4 USD)
    qty_step: int  # quantity units (1e-8 base)
    min_qty: int  # quantity units
    max_leverage: int = 100
    taker_fee: int = 500  # ppm (5 bps)
    maker_fee: int = 200  # ppm (2 bps)
    funding_interval_ms: int = 3_600_000
    # maintenance rate = 1 / (2 * max_leverage); liquidation fee rate = mmr
    maintenance_rate: int = 0  # ppm; 0 means derive from max_leverage
    liquidation_fee: int = 0  # ppm; 0 means = maintenance_rate

    def __post_init__(self) -> None:
        if self.maintenance_rate == 0:
            object.__setattr__(self, "maintenance_rate", RATE_SCALE // (2 * self.max_leverage))
        if self.liquidation_fee == 0:
            object.__setattr__(self, "liquidation_fee", self.maintenance_rate)
        for field in ("tick_size", "qty_step", "min_qty", "max_leverage"):
            if getattr(self, field) <= 0:
                raise ValueError(f"market {self.symbol}: {field} must be positive")

    def public(self) -> dict[str, object]:
        return asdict(self)


def _spec(symbol: str, name: str, tick: str, step: str) -> MarketSpec:
    base = symbol.split("_", 1)[0]
    tick_units = to_units_exact(tick, PRICE_DECIMALS, "tick size")
    step_units = to_units_exact(step, QTY_DECIMALS, "quantity step")
    return MarketSpec(symbol, name, base, tick_units, step_units, step_units)


# Tick sizes and steps follow Backpack's /api/v1/markets for these perps.
DEFAULT_MARKETS: dict[str, MarketSpec] = {
    m.symbol: m
    for m in (
        _spec("BTC_USDC_PERP", "Bitcoin", "0.1", "0.0001"),
        _spec("ETH_USDC_PERP", "Ethereum", "0.01", "0.001"),
        _spec("SOL_USDC_PERP", "Solana", "0.01", "0.01"),
    )
}


def load_markets(override_json: str | None = None) -> dict[str, MarketSpec]:
    """Default markets, optionally overridden per field by a JSON object
    ``{"BTC_USDC_PERP": {"funding_interval_ms": 60000}, ...}`` (env MARKETS_JSON)."""
    markets = dict(DEFAULT_MARKETS)
    if not override_json:
        return markets
    try:
        data = json.loads(override_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"MARKETS_JSON is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("MARKETS_JSON must be an object keyed by symbol")
    allowed = set(MarketSpec.__dataclass_fields__) - {"symbol", "name", "base"}
    for symbol, fields in data.items():
        if symbol not in markets:
            raise ValueError(f"MARKETS_JSON names an unknown market {symbol!r}")
        if not isinstance(fields, dict) or not set(fields) <= allowed:
            raise ValueError(f"MARKETS_JSON[{symbol}] may only set {sorted(allowed)}")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields.values()):
            raise ValueError(f"MARKETS_JSON[{symbol}] values must be integers")
        base = markets[symbol]
        changes = dict(fields)
        if "max_leverage" in changes and "maintenance_rate" not in changes:
            changes["maintenance_rate"] = 0
            changes.setdefault("liquidation_fee", 0)
        markets[symbol] = replace(base, **changes)
    return markets
