"""opex_common.views: read models -> API shapes (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opex_common import margin
from opex_common.markets import DEFAULT_MARKETS
from opex_common.units import QTY_SCALE
from opex_common.views import (
    account_health,
    funding_rate_text,
    margin_by_asset,
    market_view,
    ppm_to_bps,
    qty_number,
)

pytestmark = pytest.mark.unit

BTC, ETH = "BTC_USDC_PERP", "ETH_USDC_PERP"


@given(st.integers(min_value=1, max_value=10**15))  # the engine's MAX_QTY
def test_quantities_leave_as_their_exact_decimal(qty: int) -> None:
    out = qty_number(qty)
    assert Decimal(repr(out)) == Decimal(qty) / QTY_SCALE


def test_small_formatters() -> None:
    assert funding_rate_text(12_500) == "0.0000125" and funding_rate_text(-1) == "-0.000000001"
    assert funding_rate_text(0) == "0" and funding_rate_text(None) is None
    assert ppm_to_bps(500) == 5 and ppm_to_bps(250) == 2.5
    spec = DEFAULT_MARKETS[BTC]
    view = market_view(spec, None, 10_000, 15_000)
    assert view["stale"] is True and view["bid"] is None and view["tick_size"] == 1000 and view["qty_step"] == 0.0001
    fresh = market_view(spec, {"bid": 1, "ask": 2, "mark": 1, "index": 1, "ts": 9_000, "funding_rate": 5}, 10_000,
                        15_000)
    assert fresh["stale"] is False and fresh["funding_rate"] == "0.000000005"


def _trade(tid: str, market: str, side: int, qty: int, entry: int, lev: int, mode: str) -> dict[str, object]:
    im = margin.initial_margin(qty, entry, lev)
    return {"id": tid, "market": market, "side": side, "qty": qty, "entry": entry, "leverage": lev, "margin": im,
            "margin_mode": mode, "fees": 0, "funding": 0, "take_profit": None, "stop_loss": None, "opened_ms": 1}


def test_account_health_and_cross_liquidation_price() -> None:
    long_btc = _trade("a", BTC, 1, 5_000_000, 970_000_000, 50, "cross")  # 0.05 BTC at $97,000, 50x
    short_eth = _trade("b", ETH, -1, 100_000_000, 35_000_000, 20, "isolated")
    account = {"user_id": "u", "balance": 1_000_000, "trades": [long_btc, short_eth], "orders": []}
    prices = {BTC: {"mark": 960_000_000}, ETH: {"mark": 35_500_000}}
    h = account_health(account, prices, DEFAULT_MARKETS)
    a, b = h["trades"]
    mmr = DEFAULT_MARKETS[BTC].maintenance_rate
    u = margin.pnl(1, 5_000_000, 970_000_000, 960_000_000)
    assert a["unrealized_pnl"] == u and a["mark"] == 960_000_000
    assert h["margin_used"] == long_btc["margin"] + short_eth["margin"]
    assert h["available"] == max(0, 1_000_000 + min(0, u))
    assert b["liquidation_price"] == margin.isolated_trigger_price(-1, 100_000_000, 35_000_000,
                                                                   short_eth["margin"], mmr)
    # the cross liquidation price is where cross equity meets maintenance
    liq = a["liquidation_price"]
    assert liq is not None and liq < 960_000_000

    def healthy(mark: int) -> bool:
        eq = 1_000_000 + long_btc["margin"] + margin.pnl(1, 5_000_000, 970_000_000, mark)
        return eq > margin.maintenance(5_000_000, mark, mmr)

    # the textbook price; the integer terms (uPnL floors in steps of 1e8/q
    # price units, MM ceils) move the exact flip by at most a few such steps
    step = 100_000_000 // 5_000_000
    assert not healthy(liq) and not healthy(liq - step) and healthy(liq + 3 * step)
    assert h["margin_ratio_bps"] > 0 and margin_by_asset(account, DEFAULT_MARKETS)[ETH]["balance"] == \
        -short_eth["margin"]


def test_a_trade_without_a_price_counts_at_its_margin() -> None:
    t = _trade("a", BTC, 1, 1_000_000, 970_000_000, 10, "cross")
    h = account_health({"balance": 10, "trades": [t]}, {}, DEFAULT_MARKETS)
    assert h["equity"] == 10 + t["margin"] and h["trades"][0]["mark"] is None
    assert h["trades"][0]["liquidation_price"] is None and h["margin_ratio_bps"] == 0
