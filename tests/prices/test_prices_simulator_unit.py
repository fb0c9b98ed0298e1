"""The market simulator: repeatable from a seed, sane at every step, realistic in aggregate."""

from __future__ import annotations

import math
import statistics

import pytest

from opex_common.markets import DEFAULT_MARKETS
from opex_common.units import FUNDING_SCALE
from opex_engine.prices.simulator import DEFAULT_PARAMS, SimParams, Simulator

pytestmark = pytest.mark.unit

T0 = 1_767_225_600_000


def run(seed: int, steps: int, step_ms: int = 100, **kw: object) -> list:
    sim = Simulator(DEFAULT_MARKETS, seed, step_ms, **kw)  # type: ignore[arg-type]
    return [sim.step(T0 + i * step_ms) for i in range(steps)]


def test_same_seed_same_path_other_seed_other_path() -> None:
    assert run(7, 500) == run(7, 500)
    assert run(7, 500) != run(8, 500)


def test_every_tick_is_sane() -> None:
    for ticks in run(1, 20_000):
        for t in ticks:
            tick = DEFAULT_MARKETS[t.market].tick_size
            assert 0 < t.bid < t.ask and t.bid % tick == 0 and t.ask % tick == 0
            assert t.mark > 0 and t.index > 0
            assert abs(t.funding_rate) <= 0.001 * FUNDING_SCALE
            assert t.next_funding_ms % 3_600_000 == 0 and t.next_funding_ms > t.ts_ms
            assert abs(t.mark - (t.bid + t.ask) // 2) < t.mark * 0.01  # mark tracks the book


def test_volatility_spread_and_jumps_are_per_market() -> None:
    # no jumps: the realised volatility must match the parameter
    params = {s: SimParams(p.start_price, p.volatility, p.spread_bps, 0.0, 0.0, p.basis_bps)
              for s, p in DEFAULT_PARAMS.items()}
    steps = run(3, 20_000, step_ms=1000, params=params)
    for market, p in DEFAULT_PARAMS.items():
        mids = [next((t.bid + t.ask) / 2 for t in ticks if t.market == market) for ticks in steps]
        rets = [math.log(b / a) for a, b in zip(mids, mids[1:], strict=False)]
        annual = statistics.pstdev(rets) * math.sqrt(365 * 24 * 3600)
        assert annual == pytest.approx(p.volatility, rel=0.12), market
        spreads = [(t.ask - t.bid) / t.bid * 10_000 for ticks in steps for t in ticks if t.market == market]
        assert statistics.mean(spreads) == pytest.approx(p.spread_bps, rel=0.35), market
    # with jumps, they happen about as often as configured
    sim = Simulator(DEFAULT_MARKETS, 5, 1000)
    for i in range(36_000):  # ten simulated hours
        sim.step(T0 + i * 1000)
    expected = sum(p.jumps_per_hour for p in DEFAULT_PARAMS.values()) * 10
    assert expected * 0.6 < sim.jumps < expected * 1.4


def test_funding_follows_the_premium_and_varies() -> None:
    rates = [t.funding_rate for ticks in run(11, 20_000, step_ms=1000) for t in ticks if t.market == "SOL_USDC_PERP"]
    assert len(set(rates)) > 100
    assert min(rates) < 12_500 < max(rates)  # around Backpack's usual baseline
    assert statistics.mean(rates) == pytest.approx(12_500, abs=60_000)


def test_start_prices_and_reanchor() -> None:
    sim = Simulator(DEFAULT_MARKETS, 1, 100, start_prices={"BTC_USDC_PERP": 700_000_000})
    first = {t.market: t for t in sim.step(T0)}
    assert abs(first["BTC_USDC_PERP"].mark - 700_000_000) < 700_000_000 * 0.001
    assert abs(first["ETH_USDC_PERP"].mark - 32_000_000) < 32_000_000 * 0.001  # default start
    sim.reanchor({"ETH_USDC_PERP": 30_000_000, "NOPE": 5})
    again = {t.market: t for t in sim.step(T0 + 100)}
    assert abs(again["ETH_USDC_PERP"].mark - 30_000_000) < 30_000_000 * 0.001
    with pytest.raises(ValueError):
        Simulator(DEFAULT_MARKETS, 1, 0)
