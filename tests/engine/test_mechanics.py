"""Perpetuals mechanics, hand-worked: take-profit / stop-loss changes, partial
close limits, isolated margin top-ups, funding, margin warnings; and a
recorded day replayed twice.

Units: money and prices in 1e-4 USD ($1 = 10_000), qty in 1e-8 base units
(0.1 BTC = 10_000_000), rates in ppm, funding in 1e-9. Default markets: taker
fee 500 ppm, mmr 5000 ppm (= liquidation fee), funding every hour. Starting
balance $5,000. Every expected number is worked out in the comment above it.

    IM     = ceil(q * P / (1e8 * L))
    fee    = ceil(q * P * rate / 1e14)
    u, r   = floor(s * q * (P - E) / 1e8)
    MM     = ceil(q * M * 5000 / 1e14)
    pay    = s * q * M * F / 1e17, paid rounded up, received rounded down
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from opex_common import messages as m
from opex_engine.core.engine import Engine
from opex_engine.core.state import EngineState
from opex_engine.core.triggers import FALLING
from tests.engine.kit import BTC, ETH, MARKETS, SOL, Kit, markets_with, restore, state_bytes

pytestmark = pytest.mark.unit

START = 50_000_000  # $5,000
BTC_50K = 500_000_000
Q01 = 10_000_000  # 0.1 BTC
HOUR = 3_600_000
BRUTE = pytest.mark.parametrize("brute", [False, True], ids=["indexed", "brute"])


def kit(*users: str, markets: Any = None, **kw: Any) -> Kit:
    """BTC at 50,000 with no spread (bid = ask = mark), ETH 3,000, SOL 150; accounts (default u1)."""
    k = Kit(markets, **kw)
    k.tick(BTC, BTC_50K)
    k.tick(ETH, 30_000_000)
    k.tick(SOL, 1_500_000)
    for uid in users or ("u1",):
        k.account(uid)
    return k


def sound(k: Kit) -> None:
    assert k.invariants() == []
    t = k.state.totals()
    assert t["deposits"] + t["house_net_payout"] == t["balances"] + t["margins"] + t["reserved"] + t["insurance"]
    for uid, acct in k.state.accounts.items():  # every balance is the sum of its ledger
        assert sum(e["amount"] for e in k.ledger(uid)) == acct.balance


def refused(k: Kit, rep: dict[str, Any], before: bytes, code: str, words: str) -> None:
    assert rep["code"] == code and words in rep["message"], rep
    assert k.events == [] and k.core_bytes() == before


# ============================================================== take-profit / stop-loss
@pytest.mark.unit
@BRUTE
def test_tpsl_set_at_open_changed_removed_then_the_new_tp_fires(brute: bool) -> None:
    k = kit(brute_force=brute)
    t = k.open_ok("u1", BTC, "long", Q01, 10, take_profit=550_000_000, stop_loss=450_000_000)
    # IM 0.1 x 50,000 / 10 = 5_000_000; fee $5,000 x 0.0005 = 25_000
    assert (t.tp, t.sl, k.balance()) == (550_000_000, 450_000_000, 44_975_000)
    rep = k.set_tpsl("u1", t.id, take_profit=560_000_000)  # stop_loss left out: kept
    assert rep["ok"] and rep["data"]["trade"]["take_profit"] == 560_000_000
    assert (t.tp, t.sl) == (560_000_000, 450_000_000)
    (ch,) = k.of_type(m.EV_TPSL_CHANGED)
    assert (ch["trade_id"], ch["take_profit"], ch["stop_loss"]) == (t.id, 560_000_000, 450_000_000)
    assert k.set_tpsl("u1", t.id, stop_loss=None)["ok"]  # null removes it
    assert (t.tp, t.sl) == (560_000_000, None)
    assert k.tick(BTC, 449_000_000) == []  # through the removed stop: still open
    assert k.tick(BTC, 555_000_000) == []  # through the old take-profit: still open
    k.tick(BTC, 560_000_000)
    (c,) = k.closes()
    # at the bid 56,000: r = 0.1 x 6,000 = $600 = 6_000_000; fee 0.1 x 56,000 x 0.0005 = $2.8 = 28_000
    assert (c["reason"], c["close_price"], c["pnl"], c["fee"]) == ("take_profit", 560_000_000, 6_000_000, 28_000)
    assert k.balance() == 44_975_000 + 5_000_000 + 6_000_000 - 28_000 == 55_947_000
    sound(k)


@pytest.mark.unit
@BRUTE
def test_tp_set_later_on_a_short_fires_on_the_mark_and_closes_at_the_ask(brute: bool) -> None:
    k = kit(brute_force=brute)
    t = k.open_ok("u1", BTC, "short", Q01, 10)  # at 50,000; balance 44_975_000
    assert (t.tp, t.sl) == (None, None)
    assert k.set_tpsl("u1", t.id, take_profit=490_000_000)["ok"]
    # the ask is already below the TP, the mark one unit above it: no
    assert k.tick(BTC, 489_000_000, 489_900_000, 490_001_000) == []
    k.tick(BTC, 489_900_000, 490_100_000, 490_000_000)  # the mark reaches 49,000
    (c,) = k.closes()
    # a short closes at the ask 49,010: r = -1 x 0.1 x (49,010 - 50,000) = $99 = 990_000
    # taker fee = 0.1 x 49,010 x 0.0005 = $2.4505 = 24_505
    assert (c["reason"], c["close_price"], c["pnl"], c["fee"]) == ("take_profit", 490_100_000, 990_000, 24_505)
    assert k.balance() == 44_975_000 + 5_000_000 + 990_000 - 24_505 == 50_940_495
    sound(k)


@pytest.mark.unit
@BRUTE
def test_sl_set_later_on_a_long_fires_on_the_mark_and_closes_at_the_bid(brute: bool) -> None:
    k = kit(brute_force=brute)
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    assert k.set_tpsl("u1", t.id, stop_loss=490_000_000, take_profit=None)["ok"]
    assert k.tick(BTC, 489_000_000, 489_900_000, 490_001_000) == []  # bid below, mark above: no
    k.tick(BTC, 489_800_000, 490_200_000, 490_000_000)
    (c,) = k.closes()
    # at the bid 48,980: r = 0.1 x (48,980 - 50,000) = -$102 = -1_020_000
    # taker fee = 0.1 x 48,980 x 0.0005 = $2.449 = 24_490
    assert (c["reason"], c["close_price"], c["pnl"], c["fee"]) == ("stop_loss", 489_800_000, -1_020_000, 24_490)
    assert k.balance() == 44_975_000 + 5_000_000 - 1_020_000 - 24_490 == 48_930_510
    sound(k)


@pytest.mark.unit
@pytest.mark.parametrize(("side", "fields", "words"), [
    ("long", {"take_profit": 490_000_000}, "take_profit must be above the entry for a long"),
    ("long", {"take_profit": BTC_50K}, "take_profit must be above the entry"),
    ("short", {"take_profit": 510_000_000}, "take_profit must be above the entry for a long, below it for a short"),
    ("long", {"stop_loss": 510_000_000}, "stop_loss must be below the entry"),
    ("short", {"stop_loss": 490_000_000}, "stop_loss must be below the entry for a long, above it for a short"),
    ("long", {"take_profit": 510_000_500}, "multiple of the tick size 1000"),
    ("long", {"take_profit": "51000"}, "take_profit must be null or an integer"),
    ("long", {"stop_loss": True}, "stop_loss must be null or an integer"),
    ("long", {"stop_loss": 0}, "stop_loss must be null or an integer"),
])
def test_tpsl_on_the_wrong_side_or_malformed_refused(side: str, fields: dict[str, Any], words: str) -> None:
    k = kit()
    t = k.open_ok("u1", BTC, side, Q01, 10)
    before = k.core_bytes()
    refused(k, k.set_tpsl("u1", t.id, **fields), before, m.INVALID, words)


@pytest.mark.unit
def test_tpsl_already_reached_by_the_mark_refused() -> None:
    k = kit()
    t = k.open_ok("u1", BTC, "long", Q01, 10)  # entry 50,000
    k.tick(BTC, 520_000_000)  # mark 52,000
    before = k.core_bytes()
    # above the entry, but the mark is already past it: it would fire on the next tick
    refused(k, k.set_tpsl("u1", t.id, take_profit=510_000_000), before, m.INVALID, "take_profit is already reached")
    refused(k, k.set_tpsl("u1", t.id, take_profit=520_000_000), before, m.INVALID, "take_profit is already reached")
    assert k.set_tpsl("u1", t.id, take_profit=520_001_000)["ok"]
    k.tick(BTC, 480_000_000)  # mark 48,000
    before = k.core_bytes()
    refused(k, k.set_tpsl("u1", t.id, stop_loss=490_000_000), before, m.INVALID, "stop_loss is already reached")
    refused(k, k.set_tpsl("u1", t.id, stop_loss=480_000_000), before, m.INVALID, "stop_loss is already reached")
    assert k.set_tpsl("u1", t.id, stop_loss=479_999_000)["ok"]


@pytest.mark.unit
def test_stop_loss_beyond_the_isolated_liquidation_price_refused() -> None:
    # isolated long 0.1 at 50,000, 10x: IM 5_000_000. IM + u <= MM:
    #   5_000_000 + floor((M - 500_000_000) / 10) <= ceil(M / 2000)
    # roughly M x (1/10 - 1/2000) <= 45_000_000, M <= 452_261_306.5; with the rounding
    # (u floors in steps of 10 units of M, MM ceils) the last liquidatable mark is
    # 452_261_319: u(…319) = floor(-4_773_868.1) = -4_773_869, IM + u = 226_131,
    # MM = ceil(226_130.66) = 226_131 (liquidates); at …320 u = -4_773_868: 226_132 > 226_131
    k = kit()
    before = k.core_bytes()
    rep = k.open("u1", BTC, "long", Q01, 10, mode="isolated", stop_loss=452_261_000)
    refused(k, rep, before, m.INVALID, "stop_loss is beyond the liquidation price 452261319")
    t = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    before = k.core_bytes()
    refused(k, k.set_tpsl("u1", t.id, stop_loss=452_261_000), before, m.INVALID,
            "stop_loss is beyond the liquidation price 452261319")
    assert k.set_tpsl("u1", t.id, stop_loss=452_262_000)["ok"]
    # cross trades have no liquidation price of their own: a deep stop is fine
    c = k.open_ok("u1", BTC, "long", Q01, 10)
    assert k.set_tpsl("u1", c.id, stop_loss=400_000_000)["ok"]


@pytest.mark.unit
def test_set_tpsl_on_someone_elses_trade_is_not_found() -> None:
    k = kit("u1", "u2")
    theirs = k.open_ok("u2", BTC, "long", Q01, 10)
    before = k.core_bytes()
    refused(k, k.set_tpsl("u1", theirs.id, take_profit=550_000_000), before, m.NOT_FOUND, "trade not found")


# ============================================================== partial close
@pytest.mark.unit
def test_partial_close_larger_than_the_trade_refused() -> None:
    k = kit()
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    before = k.core_bytes()
    refused(k, k.close("u1", t.id, qty=Q01 + 10_000), before, m.INVALID, "quantity 10010000 is larger than the "
                                                                           "trade's 10000000")
    d = k.close("u1", t.id, qty=Q01)["data"]  # exactly all of it is a full close
    assert (d["closed_qty"], d["remaining_qty"]) == (Q01, 0)


# ============================================================== add margin
@pytest.mark.unit
def test_add_margin_refusals() -> None:
    k = kit("u1", "u2")
    iso = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    cross = k.open_ok("u1", BTC, "long", Q01, 10)
    theirs = k.open_ok("u2", BTC, "long", Q01, 10, mode="isolated")
    # two opens: balance 50_000_000 - 2 x 5_025_000 = 39_950_000
    assert k.balance() == 39_950_000
    before = k.core_bytes()
    refused(k, k.add_margin("u1", iso.id, 39_950_001), before, m.REJECTED,
            "amount 39950001 is more than the available balance 39950000 (free balance 39950000 less")
    refused(k, k.add_margin("u1", cross.id, 100), before, m.INVALID, "only be added to an isolated trade")
    refused(k, k.add_margin("u1", theirs.id, 100), before, m.NOT_FOUND, "trade not found")
    for bad in (0, -5, True, "100"):
        refused(k, k.add_margin("u1", iso.id, bad), before, m.INVALID, "amount must be an integer")  # type: ignore[arg-type]
    assert k.add_margin("u1", iso.id, 39_950_000)["ok"]  # all of it is allowed
    assert (k.balance(), iso.margin) == (0, 44_950_000)
    sound(k)


@pytest.mark.unit
def test_add_margin_counts_the_cross_trades_unrealized_losses() -> None:
    # what moves into an isolated trade leaves the cross equity: as for an
    # open, the free balance less the cross trades' unrealized losses is the limit
    k = kit()
    iso = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    k.open_ok("u1", BTC, "long", Q01, 10)
    assert k.balance() == 39_950_000
    k.tick(BTC, 490_000_000)  # 50,000 -> 49,000: the cross long of 0.1 BTC is down $100
    before = k.core_bytes()
    refused(k, k.add_margin("u1", iso.id, 39_950_000), before, m.REJECTED,
            "more than the available balance 38950000 (free balance 39950000 less")
    assert k.add_margin("u1", iso.id, 38_950_000)["ok"]
    assert k.balance() == 1_000_000
    sound(k)


@pytest.mark.unit
@BRUTE
def test_add_margin_moves_the_isolated_liquidation_price(brute: bool) -> None:
    def setup() -> tuple[Kit, str]:
        k = kit(brute_force=brute)
        return k, k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated").id

    # the watch level of a long: the largest M with q M (1e6 - mmr) < 2e14 + q E 1e6 - IM 1e14,
    # q = 1e7, E = 5e8, mmr = 5000:
    #   IM 5_000_000: (2e14 + 5e21 - 5e20 - 1) // 9.95e12 = 452_261_326  (liq. price 452_261_319)
    #   IM 7_500_000: (2e14 + 5e21 - 7.5e20 - 1) // 9.95e12 = 427_135_698
    k, tid = setup()
    assert k.engine.index._live[("iso", tid)][1] == ((BTC, FALLING, 452_261_326),)
    rep = k.add_margin("u1", tid, 2_500_000)  # $250 more
    assert rep["ok"] and rep["data"]["trade"]["margin"] == 7_500_000
    assert [(e["kind"], e["amount"], e["trade_id"]) for e in k.of_type(m.EV_LEDGER)] == [
        ("margin_lock", -2_500_000, tid)]
    assert k.balance() == 44_975_000 - 2_500_000 == 42_475_000
    assert k.engine.index._live[("iso", tid)][1] == ((BTC, FALLING, 427_135_698),)
    # at 45,000: 7_500_000 + 0.1 x (45,000 - 50,000) = 2_500_000 > MM 225_000: healthy now
    assert k.tick(BTC, 450_000_000) == []
    # at 42,700: 7_500_000 - 7_300_000 = 200_000 <= MM ceil(213_500) = 213_500: liquidated
    k.tick(BTC, 427_000_000)
    (c,) = k.closes()
    assert (c["reason"], c["trade"]["id"]) == ("liquidation", tid)
    sound(k)
    # without the top-up, 45,000 liquidates: 5_000_000 - 5_000_000 = 0 <= 225_000
    k2, tid2 = setup()
    k2.tick(BTC, 450_000_000)
    assert [(c["reason"], c["trade"]["id"]) for c in k2.closes()] == [("liquidation", tid2)]


@pytest.mark.unit
def test_add_margin_makes_a_refused_stop_loss_valid() -> None:
    k = kit()
    t = k.open_ok("u1", BTC, "long", Q01, 10, mode="isolated")
    assert k.set_tpsl("u1", t.id, stop_loss=440_000_000)["code"] == m.INVALID  # liq. 45,226.1319
    k.add_margin("u1", t.id, 2_500_000)  # liq. now about 42,713.6 (see above)
    assert k.set_tpsl("u1", t.id, stop_loss=440_000_000)["ok"]


# ============================================================== funding
@pytest.mark.unit
@BRUTE
def test_funding_long_and_short_cross_and_isolated_both_signs(brute: bool) -> None:
    k = kit("cl", "cs", "il", "is", brute_force=brute)  # first tick at 1_000: funding due at 3_600_000
    t = {
        "cl": k.open_ok("cl", BTC, "long", Q01, 10),
        "cs": k.open_ok("cs", BTC, "short", Q01, 10),
        "il": k.open_ok("il", BTC, "long", Q01, 10, mode="isolated"),
        "is": k.open_ok("is", BTC, "short", Q01, 10, mode="isolated"),
    }
    for uid in t:  # IM 5_000_000, fee 25_000 each
        assert (k.balance(uid), t[uid].margin) == (44_975_000, 5_000_000)
    house0 = k.state.house_net_payout
    assert k.tick(BTC, BTC_50K, funding_rate=12_345, at=HOUR - 1) == []  # not yet due
    # interval 1, F = +0.000012345 at 50,000: pay = s x 0.1 x 50,000 x F = s x 617.25 units
    # longs pay ceil = 618; shorts receive floor = 617
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=HOUR)
    first = {(e["user_id"], e["type"], e["amount"]) for e in k.events}
    assert first == {("cl", m.EV_LEDGER, -618), ("cs", m.EV_LEDGER, 617), ("il", m.EV_MARGIN_DEBIT, -618),
                     ("is", m.EV_LEDGER, 617)}
    assert all(e["kind"] == "funding" for e in k.events)
    assert k.state.house_net_payout - house0 == -(618 - 617 + 618 - 617) == -2
    assert k.tick(BTC, BTC_50K, funding_rate=12_345, at=HOUR + 1) == []  # once per interval
    # interval 2, F = -0.00002 at 51,234.5: pay = s x 0.1 x 51,234.5 x -0.00002 = -s x 1_024.69
    # shorts pay ceil = 1_025; longs receive floor = 1_024
    assert k.tick(BTC, 512_345_000, funding_rate=-20_000, at=2 * HOUR - 1) == []
    k.tick(BTC, 512_345_000, funding_rate=-20_000, at=2 * HOUR)
    second = {(e["user_id"], e["type"], e["amount"]) for e in k.events}
    assert second == {("cl", m.EV_LEDGER, 1_024), ("cs", m.EV_LEDGER, -1_025), ("il", m.EV_LEDGER, 1_024),
                      ("is", m.EV_MARGIN_DEBIT, -1_025)}
    # per trade: paid 618, received 1_024 -> -406; received 617, paid 1_025 -> +408
    assert {uid: tr.funding for uid, tr in t.items()} == {"cl": -406, "cs": 408, "il": -406, "is": 408}
    assert {uid: k.acct(uid).funding_paid for uid in t} == {"cl": -406, "cs": 408, "il": -406, "is": 408}
    # cross: both legs through the balance; isolated: paid from the margin, received to the balance
    assert k.balance("cl") == 44_975_000 - 618 + 1_024 == 44_975_406
    assert k.balance("cs") == 44_975_000 + 617 - 1_025 == 44_974_592
    assert (k.balance("il"), t["il"].margin) == (44_975_000 + 1_024, 5_000_000 - 618)
    assert (k.balance("is"), t["is"].margin) == (44_975_000 + 617, 5_000_000 - 1_025)
    assert [e["amount"] for e in k.ledger("cl", kind="funding")] == [-618, 1_024]
    assert [e["amount"] for e in k.ledger("il", kind="funding")] == [1_024]
    assert [e["amount"] for e in k.ever(m.EV_MARGIN_DEBIT, user_id="il")] == [-618]
    # conservation: what the traders paid on balance is exactly what the house took
    paid = sum(tr.funding for tr in t.values())
    assert paid == 4 and k.state.house_net_payout - house0 == -paid
    sound(k)


@pytest.mark.unit
def test_cross_funding_with_no_free_balance_comes_from_the_margin() -> None:
    k = kit(starting_balance=5_025_000)  # exactly IM 5_000_000 + fee 25_000 of 0.1 BTC at 10x
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    assert k.balance() == 0
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=HOUR)
    assert k.of_type(m.EV_LEDGER) == []  # nothing on the balance
    assert [(e["kind"], e["amount"], e["margin_after"]) for e in k.of_type(m.EV_MARGIN_DEBIT)] == [
        ("funding", -618, 4_999_382)]
    assert (t.margin, t.funding) == (4_999_382, 618)
    sound(k)


@pytest.mark.unit
def test_funding_due_once_per_interval_of_stream_time_even_after_a_gap() -> None:
    k = kit()
    k.open_ok("u1", BTC, "long", Q01, 10)
    # silence from 1_000 to 3 h 30 min: the first tick after it pays once (at its mark and rate)
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=3 * HOUR + HOUR // 2)
    assert [e["amount"] for e in k.of_type(m.EV_LEDGER, kind="funding")] == [-618]
    assert k.tick(BTC, BTC_50K, funding_rate=12_345, at=4 * HOUR - 1) == []  # next due at 4 h
    k.tick(BTC, BTC_50K, funding_rate=12_345, at=4 * HOUR)
    assert [e["amount"] for e in k.of_type(m.EV_LEDGER, kind="funding")] == [-618]


# ============================================================== margin warnings
@pytest.mark.unit
@BRUTE
def test_margin_warning_at_80_percent_once_and_margin_ok_below_70(brute: bool) -> None:
    # $600 account, long 1 BTC at 50,000, 100x cross: IM 5_000_000, fee 250_000, balance 750_000.
    # At mark M: equity = 750_000 + 5_000_000 + (M - 500_000_000) = M - 494_250_000,
    # maintenance = ceil(M x 5000 / 1e6) = ceil(M / 200).
    k = kit(starting_balance=6_000_000, brute_force=brute)
    t = k.open_ok("u1", BTC, "long", 100_000_000, 100)
    assert (k.balance(), t.margin) == (750_000, 5_000_000)

    def warnings() -> list[tuple[str, int, int, int | None]]:
        return [(e["type"], e["equity"], e["maintenance"], e["margin_ratio_bps"]) for e in k.events
                if e["type"] in (m.EV_MARGIN_WARNING, m.EV_MARGIN_OK)]

    # 497_358_492: eq 3_108_492, MM ceil(2_486_792.46) = 2_486_793; 5 MM = 12_433_965 < 4 eq = 12_433_968
    k.tick(BTC, 497_358_492)
    assert warnings() == [] and not k.acct().warned
    # 497_358_491: eq 3_108_491, MM 2_486_793; 5 MM = 12_433_965 >= 4 eq = 12_433_964: 80% reached
    # ratio = 24_867_930_000 // 3_108_491 = 8_000 bps
    k.tick(BTC, 497_358_491)
    assert warnings() == [(m.EV_MARGIN_WARNING, 3_108_491, 2_486_793, 8_000)]
    assert k.acct().warned and k.engine.account_view(k.acct())["margin_warning"] is True
    # deeper (84%: eq 2_950_000, MM 2_486_000), back to 74% (eq 3_350_000, MM 2_488_000) and to the
    # edge of 70% (eq 3_555_755, MM 2_489_029: 10 MM = 24_890_290 >= 7 eq = 24_890_285): no repeat
    for mark in (497_200_000, 497_600_000, 497_805_755):
        k.tick(BTC, mark)
        assert warnings() == [] and k.acct().warned
    # 497_805_756: eq 3_555_756, MM ceil(2_489_028.78) = 2_489_029; 10 MM = 24_890_290 < 7 eq = 24_890_292
    # ratio = 24_890_290_000 // 3_555_756 = 6_999 bps
    k.tick(BTC, 497_805_756)
    assert warnings() == [(m.EV_MARGIN_OK, 3_555_756, 2_489_029, 6_999)] and not k.acct().warned
    k.tick(BTC, 497_600_000)  # 74% again: below 80%, nothing
    assert warnings() == []
    # 497_300_000: eq 3_050_000, MM 2_486_500: 81.5%, a new warning
    k.tick(BTC, 497_300_000)
    assert warnings() == [(m.EV_MARGIN_WARNING, 3_050_000, 2_486_500, 8_152)]
    # closing the last cross trade ends the warning: at the bid 49,730, r = -2_700_000,
    # fee = 497_300_000 x 0.0005 = 248_650; balance 750_000 + 5_000_000 - 2_700_000 - 248_650
    k.close("u1", t.id)
    assert k.balance() == 2_801_350
    assert warnings() == [(m.EV_MARGIN_OK, 2_801_350, 0, 0)] and not k.acct().warned
    assert [e["type"] for e in k.events][-2:] == [m.EV_TRADE_CLOSED, m.EV_MARGIN_OK]
    sound(k)


@pytest.mark.unit
@BRUTE
def test_a_resting_order_reserve_can_raise_the_warning_and_its_cancel_clear_it(brute: bool) -> None:
    # short 0.1 BTC at 50,000, 100x cross: IM 500_000, fee 25_000, balance 49_475_000.
    k = kit(brute_force=brute)
    k.open_ok("u1", BTC, "short", Q01, 100)
    # at 90,000: u = -0.1 x 40,000 = -40_000_000; MM = 0.1 x 90,000 x 0.005 = 450_000
    # equity 49_475_000 + 500_000 - 40_000_000 = 9_975_000 (4.5%); available 49_475_000 - 40_000_000
    k.tick(BTC, 900_000_000)
    assert k.events == [] and not k.acct().warned
    # a buy of 0.471 ETH at 2,000, 1x (ETH is at 3,000: it rests) reserves IM 9_420_000 + fee 1_884:
    # equity 9_975_000 - 9_421_884 = 553_116 and 450_000 / 553_116 = 81.4%
    o = k.place_ok("u1", ETH, "long", 47_100_000, 20_000_000, 1)
    assert k.balance() == 49_475_000 - 9_421_884
    # the next tick of any market (the account has no SOL) looks at it: 4_500_000_000 // 553_116 = 8_135
    k.tick(SOL, 1_500_000)
    assert [(e["type"], e["equity"], e["margin_ratio_bps"]) for e in k.events] == [
        (m.EV_MARGIN_WARNING, 553_116, 8_135)]
    # the cancel gives the reserve back: 4.5% again, margin_ok (4_500_000_000 // 9_975_000 = 451)
    k.cancel("u1", o.id)
    k.tick(SOL, 1_500_000)
    assert [(e["type"], e["equity"], e["margin_ratio_bps"]) for e in k.events] == [
        (m.EV_MARGIN_OK, 9_975_000, 451)]
    sound(k)


@pytest.mark.unit
@BRUTE
def test_closing_an_isolated_trade_can_end_the_cross_warning(brute: bool) -> None:
    # $700: isolated SOL long 1 at 150, 1x: IM 1_500_000, fee 750; then cross BTC long 1 at
    # 50,000, 100x: IM 5_000_000, fee 250_000; balance 7_000_000 - 1_500_750 - 5_250_000 = 249_250.
    # Cross equity at BTC mark M: 249_250 + 5_000_000 + (M - 500_000_000); MM = ceil(M / 200).
    k = kit(starting_balance=7_000_000, brute_force=brute)
    sol = k.open_ok("u1", SOL, "long", 100_000_000, 1, mode="isolated")
    k.open_ok("u1", BTC, "long", 100_000_000, 100)
    assert k.balance() == 249_250
    k.tick(BTC, 497_700_000)  # eq 2_949_250, MM 2_488_500: 84.4%
    assert [e["type"] for e in k.events] == [m.EV_MARGIN_WARNING]
    k.tick(BTC, 497_900_000)  # eq 3_149_250, MM 2_489_500: 79.0%, still warned
    assert k.events == [] and k.acct().warned
    # closing the isolated trade at 150 returns IM 1_500_000 - fee 750 to the balance:
    # eq 4_648_500, 53.6%. The next tick of any market (ETH: not one the account trades) says so;
    # ratio 24_895_000_000 // 4_648_500 = 5_355
    k.close("u1", sol.id)
    k.tick(ETH, 30_000_000)
    assert [(e["type"], e["equity"], e["margin_ratio_bps"]) for e in k.events] == [
        (m.EV_MARGIN_OK, 4_648_500, 5_355)]
    sound(k)


@pytest.mark.unit
@BRUTE
def test_isolated_margin_cannot_come_from_what_backs_cross_losses(brute: bool) -> None:
    # the same $700 account: isolated SOL 1 at 150 (1x), cross BTC 1 at 50,000 (100x), balance 249_250
    k = kit(starting_balance=7_000_000, brute_force=brute)
    sol = k.open_ok("u1", SOL, "long", 100_000_000, 1, mode="isolated")
    k.open_ok("u1", BTC, "long", 100_000_000, 100)
    # BTC 49,790: eq 3_149_250, MM 2_489_500: 79.05% (5 MM = 12_447_500 < 4 eq = 12_597_000)
    k.tick(BTC, 497_900_000)
    assert k.events == [] and not k.acct().warned
    # the cross loss ($210) is more than the free balance ($24.925): nothing is available to move
    # into the isolated trade (moving $10 would have taken the cross ratio to 81.6%)
    before = k.core_bytes()
    refused(k, k.add_margin("u1", sol.id, 100_000), before, m.REJECTED,
            "more than the available balance 0 (free balance 249250 less")
    k.tick(ETH, 30_000_000)
    assert k.events == [] and not k.acct().warned
    sound(k)


@pytest.mark.unit
@BRUTE
def test_an_isolated_liquidation_can_end_the_cross_warning_on_its_tick(brute: bool) -> None:
    # SOL with a liquidation fee of 0.1% (below mmr 0.5%): an isolated liquidation returns money.
    # Isolated SOL long 100 at 150, 10x: IM 15_000_000, fee 75_000; cross BTC long 1 at 50,000,
    # 100x: IM 5_000_000, fee 250_000; balance 20_575_000 - 15_075_000 - 5_250_000 = 250_000.
    k = kit(starting_balance=20_575_000, brute_force=brute,
            markets=markets_with(**{SOL: {"liquidation_fee": 1_000}}))
    k.open_ok("u1", SOL, "long", 10_000_000_000, 10, mode="isolated")
    k.open_ok("u1", BTC, "long", 100_000_000, 100)
    assert k.balance() == 250_000
    k.tick(BTC, 497_700_000)  # eq 250_000 + 5_000_000 - 2_300_000 = 2_950_000, MM 2_488_500: 84.4%
    assert [e["type"] for e in k.events] == [m.EV_MARGIN_WARNING]
    k.tick(BTC, 497_900_000)  # eq 3_150_000, MM 2_489_500: 79.0%
    assert k.events == []
    # SOL 135.67: u = 100 x (135.67 - 150) = -14_330_000, IM + u = 670_000 <= MM ceil(678_350): liquidated;
    # fee 100 x 135.67 x 0.001 = 135_670; the balance gets 670_000 - 135_670 = 534_330.
    # cross eq 3_684_330, 67.6%: margin_ok on this very tick (24_895_000_000 // 3_684_330 = 6_756:
    # 3_684_330 x 6_757 = 24_895_017_810 is just over)
    k.tick(SOL, 1_356_700)
    assert [c["reason"] for c in k.closes()] == ["liquidation"]
    assert k.balance() == 784_330
    assert [(e["type"], e["equity"], e["margin_ratio_bps"]) for e in k.events
            if e["type"] in (m.EV_MARGIN_OK, m.EV_MARGIN_WARNING)] == [(m.EV_MARGIN_OK, 3_684_330, 6_756)]
    sound(k)


# ============================================================== a recorded day
SEED = 20_240_601
DAY0 = 86_400_000  # midnight of day 1 (stream time)
MINUTE = 60_000
JUMPS = {(6 * 60 + 17, BTC): -700, (13 * 60 + 5, ETH): 900, (19 * 60 + 40, SOL): -1_500, (21 * 60, BTC): 500}


class Day:
    """A scripted, deterministic day: 24 h of 1-minute ticks for three markets
    (a seeded integer random walk with a few jumps, hourly funding rates) and
    users who trade at market, rest limit orders, set TP/SL, add margin and
    reduce. Everything depends only on the seed and on the engine's replies."""

    def __init__(self, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.k = Kit(MARKETS)
        self.mid = {BTC: 600_000_000, ETH: 30_000_000, SOL: 1_500_000}
        self.rate = {BTC: 0, ETH: 0, SOL: 0}
        self.replies: list[dict[str, Any]] = []
        self.n = 0

    def cmd(self, typ: str, **fields: Any) -> dict[str, Any]:
        self.n += 1
        rep = self.k.send({"type": typ, "id": f"day-{self.n}", **fields})
        assert rep is not None and (rep["ok"] or rep["code"] in (m.INVALID, m.REJECTED, m.NOT_FOUND)), rep
        self.replies.append(rep)
        return rep

    def tick(self, sym: str, minute: int) -> None:
        spec = MARKETS[sym]
        bps = self.rng.randint(-15, 15) + JUMPS.get((minute, sym), 0)
        mid = self.mid[sym] * (10_000 + bps) // 10_000 // spec.tick_size * spec.tick_size
        self.mid[sym] = mid
        half = spec.tick_size * self.rng.randint(1, 3)
        self.k.tick(sym, mid - half, mid + half, mid + self.rng.randint(-50, 50), funding_rate=self.rate[sym])

    def touch(self, sym: str, side: str) -> int:
        px = self.k.state.prices[sym]
        return px.ask if side == "long" else px.bid

    def qty(self, sym: str, dollars: int) -> int:
        """About $dollars of notional, on the market's step."""
        step = MARKETS[sym].qty_step
        return max(step, dollars * 10_000 * 100_000_000 // self.mid[sym] // step * step)

    def open(self, uid: str, sym: str, side: str, dollars: int, lev: int, **kw: Any) -> dict[str, Any]:
        return self.cmd(m.OPEN, user_id=uid, market=sym, side=side, qty=self.qty(sym, dollars), leverage=lev,
                        slippage_bps=10, price=self.touch(sym, side), **kw)

    def users(self, minute: int) -> None:
        rng, k = self.rng, self.k
        syms = (BTC, ETH, SOL)
        # the maker: post-only quotes 0.3% off the touch, good for 2 h; cancels the oldest now and then
        if minute % 20 == 3:
            sym, side = rng.choice(syms), rng.choice(("long", "short"))
            tick = MARKETS[sym].tick_size
            px = k.state.prices[sym]
            limit = (px.bid * 997 // 1000 if side == "long" else px.ask * 1003 // 1000) // tick * tick
            self.cmd(m.PLACE_ORDER, user_id="maker", market=sym, side=side, qty=self.qty(sym, 800),
                     limit_price=limit, leverage=5, margin_mode=rng.choice(("cross", "isolated")), post_only=True,
                     expires_ms=k.now + 2 * HOUR)
        if minute % 90 == 45 and k.acct("maker").orders:
            self.cmd(m.CANCEL_ORDER, user_id="maker", order_id=next(iter(k.acct("maker").orders)))
        # the trader: market trades with TP/SL 1% away, moved later
        if minute % 37 == 11 and len(k.acct("trader").trades) < 3:
            sym, side = rng.choice(syms), rng.choice(("long", "short"))
            s = 1 if side == "long" else -1
            p, tick = self.touch(sym, side), MARKETS[sym].tick_size
            self.open("trader", sym, side, 3_000, 10, take_profit=p * (1000 + 10 * s) // 1000 // tick * tick,
                      stop_loss=p * (1000 - 10 * s) // 1000 // tick * tick)
        if minute % 53 == 29 and k.acct("trader").trades:
            t = rng.choice(list(k.acct("trader").trades.values()))
            tick = MARKETS[t.market].tick_size
            self.cmd(m.SET_TPSL, user_id="trader", trade_id=t.id,
                     take_profit=rng.choice([None, t.entry * (1000 + 15 * t.side) // 1000 // tick * tick]))
        # the isolated one: 25x, adds margin an hour later, and rests a reduce-only half at +0.5%
        if minute % 120 == 60:
            sym, side = rng.choice(syms), rng.choice(("long", "short"))
            rep = self.open("iso", sym, side, 4_000, 25, margin_mode="isolated")
            if rep["ok"]:
                t = rep["data"]["trade"]
                tick, step = MARKETS[sym].tick_size, MARKETS[sym].qty_step
                self.cmd(m.PLACE_ORDER, user_id="iso", market=sym, side="short" if t["side"] > 0 else "long",
                         qty=t["qty"] // 2 // step * step or step, reduce_trade_id=t["id"],
                         limit_price=t["entry"] * (1000 + 5 * t["side"]) // 1000 // tick * tick)
        if minute % 120 == 0 and k.acct("iso").trades:
            t = next(iter(k.acct("iso").trades.values()))
            self.cmd(m.ADD_MARGIN, user_id="iso", trade_id=t.id, amount=rng.randint(1, 500) * 1_000)
        # the gambler: 50x cross BTC before the jump at 06:17; reset in the evening
        if minute == 6 * 60:
            self.open("gambler", BTC, "long", 40_000, 50)
        if minute == 18 * 60:
            self.cmd(m.RESET_ACCOUNT, user_id="gambler")
        if minute % 30 == 15 and not k.acct("gambler").trades and 8 * 60 < minute < 23 * 60:
            self.open("gambler", rng.choice(syms), rng.choice(("long", "short")), 40_000, 50)
        # the edge: a 100x cross trade that lives near its margin limit
        if minute % 45 == 20 and not k.acct("edge").trades:
            bal = k.balance("edge")
            self.open("edge", ETH, rng.choice(("long", "short")), bal * 90 // 10_000, 100)
        # the closer: opens, closes a third twice, then the rest
        if minute % 60 == 30:
            self.open("closer", rng.choice(syms), rng.choice(("long", "short")), 6_000, 5)
        if minute % 60 in (40, 50, 55) and k.acct("closer").trades:
            t = next(iter(k.acct("closer").trades.values()))
            step = MARKETS[t.market].qty_step
            part = max(step, t.qty // 3 // step * step) if minute % 60 != 55 else None
            self.cmd(m.CLOSE, user_id="closer", trade_id=t.id, **({"qty": part} if part else {}))

    def run(self) -> Day:
        self.k.now = DAY0
        for sym in (BTC, ETH, SOL):
            self.k.tick(sym, self.mid[sym], at=DAY0)
        for uid in ("maker", "trader", "iso", "gambler", "edge", "closer"):
            self.cmd(m.CREATE_ACCOUNT, user_id=uid)
        for minute in range(1, 24 * 60 + 1):
            if minute % 60 == 1:  # new hourly funding rates (1e-9), within +-0.003%
                self.rate = {sym: self.rng.randint(-30_000, 30_000) for sym in self.rate}
            self.k.now = DAY0 + minute * MINUTE
            for sym in (BTC, ETH, SOL):
                self.tick(sym, minute)
            self.users(minute)
            assert self.k.invariants() == []
        return self


@pytest.fixture(scope="module")
def day() -> Day:
    return Day().run()


@pytest.mark.unit
def test_recorded_day_is_deterministic(day: Day) -> None:
    again = Day().run()
    assert again.k.log == day.k.log  # the same inputs (the script reads the engine's replies)
    assert again.replies == day.replies
    assert m.encode_canonical(again.k.ledger()) == m.encode_canonical(day.k.ledger())
    assert m.encode_canonical(again.k.history) == m.encode_canonical(day.k.history)
    assert again.k.snapshot_bytes() == day.k.snapshot_bytes()


@pytest.mark.unit
def test_recorded_day_replays_from_the_log_and_from_a_noon_snapshot(day: Day) -> None:
    fresh = Engine(MARKETS)
    events: list[dict[str, Any]] = []
    noon: bytes | None = None
    noon_at = 0
    for i, (entry, at, msg) in enumerate(day.k.log):
        if noon is None and at >= DAY0 + 12 * HOUR:
            noon, noon_at = state_bytes(fresh.state), i
        events += fresh.apply(entry, at, msg)[1]
    assert m.encode_canonical(events) == m.encode_canonical(day.k.history)
    assert state_bytes(fresh.state) == day.k.snapshot_bytes()
    assert noon is not None
    from_noon = restore(EngineState.from_snapshot(m.decode(noon)))
    tail: list[dict[str, Any]] = []
    for entry, at, msg in day.k.log[noon_at:]:
        tail += from_noon.apply(entry, at, msg)[1]
    assert state_bytes(from_noon.state) == day.k.snapshot_bytes()
    assert m.encode_canonical(tail) == m.encode_canonical(events[len(events) - len(tail):])


@pytest.mark.unit
def test_recorded_day_balances_rebuild_from_the_ledger_and_money_is_conserved(day: Day) -> None:
    k = day.k
    for uid, acct in k.state.accounts.items():
        running = 0
        for e in k.ledger(uid):
            running += e["amount"]
            assert e["balance_after"] == running >= 0
        assert running == acct.balance, uid
    t = k.state.totals()
    assert t["deposits"] + t["house_net_payout"] == t["balances"] + t["margins"] + t["reserved"] + t["insurance"]
    assert k.invariants() == []
    # the day did exercise what it is meant to
    reasons = {e["reason"] for e in k.ever(m.EV_TRADE_CLOSED)}
    assert {"liquidation", "close", "limit_close", "reset"} <= reasons
    assert reasons & {"take_profit", "stop_loss"}
    orders = {e["reason"] for e in k.ever(m.EV_ORDER_CLOSED)}
    assert {"filled", "cancelled", "expired"} <= orders
    assert k.ledger(kind="funding") and k.ever(m.EV_MARGIN_DEBIT, kind="funding")
    assert k.ever(m.EV_TPSL_CHANGED) and k.ledger(kind="margin_lock")
    assert k.ever(m.EV_MARGIN_WARNING)
