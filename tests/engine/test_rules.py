"""Every rule of trading-rules.md, checked with hand-worked integers.

Units: money and prices in 1e-4 USD ($1 = 10_000), qty in 1e-8 base units
(1 BTC = 100_000_000), rates in ppm. Default markets: taker fee 500 ppm (5 bps),
mmr = 1 / (2 x 100) = 5000 ppm, liquidation fee = mmr, starting balance $5,000.
Each expected number is worked out in the comment above it from the formula;
none is taken from the engine or from margin.py.

    notional(q, P)  = q * P / 1e8                     (money units)
    IM              = ceil(q * P / (1e8 * L))
    fee             = ceil(q * P * rate / 1e14)
    pnl / u         = floor(s * q * (P - E) / 1e8)
    MM              = ceil(q * M * 5000 / 1e14)
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from opex_common import messages as m
from opex_common.margin import cross_liquidation_price, isolated_liquidation_price
from tests.engine.kit import BTC, ETH, SOL, Kit, markets_with

pytestmark = pytest.mark.unit

START = 50_000_000  # $5,000.0000
BTC_50K = 500_000_000  # $50,000.0000
ETH_3K = 30_000_000  # $3,000.0000
Q01 = 10_000_000  # 0.1 BTC
ONE = 100_000_000  # 1 ETH / 1 SOL


def kit_with(*ticks: tuple[str, int], users: tuple[str, ...] = ("u1",), **kw: Any) -> Kit:
    """An engine with zero-spread prices (bid = ask = mark) and accounts."""
    k = Kit(**kw)
    for market, price in ticks:
        k.tick(market, price)
    for uid in users:
        k.account(uid)
    return k


def assert_sound(k: Kit) -> None:
    assert k.invariants() == []


# ============================================================== market open
@pytest.mark.unit
def test_open_long_fills_at_ask_locks_im_and_pays_taker_fee() -> None:
    k = Kit()
    k.tick(BTC, 500_000_000, 500_100_000, 500_050_000)  # bid 50,000 / ask 50,010
    k.account("u1")
    rep = k.open("u1", BTC, "long", 1_000_000, 10)  # 0.01 BTC, 10x
    assert rep["ok"] and rep["message"] == "Order placed"
    t = rep["data"]["trade"]
    # fill at the ask: 50,010.0000
    assert t["entry"] == 500_100_000
    # notional 0.01 x 50,010 = $500.10 = 5_001_000; IM = 5_001_000 / 10 = 500_100
    assert t["margin"] == 500_100
    # fee = 5_001_000 x 500 / 1e6 = 2_500.5 -> rounds up (the trader pays) -> 2_501
    assert rep["data"]["fee"] == 2_501 == t["fees"]
    # balance = 50_000_000 - 500_100 - 2_501
    assert k.balance() == 49_497_399
    ledger = [(e["kind"], e["amount"]) for e in k.of_type(m.EV_LEDGER)]
    assert ledger == [("margin_lock", -500_100), ("fee", -2_501)]
    assert k.state.house_net_payout == -2_501
    assert_sound(k)


@pytest.mark.unit
def test_open_short_fills_at_bid() -> None:
    k = Kit()
    k.tick(BTC, 500_000_000, 500_100_000)
    k.account("u1")
    t = k.open_ok("u1", BTC, "short", 1_000_000, 10)
    # fill at the bid 50,000; notional 0.01 x 50,000 = $500 = 5_000_000
    assert (t.entry, t.side) == (500_000_000, -1)
    # IM = 5_000_000 / 10 = 500_000; fee = 5_000_000 x 0.0005 = 2_500 exactly
    assert (t.margin, t.fees) == (500_000, 2_500)
    assert k.balance() == 50_000_000 - 500_000 - 2_500
    assert_sound(k)


@pytest.mark.unit
@pytest.mark.parametrize(("seen", "slippage", "ok"), [
    # long fills at the ask 500_100_000. Passes when |fill - seen| x 1e4 <= slip x seen.
    (500_000_000, 2, True),   # |diff| 100_000 x 1e4 = 1e9 == 2 x 5e8: exactly 2 bps passes
    (499_999_999, 2, False),  # 100_001 x 1e4 = 1_000_010_000 > 999_999_998
    (500_000_000, 1, False),  # 1e9 > 5e8
    (500_100_000, 0, True),   # no move, zero slippage
])
def test_market_open_slippage_boundary_long(seen: int, slippage: int, ok: bool) -> None:
    k = Kit()
    k.tick(BTC, 500_000_000, 500_100_000)
    k.account("u1")
    before = k.core_bytes()
    rep = k.open("u1", BTC, "long", 1_000_000, 10, price=seen, slippage_bps=slippage)
    assert rep["ok"] is ok, rep
    if not ok:
        assert (rep["code"], rep["status"]) == (m.REJECTED, 409)
        assert "slippage" in rep["message"] and "500100000" in rep["message"]
        assert k.core_bytes() == before


@pytest.mark.unit
@pytest.mark.parametrize(("seen", "ok"), [
    # short fills at the bid 499_900_000; 2 bps of 500_000_000 is exactly 100_000
    (500_000_000, True),   # 100_000 x 1e4 = 1e9 <= 2 x 5e8
    (500_000_001, False),  # 100_001 x 1e4 = 1_000_010_000 > 1_000_000_002
])
def test_market_open_slippage_boundary_short(seen: int, ok: bool) -> None:
    k = Kit()
    k.tick(BTC, 499_900_000, 500_100_000)
    k.account("u1")
    rep = k.open("u1", BTC, "short", 1_000_000, 10, price=seen, slippage_bps=2)
    assert rep["ok"] is ok, rep


# ============================================================== close
@pytest.mark.unit
def test_close_long_at_bid_books_pnl_and_fee() -> None:
    k = Kit()
    k.tick(BTC, 500_000_000, 500_100_000)
    k.account("u1")
    t = k.open_ok("u1", BTC, "long", 1_000_000, 10)  # entry 50,010, IM 500_100, fee 2_501
    assert k.balance() == 49_497_399
    k.tick(BTC, 510_000_000, 510_100_000)  # bid 51,000 / ask 51,010
    rep = k.close("u1", t.id)
    assert rep["ok"] and rep["message"] == "Trade closed"
    d = rep["data"]
    # close a long at the bid 51,000: r = 0.01 x (51,000 - 50,010) = $9.90 = 99_000
    assert (d["close_price"], d["pnl"]) == (510_000_000, 99_000)
    # fee = 0.01 x 51,000 x 0.0005 = $0.255 = 2_550
    assert d["fee"] == 2_550
    # balance += IM + r - fee = 500_100 + 99_000 - 2_550 = 596_550
    assert k.balance() == 49_497_399 + 596_550 == 50_093_949
    assert k.acct().realized_pnl == 99_000 and k.acct().fees_paid == 2_501 + 2_550
    assert k.acct().trades == {}
    assert_sound(k)


@pytest.mark.unit
def test_close_short_at_ask_rounds_against_the_trader() -> None:
    k = kit_with((ETH, ETH_3K))
    t = k.open_ok("u1", ETH, "short", 100_000, 5)  # 0.001 ETH at 3,000, 5x
    # notional 0.001 x 3,000 = $3 = 30_000; IM 30_000 / 5 = 6_000; fee 30_000 x 0.0005 = 15
    assert (t.margin, t.fees) == (6_000, 15)
    assert k.balance() == START - 6_015
    k.tick(ETH, 30_000_000, 30_000_500)  # ask 3,000.05
    d = k.close("u1", t.id)["data"]
    # close a short at the ask: r = -1 x 100_000 x 500 / 1e8 = -0.5 -> floor -> -1
    assert (d["close_price"], d["pnl"]) == (30_000_500, -1)
    # fee = 100_000 x 30_000_500 x 500 / 1e14 = 15.00025 -> ceil -> 16
    assert d["fee"] == 16
    # balance = 49_993_985 + 6_000 - 1 - 16
    assert k.balance() == 49_999_968
    assert_sound(k)


@pytest.mark.unit
def test_close_by_id_answers() -> None:
    k = kit_with((BTC, BTC_50K), users=("u1", "u2"))
    mine = k.open_ok("u1", BTC, "long", Q01, 10)
    theirs = k.open_ok("u2", BTC, "long", Q01, 10)
    assert k.close("u1", mine.id)["message"] == "Trade closed"
    balance = k.balance("u1")
    again = k.close("u1", mine.id)
    assert (again["ok"], again["code"], again["message"]) == (True, m.OK, "Trade already closed")
    assert k.balance("u1") == balance and k.events == []
    unknown = k.close("u1", "00000000-0000-4000-8000-000000000000")
    assert (unknown["code"], unknown["status"], unknown["message"]) == (m.NOT_FOUND, 404, "trade not found")
    other = k.close("u1", theirs.id)  # exists, but belongs to u2: not revealed
    assert (other["code"], other["message"]) == (m.NOT_FOUND, "trade not found")
    assert k.is_open("u2", theirs.id)
    k.close("u2", theirs.id)
    assert k.close("u1", theirs.id)["code"] == m.NOT_FOUND  # u2's closed trade: still not u1's
    assert_sound(k)


@pytest.mark.unit
def test_partial_close_releases_im_pro_rata() -> None:
    k = kit_with((ETH, ETH_3K))
    t = k.open_ok("u1", ETH, "long", 300_000, 11)  # 0.003 ETH at 3,000, 11x
    # notional 0.003 x 3,000 = $9 = 90_000; IM = ceil(90_000 / 11) = ceil(8_181.8) = 8_182
    # fee = 90_000 x 0.0005 = 45
    assert (t.margin, t.fees) == (8_182, 45)
    assert k.balance() == START - 8_227 == 49_991_773
    k.tick(ETH, 30_100_000)  # 3,010
    rep = k.close("u1", t.id, qty=100_000)  # a third of it
    assert rep["ok"] and rep["message"] == "Trade partially closed"
    d = rep["data"]
    # released IM = floor(8_182 x 1/3) = floor(2_727.3) = 2_727; left 8_182 - 2_727 = 5_455
    # r = 100_000 x (30_100_000 - 30_000_000) / 1e8 = 100
    # fee = 100_000 x 30_100_000 x 500 / 1e14 = 15.05 -> 16
    assert (d["closed_qty"], d["remaining_qty"], d["pnl"], d["fee"]) == (100_000, 200_000, 100, 16)
    assert (t.qty, t.margin) == (200_000, 5_455)
    # balance += 2_727 + 100 - 16
    assert k.balance() == 49_994_584
    d = k.close("u1", t.id)["data"]  # the rest
    # IM 5_455; r = 200_000 x 100_000 / 1e8 = 200; fee = 30.1 -> 31
    assert (d["pnl"], d["fee"], d["remaining_qty"]) == (200, 31, 0)
    assert k.balance() == 49_994_584 + 5_455 + 200 - 31 == 50_000_208  # 5,000 - fees 92 + pnl 300
    assert_sound(k)


@pytest.mark.unit
@pytest.mark.parametrize(("qty", "words"), [
    (150_000, "multiple of 100000"),      # ETH step 0.001 = 100_000
    (400_000, "larger than the trade's"),  # the trade has 300_000
    (0, "qty must be an integer"),
    (-100_000, "qty must be an integer"),
    (True, "qty must be an integer"),
])
def test_partial_close_bad_qty(qty: object, words: str) -> None:
    k = kit_with((ETH, ETH_3K))
    t = k.open_ok("u1", ETH, "long", 300_000, 11)
    before = k.core_bytes()
    rep = k.close("u1", t.id, qty=qty)  # type: ignore[arg-type]
    assert rep["code"] == m.INVALID and words in rep["message"], rep
    assert k.core_bytes() == before


# ============================================================== cross liquidation
def _two_market_cross(eth_mark: int, **kw: Any) -> tuple[Kit, str, str]:
    """$1,000 account: ETH long 1 @ 3,000 x100 then BTC long 0.1 @ 50,000 x10, both cross.

    ETH: notional $3,000: IM 300_000, fee 15_000. BTC: notional $5,000: IM 5_000_000,
    fee 25_000. Balance 10_000_000 - 315_000 - 5_025_000 = 4_660_000.
    """
    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K), starting_balance=10_000_000, **kw)
    eth = k.open_ok("u1", ETH, "long", ONE, 100).id
    btc = k.open_ok("u1", BTC, "long", Q01, 10).id
    assert k.balance() == 4_660_000
    k.tick(ETH, eth_mark)
    assert k.closes() == [] and len(k.acct().trades) == 2
    return k, eth, btc


@pytest.mark.unit
def test_cross_liquidation_closes_largest_loss_first_and_stops_when_healthy() -> None:
    # ETH 2,985: u_eth = -$15 = -150_000; MM_eth = 2,985 x 0.005 = $14.925 = 149_250
    k, eth, btc = _two_market_cross(29_850_000)
    # BTC 40,500: u_btc = 0.1 x -9,500 = -9_500_000; MM_btc = 0.1 x 40,500 x 0.005 = 202_500
    # Eq = 4_660_000 + (5_000_000 - 9_500_000) + (300_000 - 150_000) = 310_000
    # Sum MM = 351_750 >= Eq -> liquidate, the BTC trade first (loss 9_500_000 > 150_000)
    k.tick(BTC, 405_000_000)
    closes = k.closes()
    assert [c["trade"]["id"] for c in closes] == [btc]
    c = closes[0]
    assert (c["reason"], c["liquidated"], c["close_price"], c["pnl"]) == ("liquidation", True, 405_000_000,
                                                                          -9_500_000)
    # left after the close: 4_660_000 + 5_000_000 - 9_500_000 = 160_000; fee 202_500 capped at 160_000
    assert c["fee"] == 160_000
    assert k.balance() == 0 and k.state.insurance == 160_000
    # now Eq = 0 + 300_000 - 150_000 = 150_000 > MM 149_250: healthy, the ETH trade stays
    assert list(k.acct().trades) == [eth]
    assert_sound(k)


@pytest.mark.unit
def test_cross_liquidation_with_smaller_fee_rate_stops_when_healthy() -> None:
    # same account, markets whose liquidation fee is 0.1% (a per-market setting)
    mk = markets_with(BTC_USDC_PERP={"liquidation_fee": 1_000}, ETH_USDC_PERP={"liquidation_fee": 1_000})
    k, eth, btc = _two_market_cross(29_850_000, markets=mk)
    k.tick(BTC, 405_000_000)
    # fee = 0.1 x 40,500 x 0.001 = $4.05 = 40_500, not capped (160_000 left)
    assert [(c["trade"]["id"], c["fee"]) for c in k.closes()] == [(btc, 40_500)]
    assert k.balance() == 160_000 - 40_500 == 119_500 and k.state.insurance == 40_500
    # Eq = 119_500 + 150_000 = 269_500 > 149_250
    assert list(k.acct().trades) == [eth]
    assert_sound(k)


@pytest.mark.unit
def test_cross_liquidation_continues_while_unhealthy() -> None:
    # ETH 2,970: u_eth = -300_000 = -IM_eth; MM_eth = 2,970 x 0.005 = 148_500
    k, eth, btc = _two_market_cross(29_700_000)
    # BTC 40,500: Eq = 4_660_000 - 4_500_000 + 0 = 160_000 <= MM 202_500 + 148_500
    k.tick(BTC, 405_000_000)
    closes = k.closes()
    # BTC first (loss 9.5M): 160_000 left, all of it the (capped) fee -> balance 0
    # then Eq = 0 + 300_000 - 300_000 = 0 <= 148_500: ETH at its mark, nothing left for a fee
    assert [(c["trade"]["id"], c["close_price"], c["pnl"], c["fee"]) for c in closes] == [
        (btc, 405_000_000, -9_500_000, 160_000), (eth, 29_700_000, -300_000, 0)]
    assert k.acct().trades == {} and k.balance() == 0 and k.state.insurance == 160_000
    assert_sound(k)


@pytest.mark.unit
def test_cross_liquidation_price_single_trade() -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "long", Q01, 10)  # IM 5_000_000, fee 25_000 -> balance 44_975_000
    # W = 44_975_000 + 5_000_000 = 49_975_000 ($4,997.50)
    # M = (W + 0 - 0 - q E) / (q (mmr - 1)): 4_997.5 - 5_000 = -0.0995 M... in dollars
    #   M = 2.5 / 0.0995 = $25.1256.. -> 251_256 (floor: a long is liquidated at or below it)
    assert cross_liquidation_price(1, Q01, BTC_50K, 5_000, 49_975_000, 0, 0) == 251_256
    # engine, with rounded u (floor) and MM (ceil):
    # M = 251_270: u = floor((251_270 - 5e8) / 10) = -49_974_873 -> Eq 127; MM = ceil(125.635) = 126
    k.tick(BTC, 251_270)
    assert k.is_open("u1", t.id)
    # M = 251_269: u = floor(-49_974_873.1) = -49_974_874 -> Eq 126 <= MM ceil(125.6345) = 126
    k.tick(BTC, 251_269)
    (c,) = k.closes()
    assert (c["reason"], c["pnl"]) == ("liquidation", -49_974_874)
    # left 126, fee ceil(125.6345) = 126 -> all to the fund, balance 0
    assert (c["fee"], k.balance(), k.state.insurance) == (126, 0, 126)
    assert 0 < 251_269 - 251_256 < 1_000  # within a BTC tick of the formula
    assert_sound(k)


@pytest.mark.unit
def test_cross_liquidation_price_with_another_trade_held_fixed() -> None:
    k, eth, btc = _two_market_cross(29_850_000)  # ETH u -150_000, MM 149_250 (see above)
    # W = 4_660_000 + 5_000_000 + 300_000 = 9_960_000; W + U_o - MM_o = 9_660_750
    # M = (9_660_750 x 1e8 - 1e7 x 5e8) / (1e7 x (0.005 - 1)) = 4.033925e15 / 9.95e6 = 405_419_597.99
    #   -> 405_419_597 (a long: at or below it)
    assert cross_liquidation_price(1, Q01, BTC_50K, 5_000, 9_960_000, -150_000, 149_250) == 405_419_597
    # one BTC tick above: u = floor(-9_457_940.3) = -9_457_941 -> Eq 9_810_000 - 9_457_941 = 352_059
    #   MM = 149_250 + ceil(405_420_597 / 2000 = 202_710.3) = 351_961 < Eq: healthy
    k.tick(BTC, 405_420_597)
    assert k.closes() == []
    # at it: u = floor(-9_458_040.3) = -9_458_041 -> Eq 351_959 <= 149_250 + ceil(202_709.8) = 351_960
    k.tick(BTC, 405_419_597)
    assert [c["trade"]["id"] for c in k.closes()] == [btc]
    assert_sound(k)


# ============================================================== isolated liquidation
@pytest.mark.unit
@pytest.mark.parametrize(("mark", "liquidated"), [
    # long 0.1 BTC at 50,000, 10x, IM 5_000_000: u = floor((M - 5e8) / 10), MM = ceil(M / 2000)
    (452_261_320, False),  # u = -4_773_868 -> IM + u = 226_132 > MM ceil(226_130.66) = 226_131
    (452_261_319, True),   # u = floor(-4_773_868.1) = -4_773_869 -> 226_131 <= 226_131
    (452_262_000, False),  # one BTC tick (0.1 = 1_000 units) above the liquidation price
    (452_261_000, True),   # the tick at/below it
    (400_000_000, True),
])
def test_isolated_long_liquidates_at_its_price(mark: int, liquidated: bool) -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    # textbook E (1 - 1/L) / (1 - mmr) = 5e8 x 0.9 / 0.995 = 452_261_306.5 -> 452_261_306
    assert isolated_liquidation_price(1, BTC_50K, 10, 5_000) == 452_261_306
    # bid/ask far from the mark: only the mark decides
    k.tick(BTC, mark - 5_000_000 if not liquidated else mark + 1_000_000,
           mark + 5_000_000 if not liquidated else mark + 2_000_000, mark)
    assert k.is_open("u1", t.id) is not liquidated
    assert_sound(k)


@pytest.mark.unit
def test_isolated_liquidation_settles_at_the_mark() -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    assert k.balance() == 44_975_000
    k.tick(BTC, 452_261_319)
    (c,) = k.closes()
    assert (c["trade"]["id"], c["close_price"], c["pnl"]) == (t.id, 452_261_319, -4_773_869)
    # left = 5_000_000 - 4_773_869 = 226_131; fee = ceil(0.1 x M x 0.005) = ceil(226_130.66) = 226_131
    assert c["fee"] == 226_131
    assert k.balance() == 44_975_000 and k.state.insurance == 226_131  # balance untouched
    assert_sound(k)


@pytest.mark.unit
def test_isolated_short_liquidates_at_its_price() -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "short", Q01, 10, mode="isolated")
    # textbook E (1 + 1/L) / (1 + mmr) = 5e8 x 1.1 / 1.005 = 547_263_681.6 -> ceil 547_263_682
    assert isolated_liquidation_price(-1, BTC_50K, 10, 5_000) == 547_263_682
    # short: IM + floor(-(M - 5e8) / 10) <= ceil(M / 2000)
    # M = 547_263_670: u = -4_726_367 -> 273_633 > ceil(273_631.835) = 273_632: safe
    k.tick(BTC, 547_263_670)
    assert k.is_open("u1", t.id)
    # M = 547_263_671: u = floor(-4_726_367.1) = -4_726_368 -> 273_632 <= ceil(273_631.8355) = 273_632
    k.tick(BTC, 547_263_671)
    assert not k.is_open("u1", t.id) and k.closes()[0]["reason"] == "liquidation"
    assert 547_263_682 - 547_263_671 < 1_000  # within a tick of the formula
    assert_sound(k)


@pytest.mark.unit
def test_liquidation_fee_capped_at_what_is_left() -> None:
    k = kit_with((BTC, BTC_50K))
    k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    k.tick(BTC, 452_000_000)  # gap below the liquidation price
    (c,) = k.closes()
    # u = (452_000_000 - 5e8) / 10 = -4_800_000; left 200_000; fee 0.1 x 45,200 x 0.005 = 226_000
    assert (c["pnl"], c["fee"]) == (-4_800_000, 200_000)
    assert k.state.insurance == 200_000 and k.balance() == 44_975_000
    assert [e["amount"] for e in k.of_type(m.EV_INSURANCE)] == [200_000]
    assert_sound(k)


# ============================================================== bankruptcy
def _seed_fund(k: Kit) -> None:
    """Put $10 in the insurance fund: 'seed' goes long 1 ETH isolated 10x at 3,000
    (IM 3_000_000) and is liquidated at 2,710: u = -2_900_000, left 100_000,
    fee 1 x 2,710 x 0.005 = 135_500 capped at 100_000."""
    k.account("seed")
    k.open_ok("seed", ETH, "long", ONE, 10, mode="isolated")
    k.tick(ETH, 27_100_000)
    assert [c["fee"] for c in k.closes()] == [100_000]
    assert k.state.insurance == 100_000


@pytest.mark.unit
def test_isolated_bankruptcy_covered_by_the_fund() -> None:
    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K))
    k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")  # balance 44_975_000
    _seed_fund(k)
    k.tick(BTC, 449_500_000)
    (c,) = k.closes()
    # u = (449_500_000 - 5e8) / 10 = -5_050_000: loss beyond the margin = 50_000, from the fund
    assert (c["pnl"], c["fee"], c["bankruptcy_cover"]) == (-5_050_000, 0, 50_000)
    assert k.state.insurance == 50_000
    assert k.balance() == 44_975_000  # the trader loses the margin, no more
    assert_sound(k)


@pytest.mark.unit
def test_isolated_bankruptcy_beyond_the_fund_covered_by_the_house() -> None:
    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K))
    k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    _seed_fund(k)
    house = k.state.house_net_payout
    k.tick(BTC, 440_000_000)
    # u = -6_000_000, margin 5_000_000: 1_000_000 beyond: fund 100_000, house 900_000
    assert [e["amount"] for e in k.of_type(m.EV_LEDGER, kind="bankruptcy_cover")] == [100_000, 900_000]
    assert [e["amount"] for e in k.of_type(m.EV_INSURANCE)] == [-100_000]
    assert k.state.insurance == 0 and k.balance() == 44_975_000
    # house: pays the pnl -6_000_000 (i.e. gains it) and the uncovered 900_000
    assert k.state.house_net_payout - house == -6_000_000 + 900_000
    assert_sound(k)


@pytest.mark.unit
def test_cross_bankruptcy_with_an_empty_fund_balance_stays_zero() -> None:
    k = kit_with((BTC, BTC_50K), starting_balance=6_000_000)
    k.open_ok("u1", BTC, "long", Q01, 10)  # balance 6_000_000 - 5_025_000 = 975_000
    k.tick(BTC, 440_000_000)
    (c,) = k.closes()
    # r = -6_000_000; 975_000 + 5_000_000 - 6_000_000 = -25_000 -> house covers 25_000, no fee
    assert (c["pnl"], c["fee"], c["bankruptcy_cover"]) == (-6_000_000, 0, 25_000)
    assert k.balance() == 0 and k.state.insurance == 0
    # deposits 6_000_000 + house (-25_000 fee - 6_000_000 pnl + 25_000 cover) == 0 held
    assert k.state.house_net_payout == -6_000_000
    assert_sound(k)


# ============================================================== available to open
@pytest.mark.unit
@pytest.mark.parametrize(("start", "ok"), [(5_025_000, True), (5_024_999, False)])
def test_available_to_open_exact(start: int, ok: bool) -> None:
    k = kit_with((BTC, BTC_50K), starting_balance=start)
    before = k.core_bytes()
    # 0.1 BTC at 50,000, 10x: IM 5_000_000 + fee 25_000 = 5_025_000
    rep = k.open("u1", BTC, "long", Q01, 10)
    assert rep["ok"] is ok
    if ok:
        assert k.balance() == 0
    else:
        assert (rep["code"], rep["status"]) == (m.REJECTED, 409)
        assert rep["message"] == ("insufficient balance: this trade needs 5025000 "
                                  "(margin 5000000 + fee 25000), available 5024999")
        assert k.core_bytes() == before


@pytest.mark.unit
@pytest.mark.parametrize(("eth_mark", "ok"), [(25_340_000, True), (25_339_999, False)])
def test_available_to_open_counts_cross_losses(eth_mark: int, ok: bool) -> None:
    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K), starting_balance=10_000_000)
    k.open_ok("u1", ETH, "long", ONE, 100)  # IM 300_000 + fee 15_000 -> balance 9_685_000
    k.tick(ETH, eth_mark)
    # 25_340_000: u = 1 x (2,534 - 3,000) = -4_660_000 -> available 5_025_000 = what BTC needs
    # 25_339_999: u = -4_660_001 -> available 5_024_999: one unit short
    rep = k.open("u1", BTC, "long", Q01, 10)
    assert rep["ok"] is ok, rep
    if not ok:
        assert "available 5024999" in rep["message"]


@pytest.mark.unit
def test_available_to_open_ignores_profits_and_isolated_losses() -> None:
    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K), (SOL, 1_500_000), starting_balance=10_000_000)
    # SOL cross long 10 @ 150, 10x: notional $1,500: IM 1_500_000, fee 7_500
    k.open_ok("u1", SOL, "long", 10 * ONE, 10)
    # ETH isolated long 1 @ 3,000 10x: IM 3_000_000, fee 15_000 -> balance 5_477_500
    k.open_ok("u1", ETH, "long", ONE, 10, mode="isolated")
    assert k.balance() == 5_477_500
    k.tick(SOL, 2_000_000)  # SOL u = +5_000_000: not available
    k.tick(ETH, 27_500_000)  # ETH iso u = -2_500_000 (margin 500_000 left > MM 137_500): not counted
    assert len(k.acct().trades) == 2
    # BTC 0.1 x 10 needs 5_025_000 <= 5_477_500
    assert k.open("u1", BTC, "long", Q01, 10)["ok"]
    # and now 452_500 left: 0.01 BTC at 10x needs 500_000 + 2_500 > 452_500
    assert k.open("u1", BTC, "long", 1_000_000, 10)["code"] == m.REJECTED


# ============================================================== funding
@pytest.mark.unit
def test_funding_longs_pay_shorts_receive_isolated_pays_from_margin() -> None:
    k = kit_with((BTC, BTC_50K), users=("long", "short", "iso"))  # clock 1_000: funding due 3_600_000
    lt = k.open_ok("long", BTC, "long", Q01, 10)
    st = k.open_ok("short", BTC, "short", Q01, 10)
    it = k.open_ok("iso", BTC, "long", Q01, 10, mode="isolated")
    for uid in ("long", "short", "iso"):
        assert k.balance(uid) == 44_975_000
    house = k.state.house_net_payout
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=3_599_999)
    assert k.of_type(m.EV_LEDGER) == [] and k.of_type(m.EV_MARGIN_DEBIT) == []  # not due yet
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=3_600_000)  # F = 0.000012345
    # pay = s x q x M x F = 0.1 x 50,000 x 0.000012345 = $0.061725 = 617.25 units
    # the long pays (rounded up) 618; the short receives (rounded down) 617
    assert k.balance("long") == 44_975_000 - 618 and lt.funding == 618
    assert k.balance("short") == 44_975_000 + 617 and st.funding == -617
    # isolated: from its margin, not its balance
    assert k.balance("iso") == 44_975_000 and it.margin == 5_000_000 - 618
    assert [e["amount"] for e in k.of_type(m.EV_MARGIN_DEBIT)] == [-618]
    assert k.state.house_net_payout - house == -618 + 617 - 618
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=3_600_001)
    assert k.balance("long") == 44_975_000 - 618  # once per interval
    assert_sound(k)


@pytest.mark.unit
def test_negative_funding_shorts_pay() -> None:
    k = kit_with((BTC, BTC_50K), users=("long", "short"))
    k.open_ok("long", BTC, "long", Q01, 10)
    k.open_ok("short", BTC, "short", Q01, 10)
    k.tick(BTC, BTC_50K, funding_rate=-12_345, at=3_600_000)
    assert k.balance("long") == 44_975_000 + 617
    assert k.balance("short") == 44_975_000 - 618
    assert_sound(k)


# ============================================================== stale prices
@pytest.mark.unit
def test_no_price_refused() -> None:
    k = kit_with((BTC, BTC_50K))
    rep = k.open("u1", ETH, "long", ONE, 10, price=ETH_3K)
    assert (rep["code"], rep["message"]) == (m.REJECTED, "no price yet for ETH_USDC_PERP")


@pytest.mark.unit
def test_price_older_than_stale_ms_refused() -> None:
    k = kit_with((BTC, BTC_50K))  # tick at 1_000, price_stale_ms 15_000
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    k.wait(15_000)  # 16_000 - 1_000 = 15_000: not older than the limit
    assert k.open("u1", BTC, "long", Q01, 10)["ok"]
    k.wait(1)
    before = k.core_bytes()
    for rep in (k.open("u1", BTC, "long", Q01, 10), k.close("u1", t.id)):
        assert rep["code"] == m.REJECTED and "stale" in rep["message"], rep
    assert k.core_bytes() == before
    k.tick(BTC, BTC_50K)
    assert k.close("u1", t.id)["ok"]


@pytest.mark.unit
def test_explicit_stale_notice_until_next_tick() -> None:
    k = kit_with((BTC, BTC_50K))
    assert k.send({"type": "stale", "market": BTC}) is None
    rep = k.open("u1", BTC, "long", Q01, 10)
    assert rep["message"] == "price for BTC_USDC_PERP is stale; market orders are paused"
    k.tick(BTC, BTC_50K)
    assert k.open("u1", BTC, "long", Q01, 10)["ok"]


# ============================================================== bad input
GOOD_OPEN = {"type": "open", "user_id": "u1", "market": BTC, "side": "long", "qty": Q01, "leverage": 10,
             "slippage_bps": 0, "price": BTC_50K, "margin_mode": "cross"}
_MISSING = object()

BAD_OPENS = [
    ("qty", 15_000, m.INVALID, "positive multiple of 10000"),
    ("qty", 0, m.INVALID, "qty must be an integer from 1"),
    ("qty", -10_000, m.INVALID, "qty must be an integer"),
    ("qty", True, m.INVALID, "qty must be an integer"),
    ("qty", 10_000.0, m.INVALID, "qty must be an integer"),
    ("qty", "10000", m.INVALID, "qty must be an integer"),
    ("qty", _MISSING, m.INVALID, "qty must be an integer"),
    ("leverage", 0, m.INVALID, "leverage must be an integer from 1 to 100"),
    ("leverage", 101, m.INVALID, "leverage must be an integer from 1 to 100"),
    ("leverage", -5, m.INVALID, "leverage must be an integer from 1 to 100"),
    ("leverage", True, m.INVALID, "leverage must be an integer from 1 to 100"),
    ("leverage", _MISSING, m.INVALID, "leverage"),
    ("market", "DOGE_USDC_PERP", m.INVALID, "unknown market 'DOGE_USDC_PERP'"),
    ("market", _MISSING, m.INVALID, "unknown market None"),
    ("market", ["BTC_USDC_PERP"], m.INVALID, "unknown market"),
    ("side", "up", m.INVALID, "side must be 'long' or 'short'"),
    ("side", _MISSING, m.INVALID, "side must be"),
    ("side", ["long"], m.INVALID, "side must be"),
    ("side", {"long": 1}, m.INVALID, "side must be"),
    ("margin_mode", "portfolio", m.INVALID, "margin_mode must be 'cross' or 'isolated'"),
    ("margin_mode", ["cross"], m.INVALID, "margin_mode must be"),
    ("slippage_bps", -1, m.INVALID, "slippage_bps must be an integer from 0 to 10000"),
    ("slippage_bps", 10_001, m.INVALID, "slippage_bps"),
    ("slippage_bps", _MISSING, m.INVALID, "slippage_bps"),
    ("price", 0, m.INVALID, "price must be an integer from 1"),
    ("price", -BTC_50K, m.INVALID, "price must be an integer"),
    ("price", _MISSING, m.INVALID, "price must be an integer"),
    ("price", "50000", m.INVALID, "price must be an integer"),
    ("take_profit", 510_000_500, m.INVALID, "take_profit must be a multiple of the tick size 1000"),
    ("take_profit", 490_000_000, m.INVALID, "take_profit must be above the entry"),
    ("take_profit", False, m.INVALID, "take_profit must be an integer"),
    ("stop_loss", 510_000_000, m.INVALID, "stop_loss must be below the entry"),
    ("stop_loss", -1, m.INVALID, "stop_loss must be an integer"),
    ("user_id", _MISSING, m.INVALID, "user_id must be a non-empty string"),
    ("user_id", 7, m.INVALID, "user_id must be a non-empty string"),
    ("user_id", "nobody", m.NOT_FOUND, "account not found"),
]


def _bad_kit() -> tuple[Kit, str]:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    return k, t.id


def _assert_refused_cleanly(k: Kit, msg: dict[str, object], code: str, words: str) -> None:
    before = k.core_bytes()
    dedup = dict(k.state.dedup)
    rep = k.send(msg)
    assert rep is not None and rep["code"] == code and not rep["ok"], rep
    assert words in rep["message"], rep["message"]
    assert k.events == []
    assert k.core_bytes() == before  # accounts, prices, fund, counters: untouched
    assert {c: orjson.loads(r) for c, r in k.state.dedup.items() if c not in dedup} == {msg["id"]: rep}


@pytest.mark.unit
@pytest.mark.parametrize(("field", "value", "code", "words"), BAD_OPENS,
                         ids=[f"{f}={v!r}" for f, v, _, _ in BAD_OPENS])
def test_bad_open_is_refused_and_changes_nothing(field: str, value: object, code: str, words: str) -> None:
    k, _ = _bad_kit()
    msg = {**GOOD_OPEN, "id": "bad-1"}
    if value is _MISSING:
        del msg[field]
    else:
        msg[field] = value
    _assert_refused_cleanly(k, msg, code, words)


@pytest.mark.unit
def test_isolated_stop_loss_beyond_liquidation_refused() -> None:
    k, _ = _bad_kit()
    # isolated 10x long liquidates near 45,226 (see above): a stop at 45,000 would never fire
    msg = {**GOOD_OPEN, "id": "bad-sl", "margin_mode": "isolated", "stop_loss": 450_000_000}
    _assert_refused_cleanly(k, msg, m.INVALID, "stop_loss is beyond the liquidation price")


@pytest.mark.unit
@pytest.mark.parametrize(("msg", "code", "words"), [
    ({"type": "explode", "user_id": "u1"}, m.INVALID, "unknown command type 'explode'"),
    ({"user_id": "u1"}, m.INVALID, "unknown command type None"),
    ({"type": ["open"], "user_id": "u1"}, m.INVALID, "unknown command type"),
    ({"type": "close", "user_id": "u1"}, m.INVALID, "trade_id must be a non-empty string"),
    ({"type": "close", "user_id": "u1", "trade_id": ""}, m.INVALID, "trade_id must be"),
    ({"type": "close", "user_id": "u1", "trade_id": 5}, m.INVALID, "trade_id must be"),
    ({"type": "close", "user_id": "u1", "trade_id": "no-such"}, m.NOT_FOUND, "trade not found"),
    ({"type": "close", "user_id": "nobody", "trade_id": "x"}, m.NOT_FOUND, "account not found"),
    ({"type": "create_account", "user_id": "u1"}, m.CONFLICT, "account already exists"),
    ({"type": "create_account", "user_id": ""}, m.INVALID, "user_id must be"),
    ({"type": "create_account", "user_id": "x" * 129}, m.INVALID, "user_id must be"),
    ({"type": "reset_account", "user_id": "nobody"}, m.NOT_FOUND, "account not found"),
])
def test_bad_command_is_refused_and_changes_nothing(msg: dict[str, object], code: str, words: str) -> None:
    k, _ = _bad_kit()
    _assert_refused_cleanly(k, {**msg, "id": "bad-2"}, code, words)


@pytest.mark.unit
@pytest.mark.parametrize("msg", [
    None, [], "open", 42, b"{}", {},
    {**GOOD_OPEN},  # no id: cannot be answered
    {**GOOD_OPEN, "id": 17}, {**GOOD_OPEN, "id": ""}, {**GOOD_OPEN, "id": "x" * 129},
    {**GOOD_OPEN, "id": True},
    # bad ticks: ignored whole (the poller validates and logs)
    {"type": "tick", "market": BTC, "bid": 510_000_000, "ask": 500_000_000, "mark": 505_000_000},
    {"type": "tick", "market": "DOGE", "bid": 1, "ask": 2, "mark": 1},
    {"type": "tick", "market": BTC, "bid": -1, "ask": 2, "mark": 1},
    {"type": "tick", "market": BTC, "bid": 1, "ask": 2, "mark": True},
    {"type": "tick", "market": BTC, "bid": 1, "mark": 1},
    {"type": "tick", "market": BTC, "bid": 1, "ask": 2, "mark": 1, "funding_rate": 2 * 10**9},
    {"type": "tick", "market": [BTC], "bid": 1, "ask": 2, "mark": 1},
    {"type": "stale", "market": "DOGE"}, {"type": "stale", "market": {}},
])
def test_malformed_input_is_ignored_and_changes_nothing(msg: object) -> None:
    k, _ = _bad_kit()
    before = k.core_bytes()
    dedup = k.state.to_snapshot()["dedup"]
    assert k.send(msg) is None
    assert k.events == []
    assert k.core_bytes() == before and k.state.to_snapshot()["dedup"] == dedup


# ============================================================== duplicates
@pytest.mark.unit
def test_duplicate_command_id_returns_the_original_reply() -> None:
    k = kit_with((BTC, BTC_50K))
    msg = {**GOOD_OPEN, "id": "dup-1"}
    first = k.send(msg)
    assert first is not None and first["ok"]
    balance, trades = k.balance(), list(k.acct().trades)
    k.tick(BTC, 510_000_000)  # the price moved; the retry must not re-fill
    before = k.core_bytes()
    for retry in (msg, {**msg, "qty": 2 * Q01}, {"id": "dup-1", "type": "close", "user_id": "u1"}):
        assert k.send(retry) == first
        assert k.events == []
    assert k.core_bytes() == before
    assert (k.balance(), list(k.acct().trades)) == (balance, trades)


@pytest.mark.unit
def test_duplicate_of_a_refused_command_stays_refused() -> None:
    k = kit_with((BTC, BTC_50K))
    k.send({"type": "stale", "market": BTC})
    msg = {**GOOD_OPEN, "id": "dup-2"}
    refused = k.send(msg)
    assert refused is not None and refused["code"] == m.REJECTED
    k.tick(BTC, BTC_50K)  # would succeed now, but the id was answered
    assert k.send(msg) == refused
    assert k.acct().trades == {}


# ============================================================== take-profit / stop-loss
@pytest.mark.unit
def test_take_profit_triggers_on_mark_and_closes_at_bid_with_taker_fee() -> None:
    k = Kit()
    k.tick(BTC, 500_000_000, 500_100_000)  # bid 50,000 / ask 50,010
    k.account("u1")
    t = k.open_ok("u1", BTC, "long", Q01, 10, take_profit=510_000_000, stop_loss=490_000_000)
    # entry 50,010: IM 0.1 x 50,010 / 10 = 5_001_000; fee 0.1 x 50,010 x 0.0005 = 2.5005 = 25_005
    assert k.balance() == 50_000_000 - 5_001_000 - 25_005
    k.tick(BTC, 510_000_000, 510_200_000, 509_999_000)  # bid at the TP, mark one unit under: no
    assert k.is_open("u1", t.id)
    k.tick(BTC, 509_900_000, 510_100_000, 510_000_000)  # mark reaches 51,000
    (c,) = k.closes()
    # closes a long at the bid 50,990: r = 0.1 x (50,990 - 50,010) = $98 = 980_000
    # fee = 0.1 x 50,990 x 0.0005 = $2.5495 = 25_495
    assert (c["reason"], c["close_price"], c["pnl"], c["fee"]) == ("take_profit", 509_900_000, 980_000, 25_495)
    assert k.balance() == 50_000_000 - 25_005 + 980_000 - 25_495
    assert_sound(k)


@pytest.mark.unit
def test_stop_loss_of_a_short_triggers_on_mark_and_closes_at_ask() -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "short", Q01, 10, stop_loss=505_000_000, mode="isolated")
    # isolated short 10x liquidates near 54,726: a stop at 50,500 is valid
    k.tick(BTC, 504_900_000, 505_100_000, 504_999_000)  # ask above the stop, mark under: no
    assert k.is_open("u1", t.id)
    k.tick(BTC, 504_900_000, 505_100_000, 505_000_000)
    (c,) = k.closes()
    # closes a short at the ask 50,510: r = -0.1 x 510 = -$51 = -510_000; fee 0.1 x 50,510 x 0.0005
    # = $2.5255 = 25_255
    assert (c["reason"], c["close_price"], c["pnl"], c["fee"]) == ("stop_loss", 505_100_000, -510_000, 25_255)
    assert k.balance() == 44_975_000 + 5_000_000 - 510_000 - 25_255
    assert_sound(k)


@pytest.mark.unit
def test_stop_loss_of_a_long_fires_on_a_falling_mark() -> None:
    k = kit_with((BTC, BTC_50K))
    t = k.open_ok("u1", BTC, "long", Q01, 10, stop_loss=490_000_000)
    k.tick(BTC, 490_001_000)
    assert k.is_open("u1", t.id)
    k.tick(BTC, 489_000_000)  # gaps through the stop: closes at the bid 48,900
    (c,) = k.closes()
    assert (c["reason"], c["close_price"], c["pnl"]) == ("stop_loss", 489_000_000, -1_100_000)


# ============================================================== reset, events
@pytest.mark.unit
def test_reset_account_closes_at_mark_without_fee_and_restores_balance() -> None:
    k = kit_with((BTC, BTC_50K))
    k.open_ok("u1", BTC, "long", Q01, 10)  # balance 44_975_000
    k.tick(BTC, 490_000_000)
    rep = k.cmd("reset_account", user_id="u1")
    assert rep["ok"]
    (c,) = k.closes()
    # at the mark 49,000: r = -1_000_000, fee 0 -> 48_975_000, then +1_025_000 back to $5,000
    assert (c["reason"], c["pnl"], c["fee"]) == ("reset", -1_000_000, 0)
    assert [e["amount"] for e in k.of_type(m.EV_LEDGER, kind="reset")] == [1_025_000]
    assert k.balance() == START and k.acct().trades == {}
    assert k.state.deposits == START + 1_025_000
    assert_sound(k)


@pytest.mark.unit
def test_event_ids_are_unique_and_derive_from_the_entry() -> None:
    k = kit_with((BTC, BTC_50K))
    k.open_ok("u1", BTC, "long", Q01, 10)
    entry = k.log[-1][0]
    assert [e["id"] for e in k.events] == [f"0:{entry}:{i}" for i in range(len(k.events))]
    assert [e["type"] for e in k.events] == [m.EV_LEDGER, m.EV_LEDGER, m.EV_TRADE_OPENED]


@pytest.mark.unit
def test_a_version_2_snapshot_still_loads_and_answers_retries() -> None:
    """Snapshots before version 3 kept each remembered reply as an object, not
    as its JSON text; an engine booting from one must answer a retry with the
    same reply and carry on."""
    from opex_engine.core.state import EngineState
    from tests.engine.kit import restore

    k = kit_with((BTC, BTC_50K))
    msg = k.open_msg("u1", BTC, "long", Q01, 10)
    first = k.send(msg)
    snap = orjson.loads(k.snapshot_bytes())
    assert snap["v"] == 3
    old = {**snap, "v": 2, "dedup": [[ts, cid, orjson.loads(text)] for ts, cid, text in snap["dedup"]]}
    engine = restore(EngineState.from_snapshot(old))
    rep, events = engine.apply("999999-0", k.now + 1, msg)
    assert rep == first and events == []
    assert engine.state.to_snapshot()["dedup"] == snap["dedup"]


@pytest.mark.unit
def test_snapshot_payload_is_lines_and_reads_back_exactly() -> None:
    """Stored snapshots are a header line, a line per account and lines of the
    dedup log; loading them (and the one-document payloads written before)
    gives back the same state."""
    from opex_engine.snapshots import DEDUP_LINE, decode_state, encode_state

    k = kit_with((BTC, BTC_50K), (ETH, ETH_3K), users=("u1", "u2", "u3"))
    for i in range(DEDUP_LINE + 5):  # more remembered replies than one dedup line holds
        k.send({"id": f"bad-{i}", "type": "close", "user_id": "u1", "trade_id": "nope"})
    k.open_ok("u2", ETH, "short", ONE, 5)
    payload = encode_state(k.state)
    lines = payload.split(b"\n")
    head = orjson.loads(lines[0])
    assert head["format"] == "lines" and head["accounts"] == 3 and head["dedup_lines"] == 2
    assert len(lines) == 1 + 3 + 2
    assert decode_state(payload).to_snapshot() == k.state.to_snapshot()
    one_document = orjson.dumps(k.state.to_snapshot(), option=orjson.OPT_SORT_KEYS)
    assert decode_state(one_document).to_snapshot() == k.state.to_snapshot()
    with pytest.raises(ValueError):
        decode_state(payload + b"\n[]")
