"""A market simulator: realistic-looking perp prices when Backpack is not there.

Model, per market and per step of ``step_ms`` (markets stepped in symbol order,
all randomness from one ``random.Random(seed)``, so a seed and a start price
reproduce a run exactly):

- **mid**: a geometric random walk with the market's annualised volatility,
  ``mid *= 1 + sigma * sqrt(dt) * z``, plus occasional **jumps** (a Poisson
  event with ``jumps_per_hour``, size normal with ``jump_bps``);
- **spread**: a half-spread of ``spread_bps / 2`` of the mid scaled by a random
  factor in [0.5, 1.5); bid rounded down and ask rounded up to the tick size,
  at least one tick apart;
- **mark**: an exponential moving average of the mid over about one second
  (like an exchange's smoothed mark);
- **premium** (mark vs index): a mean-reverting (Ornstein-Uhlenbeck) process
  with a stationary deviation of ``basis_bps``; index = mark / (1 + premium);
- **funding rate** per interval: ``funding_base + premium`` clamped to
  ``±max_funding``; ``next_funding_ms`` is the next multiple of the market's
  funding interval.

Prices are integers (1e-4 USD) at every step; floats only carry the random
factors of the model, and each step's result is rounded back to an integer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from opex_common.markets import MarketSpec
from opex_common.units import FUNDING_SCALE, price_from_text

_MS_PER_YEAR = 365 * 24 * 3600 * 1000
_PREMIUM_HALF_LIFE_MS = 10 * 60 * 1000  # premium reverts over ~10 minutes
_MARK_SMOOTHING_MS = 1000


@dataclass(frozen=True, slots=True)
class SimParams:
    start_price: str  # decimal text, USD
    volatility: float  # annualised, e.g. 0.55 = 55 %
    spread_bps: float  # typical full spread
    jumps_per_hour: float
    jump_bps: float  # standard deviation of a jump
    basis_bps: float  # standard deviation of the mark/index premium
    funding_base: float = 0.0000125  # per interval, Backpack's usual baseline
    max_funding: float = 0.001  # clamp per interval


DEFAULT_PARAMS: dict[str, SimParams] = {
    "BTC_USDC_PERP": SimParams("65000", 0.55, 1.0, 4.0, 25.0, 0.5),
    "ETH_USDC_PERP": SimParams("3200", 0.70, 1.5, 4.0, 35.0, 0.7),
    "SOL_USDC_PERP": SimParams("150", 0.90, 2.0, 6.0, 50.0, 1.0),
}
FALLBACK_PARAMS = SimParams("100", 0.80, 2.0, 5.0, 40.0, 1.0)


@dataclass(frozen=True, slots=True)
class SimTick:
    market: str
    bid: int
    ask: int
    mark: int
    index: int
    funding_rate: int  # 1e-9
    next_funding_ms: int
    ts_ms: int


class _Walk:
    __slots__ = ("mark", "mid", "premium", "spec", "params")

    def __init__(self, spec: MarketSpec, params: SimParams, start: int) -> None:
        self.spec = spec
        self.params = params
        self.mid = start
        self.mark = start
        self.premium = 0.0


class Simulator:
    def __init__(
        self,
        markets: Mapping[str, MarketSpec],
        seed: int,
        step_ms: int,
        params: Mapping[str, SimParams] | None = None,
        start_prices: Mapping[str, int] | None = None,
    ) -> None:
        if step_ms <= 0:
            raise ValueError("step_ms must be positive")
        self.seed = seed
        self.step_ms = step_ms
        self.rng = random.Random(seed)
        self.steps = 0
        self.jumps = 0
        table = dict(DEFAULT_PARAMS)
        table.update(params or {})
        self._walks: dict[str, _Walk] = {}
        for symbol in sorted(markets):
            spec = markets[symbol]
            p = table.get(symbol, FALLBACK_PARAMS)
            start = (start_prices or {}).get(symbol) or price_from_text(p.start_price, "start price")
            self._walks[symbol] = _Walk(spec, p, self._floor_price(spec, start))
        dt_years = step_ms / _MS_PER_YEAR
        self._sqrt_dt = math.sqrt(dt_years)
        self._mark_alpha = 1.0 - math.exp(-step_ms / _MARK_SMOOTHING_MS)
        self._premium_theta = 1.0 - math.exp(-math.log(2) * step_ms / _PREMIUM_HALF_LIFE_MS)

    @staticmethod
    def _floor_price(spec: MarketSpec, price: int) -> int:
        return max(price, 10 * spec.tick_size)

    def prices(self) -> dict[str, int]:
        """Current mid of every market."""
        return {s: w.mid for s, w in self._walks.items()}

    def reanchor(self, prices: Mapping[str, int]) -> None:
        """Continue from given prices (e.g. Backpack's last) instead of our own."""
        for symbol, price in prices.items():
            walk = self._walks.get(symbol)
            if walk is not None and price > 0:
                walk.mid = walk.mark = self._floor_price(walk.spec, price)
                walk.premium = 0.0

    def step(self, now_ms: int) -> list[SimTick]:
        rng = self.rng
        self.steps += 1
        out: list[SimTick] = []
        for symbol, w in self._walks.items():
            p = w.params
            spec = w.spec
            tick = spec.tick_size
            ret = p.volatility * self._sqrt_dt * rng.gauss(0.0, 1.0)
            if rng.random() < p.jumps_per_hour * self.step_ms / 3_600_000:
                ret += rng.gauss(0.0, p.jump_bps / 10_000)
                self.jumps += 1
            ret = max(ret, -0.5)  # a step never more than halves the price
            w.mid = self._floor_price(spec, round(w.mid * (1.0 + ret)))
            half = round(w.mid * p.spread_bps / 20_000 * (0.5 + rng.random()))
            bid = (w.mid - half) // tick * tick
            ask = -(-(w.mid + half) // tick) * tick
            if ask <= bid:
                ask = bid + tick
            bid = max(bid, tick)
            w.mark = max(1, round(w.mark + (w.mid - w.mark) * self._mark_alpha))
            # OU premium: stationary std = basis_bps
            theta = self._premium_theta
            sd = p.basis_bps / 10_000 * math.sqrt(1.0 - (1.0 - theta) ** 2)
            w.premium = w.premium * (1.0 - theta) + sd * rng.gauss(0.0, 1.0)
            index = max(1, round(w.mark / (1.0 + w.premium)))
            funding = min(max(p.funding_base + w.premium, -p.max_funding), p.max_funding)
            interval = spec.funding_interval_ms
            out.append(SimTick(
                market=symbol,
                bid=bid,
                ask=ask,
                mark=w.mark,
                index=index,
                funding_rate=round(funding * FUNDING_SCALE),
                next_funding_ms=(now_ms // interval + 1) * interval,
                ts_ms=now_ms,
            ))
        return out
