"""Limit orders, hand-worked: reserve, fill, cancel, expiry, post-only,
marketable limits, reduce-only, and who may cancel what.

Units: money and prices in 1e-4 USD ($1 = 10_000), qty in 1e-8 base units
(0.1 BTC = 10_000_000), rates in ppm. Default markets: maker fee 200 ppm
(2 bps), taker fee 500 ppm (5 bps), mmr 5000 ppm; BTC tick $0.1 = 1_000; ETH
tick $0.01 = 100, step 0.001 ETH = 100_000. Starting balance $5,000.
Every expected number is worked out in the comment above it; none is taken
from the engine.

    IM        = ceil(q * limit / (1e8 * L))      (reserved at placement)
    maker fee = ceil(q * limit * 200 / 1e14)     (reserved at placement)
    taker fee = ceil(q * P * 500 / 1e14)
    pnl       = floor(s * q * (P - E) / 1e8)
"""

from __future__ import annotations

from typing import Any

import pytest

from opex_common import messages as m
from tests.engine.kit import BTC, ETH, SOL, T0, Kit, restore, state_bytes

pytestmark = pytest.mark.unit

START = 50_000_000  # $5,000
Q01 = 10_000_000  # 0.1 BTC
BID, ASK = 500_000_000, 500_100_000  # 50,000.0 / 50,010.0
BRUTE = pytest.mark.parametrize("brute", [False, True], ids=["indexed", "brute"])


def kit(*, users: tuple[str, ...] = ("u1",), bid: int = BID, ask: int = ASK, **kw: Any) -> Kit:
    """BTC at bid 50,000 / ask 50,010 (mark the mid 50,005), ETH 3,000, SOL 150; accounts."""
    k = Kit(**kw)
    k.tick(BTC, bid, ask)
    k.tick(ETH, 30_000_000)
    k.tick(SOL, 1_500_000)
    for uid in users:
        k.account(uid)
    return k


def sound(k: Kit) -> None:
    assert k.invariants() == []
    t = k.state.totals()
    assert t["deposits"] + t["house_net_payout"] == t["balances"] + t["margins"] + t["reserved"] + t["insurance"]


def ledger(k: Kit) -> list[tuple[str, int]]:
    return [(e["kind"], e["amount"]) for e in k.of_type(m.EV_LEDGER)]


# ============================================================== placing and resting
@pytest.mark.unit
def test_limit_buy_reserves_exactly_im_plus_maker_fee() -> None:
    k = kit()
    rep = k.place("u1", BTC, "long", Q01, 499_000_000, 10)  # buy 0.1 BTC at 49,900, 10x
    assert rep["ok"] and rep["message"] == "Order placed"
    o = rep["data"]["order"]
    # notional 0.1 x 49,900 = $4,990 = 49_900_000; IM = 49_900_000 / 10 = 4_990_000
    # maker fee = 49_900_000 x 0.0002 = $0.998 = 9_980
    assert (o["reserved_margin"], o["reserved_fee"]) == (4_990_000, 9_980)
    assert (o["limit_price"], o["side"], o["qty"], o["leverage"], o["margin_mode"]) == (499_000_000, 1, Q01, 10,
                                                                                        "cross")
    assert (o["reduce_only"], o["expires_ms"], o["placed_ms"]) == (False, None, T0)
    # balance = 50_000_000 - 4_999_980
    assert rep["data"]["balance"] == k.balance() == 45_000_020
    assert ledger(k) == [("order_reserve", -4_999_980)]
    assert k.of_type(m.EV_LEDGER)[0]["balance_after"] == 45_000_020
    assert [e["type"] for e in k.events] == [m.EV_LEDGER, m.EV_ORDER_PLACED]
    assert k.state.totals()["reserved"] == 4_999_980
    assert k.state.house_net_payout == 0  # nothing is earned until it fills
    assert k.acct().trades == {}
    assert k.engine.account_view(k.acct())["orders"] == [k.order("u1", o["id"]).public()]
    sound(k)


@pytest.mark.unit
def test_maker_fee_and_margin_round_up() -> None:
    k = kit()
    # buy 0.001 ETH at 2,999.99, 7x: notional 100_000 x 29_999_900 / 1e8 = 29_999.9 units
    # IM = 29_999.9 / 7 = 4_285.7 -> 4_286; fee = 29_999.9 x 0.0002 = 5.99998 -> 6
    o = k.place_ok("u1", ETH, "long", 100_000, 29_999_900, 7)
    assert (o.reserved_margin, o.reserved_fee) == (4_286, 6)
    assert k.balance() == START - 4_292
    sound(k)


@pytest.mark.unit
@BRUTE
def test_limit_buy_fills_at_the_limit_when_the_ask_reaches_it(brute: bool) -> None:
    k = kit(brute_force=brute)
    o = k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10)  # reserves 4_990_000 + 9_980
    # the ask one tick above the limit (49,900.1): nothing
    assert k.tick(BTC, 498_900_000, 499_001_000) == []
    assert o.id in k.acct().orders and k.acct().trades == {}
    # the ask at the limit: fills at 49,900 as a maker
    k.tick(BTC, 498_900_000, 499_000_000)
    (opened,) = k.of_type(m.EV_TRADE_OPENED)
    (closed,) = k.of_type(m.EV_ORDER_CLOSED)
    t = k.trade("u1", opened["trade"]["id"])
    assert (closed["reason"], closed["trade_id"]) == ("filled", t.id)
    assert (opened["fee"], opened["maker"]) == (9_980, True)
    assert (t.side, t.qty, t.entry, t.leverage, t.mode) == (1, Q01, 499_000_000, 10, "cross")
    # the reserve becomes the trade's margin; the reserved fee goes to the house
    assert (t.margin, t.fees) == (4_990_000, 9_980)
    assert k.acct().orders == {} and k.state.totals()["reserved"] == 0
    assert k.balance() == 45_000_020  # unchanged: the fill moves reserved money, not free cash
    assert k.of_type(m.EV_LEDGER) == []
    assert k.state.house_net_payout == -9_980 and k.acct().fees_paid == 9_980
    sound(k)


@pytest.mark.unit
def test_limit_buy_gapped_through_still_fills_at_the_limit() -> None:
    k = kit()
    k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10)
    k.tick(BTC, 489_000_000, 490_000_000)  # the ask gaps to 49,000
    (opened,) = k.of_type(m.EV_TRADE_OPENED)
    assert opened["trade"]["entry"] == 499_000_000  # the limit, not the better ask
    sound(k)


@pytest.mark.unit
@BRUTE
def test_limit_sell_fills_when_the_bid_reaches_it(brute: bool) -> None:
    k = kit(brute_force=brute)
    o = k.place_ok("u1", BTC, "short", Q01, 501_000_000, 10)  # sell 0.1 at 50,100
    # IM = 0.1 x 50,100 / 10 = $501 = 5_010_000; fee = $5,010 x 0.0002 = $1.002 = 10_020
    assert (o.reserved_margin, o.reserved_fee) == (5_010_000, 10_020)
    assert k.balance() == START - 5_020_020
    # a rising ask does not fill a sell; the bid one tick under the limit does not either
    assert k.tick(BTC, 500_999_000, 502_000_000) == []
    k.tick(BTC, 501_000_000, 501_100_000)
    (opened,) = k.of_type(m.EV_TRADE_OPENED)
    t = k.trade("u1", opened["trade"]["id"])
    assert (t.side, t.entry, t.margin, t.fees) == (-1, 501_000_000, 5_010_000, 10_020)
    assert k.state.house_net_payout == -10_020
    sound(k)


@pytest.mark.unit
def test_insufficient_balance_for_the_reserve_is_refused() -> None:
    k = kit(starting_balance=5_000_000)  # $500
    before = k.core_bytes()
    # buy 0.1 at 49,999.9, 10x: IM = 0.1 x 49,999.9 / 10 = 4_999_990;
    # fee = 49_999_900 x 0.0002 = 9_999.98 -> 10_000; 5_009_990 > 5_000_000: refused
    rep = k.place("u1", BTC, "long", Q01, 499_999_000, 10)
    assert rep["code"] == m.REJECTED and "reserves 5009990" in rep["message"]
    assert k.core_bytes() == before
    # at 49,900 it reserves 4_990_000 + 9_980 = 4_999_980 <= 5_000_000: fits, 20 left
    assert k.place("u1", BTC, "long", Q01, 499_000_000, 10)["ok"]
    assert k.balance() == 20
    sound(k)


@pytest.mark.unit
@pytest.mark.parametrize(("field", "value", "code", "words"), [
    ("limit_price", 499_000_500, m.INVALID, "multiple of the tick size 1000"),
    ("limit_price", 0, m.INVALID, "limit_price must be an integer"),
    ("qty", 15_000, m.INVALID, "positive multiple of 10000"),
    ("side", "buy", m.INVALID, "side must be"),
    ("side", ["long"], m.INVALID, "side must be"),  # unhashable: once a TypeError out of apply()
    ("margin_mode", ["cross"], m.INVALID, "margin_mode must be"),
    ("margin_mode", "portfolio", m.INVALID, "margin_mode must be"),
    ("leverage", 101, m.INVALID, "leverage must be"),
    ("post_only", "yes", m.INVALID, "post_only must be true or false"),
    ("expires_ms", T0, m.INVALID, "expires_ms is already in the past"),
    ("market", "DOGE_USDC_PERP", m.INVALID, "unknown market"),
    ("user_id", "nobody", m.NOT_FOUND, "account not found"),
])
def test_bad_order_is_refused_and_changes_nothing(field: str, value: object, code: str, words: str) -> None:
    k = kit()
    before = k.core_bytes()
    msg = {"type": m.PLACE_ORDER, "id": "bad", "user_id": "u1", "market": BTC, "side": "long", "qty": Q01,
           "limit_price": 499_000_000, "leverage": 10, field: value}
    rep = k.send(msg)
    assert rep is not None and rep["code"] == code and words in rep["message"], rep
    assert k.events == [] and k.core_bytes() == before


# ============================================================== cancel
@pytest.mark.unit
def test_cancel_releases_exactly_what_was_reserved() -> None:
    k = kit()
    o = k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10)
    assert k.balance() == 45_000_020
    rep = k.cancel("u1", o.id)
    assert rep["ok"] and rep["message"] == "Order cancelled"
    # 4_990_000 + 9_980 back: the balance is whole again
    assert ledger(k) == [("order_release", 4_999_980)]
    assert k.balance() == rep["data"]["balance"] == START
    (closed,) = k.of_type(m.EV_ORDER_CLOSED)
    assert closed["reason"] == "cancelled"
    assert k.acct().orders == {} and k.state.totals()["reserved"] == 0 and k.state.house_net_payout == 0
    # gone: a second cancel, or a tick through the limit, does nothing
    assert k.cancel("u1", o.id)["code"] == m.NOT_FOUND
    assert k.tick(BTC, 489_000_000, 490_000_000) == []
    sound(k)


@pytest.mark.unit
def test_cancelling_someone_elses_order_is_not_found_and_changes_nothing() -> None:
    k = kit(users=("u1", "u2"))
    theirs = k.place_ok("u2", BTC, "long", Q01, 499_000_000, 10)
    before = k.core_bytes()
    rep = k.cancel("u1", theirs.id)
    assert (rep["code"], rep["status"], rep["message"]) == (m.NOT_FOUND, 404, "order not found")
    assert k.events == [] and k.core_bytes() == before
    assert theirs.id in k.acct("u2").orders and k.balance("u2") == 45_000_020
    unknown = k.cancel("u1", "00000000-0000-4000-8000-000000000000")
    assert unknown["code"] == m.NOT_FOUND
    sound(k)


@pytest.mark.unit
def test_a_filled_order_cannot_be_cancelled() -> None:
    k = kit()
    o = k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10)
    k.tick(BTC, 499_000_000)
    before = k.core_bytes()
    assert k.cancel("u1", o.id)["code"] == m.NOT_FOUND
    assert k.core_bytes() == before and len(k.acct().trades) == 1


@pytest.mark.unit
def test_place_order_retry_reserves_once() -> None:
    k = kit()
    msg = {"type": m.PLACE_ORDER, "id": "once", "user_id": "u1", "market": BTC, "side": "long", "qty": Q01,
           "limit_price": 499_000_000, "leverage": 10}
    first = k.send(msg)
    assert first is not None and first["ok"]
    assert k.send(msg) == first and k.events == []
    assert k.balance() == 45_000_020 and len(k.acct().orders) == 1


# ============================================================== expiry
@pytest.mark.unit
@BRUTE
def test_expiry_releases_on_the_first_tick_at_or_after_expires_ms(brute: bool) -> None:
    k = kit(brute_force=brute)
    expires = T0 + 60_000
    o = k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10, expires_ms=expires)
    assert o.expires_ms == expires
    k.tick(BTC, BID, ASK, at=expires - 1)  # still good
    assert o.id in k.acct().orders and k.events == []
    k.wait(30_000)  # no input at expires_ms itself; time passes silently
    assert o.id in k.acct().orders
    # the first tick at or after expires_ms (any market) expires it and releases the reserve
    k.tick(ETH, 30_000_000, at=expires + 5_000)
    assert ledger(k) == [("order_release", 4_999_980)]
    (closed,) = k.of_type(m.EV_ORDER_CLOSED)
    assert closed["reason"] == "expired"
    assert k.acct().orders == {} and k.balance() == START
    sound(k)


@pytest.mark.unit
def test_expiry_wins_over_a_fill_on_the_tick_at_expires_ms() -> None:
    k = kit()
    expires = T0 + 60_000
    k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10, expires_ms=expires)
    k.tick(BTC, 489_000_000, 490_000_000, at=expires)  # good till expires_ms, not through it
    assert [e["reason"] for e in k.of_type(m.EV_ORDER_CLOSED)] == ["expired"]
    assert k.acct().trades == {} and k.balance() == START
    sound(k)


@pytest.mark.unit
def test_expiry_survives_a_snapshot() -> None:
    k = kit()
    expires = T0 + 60_000
    k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10, expires_ms=expires)
    again = restore(k.state)  # the expiry heap is derived: rebuilt from the orders on load
    msg = {"type": m.TICK, "market": SOL, "bid": 1_500_000, "ask": 1_500_000, "mark": 1_500_000}
    k.send(msg, at=expires)
    _, events = again.apply(k.log[-1][0], expires, msg)
    assert [e["reason"] for e in events if e["type"] == m.EV_ORDER_CLOSED] == ["expired"]
    assert m.encode_canonical(events) == m.encode_canonical(k.events)
    assert state_bytes(again.state) == k.snapshot_bytes()
    assert again.state.accounts["u1"].balance == k.balance() == START


# ============================================================== post-only, marketable
@pytest.mark.unit
@pytest.mark.parametrize(("side", "limit"), [
    ("long", ASK),  # a buy at the ask would take it
    ("long", 501_000_000),  # above the ask
    ("short", BID),  # a sell at the bid would take it
    ("short", 499_000_000),
])
def test_post_only_refused_when_marketable(side: str, limit: int) -> None:
    k = kit()
    before = k.core_bytes()
    rep = k.place("u1", BTC, side, Q01, limit, 10, post_only=True)
    assert (rep["code"], rep["status"]) == (m.REJECTED, 409)
    assert "post-only" in rep["message"]
    assert k.events == [] and k.core_bytes() == before


@pytest.mark.unit
@pytest.mark.parametrize(("side", "limit"), [("long", ASK - 1_000), ("short", BID + 1_000)])
def test_post_only_one_tick_inside_rests(side: str, limit: int) -> None:
    k = kit()
    o = k.place_ok("u1", BTC, side, Q01, limit, 10, post_only=True)
    assert o.limit == limit and k.acct().trades == {}


@pytest.mark.unit
def test_marketable_limit_buy_fills_at_once_at_the_ask_as_taker() -> None:
    k = kit()
    rep = k.place("u1", BTC, "long", Q01, 501_000_000, 10)  # limit 50,100 >= ask 50,010
    assert rep["ok"] and "trade" in rep["data"] and k.acct().orders == {}
    t = k.trade("u1", rep["data"]["trade"]["id"])
    # fills at the touch (the ask 50,010), better than the limit
    # IM = 0.1 x 50,010 / 10 = 5_001_000; taker fee = $5,001 x 0.0005 = 2.5005 = 25_005
    assert (t.entry, t.margin, t.fees) == (500_100_000, 5_001_000, 25_005)
    assert ledger(k) == [("margin_lock", -5_001_000), ("fee", -25_005)]
    assert k.balance() == START - 5_026_005
    assert k.of_type(m.EV_ORDER_PLACED) == []
    sound(k)


@pytest.mark.unit
def test_marketable_limit_sell_fills_at_once_at_the_bid_as_taker() -> None:
    k = kit()
    rep = k.place("u1", BTC, "short", Q01, BID, 10, mode="isolated")  # limit == bid: marketable
    t = k.trade("u1", rep["data"]["trade"]["id"])
    # at the bid 50,000: IM 5_000_000; taker fee $5,000 x 0.0005 = 25_000
    assert (t.side, t.entry, t.margin, t.fees, t.mode) == (-1, BID, 5_000_000, 25_000, "isolated")
    assert k.balance() == START - 5_025_000
    sound(k)


@pytest.mark.unit
def test_marketable_limit_on_a_stale_price_is_refused() -> None:
    k = kit()
    k.send({"type": m.STALE, "market": BTC})
    before = k.core_bytes()
    rep = k.place("u1", BTC, "long", Q01, 501_000_000, 10)
    assert rep["code"] == m.REJECTED and "stale" in rep["message"]
    assert k.core_bytes() == before
    assert k.place("u1", BTC, "long", Q01, 499_000_000, 10)["ok"]  # a resting one may wait


# ============================================================== reduce-only
def kit_long(mode: str = "cross") -> tuple[Kit, str]:
    """Zero spread BTC 50,000; u1 long 0.1 BTC 10x: IM 5_000_000, fee 25_000,
    balance 50_000_000 - 5_025_000 = 44_975_000."""
    k = kit(bid=BID, ask=BID)
    t = k.open_ok("u1", BTC, "long", Q01, 10, mode=mode)
    assert (t.entry, t.margin, k.balance()) == (BID, 5_000_000, 44_975_000)
    return k, t.id


@pytest.mark.unit
@BRUTE
def test_reduce_only_closes_part_at_the_limit_with_the_maker_fee(brute: bool) -> None:
    k = kit(bid=BID, ask=BID, brute_force=brute)
    t = k.open_ok("u1", BTC, "long", Q01, 10)
    o = k.place_ok("u1", BTC, "short", 4_000_000, 510_000_000, None, mode=None, reduce_trade_id=t.id)
    # reserves nothing: it can only close
    assert (o.reserved_margin, o.reserved_fee, k.balance()) == (0, 0, 44_975_000)
    assert k.order("u1", o.id).public()["reduce_only"] is True
    assert k.tick(BTC, 509_999_000, 510_100_000) == []  # the bid one tick under 51,000
    k.tick(BTC, 510_000_000, 510_100_000)
    (c,) = k.closes()
    # closes 0.04 at 51,000: r = 0.04 x 1,000 = $40 = 400_000
    # maker fee = 0.04 x 51,000 x 0.0002 = $0.408 = 4_080; IM released 5_000_000 x 4/10 = 2_000_000
    assert (c["reason"], c["close_price"], c["closed_qty"], c["pnl"], c["fee"]) == (
        "limit_close", 510_000_000, 4_000_000, 400_000, 4_080)
    assert (t.qty, t.margin, c["remaining_qty"]) == (6_000_000, 3_000_000, 6_000_000)
    assert k.balance() == 44_975_000 + 2_000_000 + 400_000 - 4_080 == 47_370_920
    assert [e["reason"] for e in k.of_type(m.EV_ORDER_CLOSED)] == ["filled"]
    assert k.acct().orders == {}
    sound(k)


@pytest.mark.unit
def test_reduce_only_is_capped_at_what_is_left_of_the_trade() -> None:
    k, tid = kit_long()
    k.place_ok("u1", BTC, "short", Q01, 510_000_000, None, mode=None, reduce_trade_id=tid)
    # partial close 0.06 at the bid 50,000: r 0, fee $3,000 x 0.0005 = 15_000, IM back 3_000_000
    assert k.close("u1", tid, qty=6_000_000)["ok"]
    assert k.balance() == 44_975_000 + 3_000_000 - 15_000 == 47_960_000
    k.tick(BTC, 510_000_000)
    (c,) = k.closes()
    # the order was for 0.1, the trade has 0.04 left: closes 0.04 at 51,000
    # r = 0.04 x 1,000 = 400_000; fee = 4_080; the last 2_000_000 of IM back
    assert (c["closed_qty"], c["remaining_qty"], c["pnl"], c["fee"]) == (4_000_000, 0, 400_000, 4_080)
    assert k.acct().trades == {} and k.acct().orders == {}
    assert k.balance() == 47_960_000 + 2_000_000 + 400_000 - 4_080 == 50_355_920
    sound(k)


@pytest.mark.unit
@pytest.mark.parametrize("how", ["close", "liquidation", "reset"])
def test_reduce_only_dropped_when_its_trade_is_closed(how: str) -> None:
    k, tid = kit_long("isolated" if how == "liquidation" else "cross")
    o = k.place_ok("u1", BTC, "short", 5_000_000, 510_000_000, None, mode=None, reduce_trade_id=tid)
    if how == "close":
        k.close("u1", tid)
    elif how == "liquidation":
        # isolated 10x long at 50,000 liquidates near 45,226 (see test_mechanics)
        k.tick(BTC, 450_000_000)
        assert [c["reason"] for c in k.closes()] == ["liquidation"]
    else:
        k.cmd(m.RESET_ACCOUNT, user_id="u1")
    (closed,) = k.of_type(m.EV_ORDER_CLOSED)
    assert (closed["order"]["id"], closed["reason"]) == (o.id, "cancelled" if how == "reset" else "trade_closed")
    assert k.acct().orders == {} and k.of_type(m.EV_LEDGER, kind="order_release") == []
    assert k.tick(BTC, 520_000_000) == []  # nothing left to fill
    sound(k)


@pytest.mark.unit
def test_reduce_only_marketable_closes_at_once_at_the_touch_as_taker() -> None:
    k, tid = kit_long()
    k.tick(BTC, 505_000_000, 505_100_000)  # bid 50,500
    rep = k.place("u1", BTC, "short", 4_000_000, 500_000_000, None, mode=None, reduce_trade_id=tid)
    assert rep["ok"] and rep["message"] == "Reduce-only order filled at once"
    d = rep["data"]
    # at the bid 50,500 (better than the limit): r = 0.04 x 500 = $20 = 200_000
    # taker fee = 0.04 x 50,500 x 0.0005 = $1.01 = 10_100
    assert (d["close_price"], d["closed_qty"], d["pnl"], d["fee"]) == (505_000_000, 4_000_000, 200_000, 10_100)
    assert k.acct().orders == {}
    sound(k)


@pytest.mark.unit
@pytest.mark.parametrize(("change", "code", "words"), [
    ({"qty": Q01 + 10_000}, m.INVALID, "larger than the trade's"),
    ({"side": "long"}, m.INVALID, "opposite side"),
    # once accepted: it rested in SOL, filled at SOL's price and closed the BTC trade there
    ({"market": SOL, "qty": 1_000_000, "limit_price": 1_600_000}, m.INVALID, "in its trade's market"),
    ({"reduce_trade_id": "00000000-0000-4000-8000-000000000000"}, m.NOT_FOUND, "trade not found"),
    ({"reduce_trade_id": ""}, m.INVALID, "reduce_trade_id must be"),
])
def test_bad_reduce_only_is_refused(change: dict[str, Any], code: str, words: str) -> None:
    k, tid = kit_long()
    before = k.core_bytes()
    msg = {"type": m.PLACE_ORDER, "id": "r", "user_id": "u1", "market": BTC, "side": "short", "qty": 4_000_000,
           "limit_price": 510_000_000, "reduce_trade_id": tid, **change}
    rep = k.send(msg)
    assert rep is not None and rep["code"] == code and words in rep["message"], rep
    assert k.core_bytes() == before


@pytest.mark.unit
def test_reduce_only_of_someone_elses_trade_is_not_found() -> None:
    k = kit(bid=BID, ask=BID, users=("u1", "u2"))
    theirs = k.open_ok("u2", BTC, "long", Q01, 10)
    before = k.core_bytes()
    rep = k.place("u1", BTC, "short", Q01, 510_000_000, None, mode=None, reduce_trade_id=theirs.id)
    assert rep["code"] == m.NOT_FOUND and k.core_bytes() == before


# ============================================================== fills in the engine's books
@pytest.mark.unit
@BRUTE
def test_one_tick_fills_every_crossed_order_and_an_isolated_fill_liquidates_alone(brute: bool) -> None:
    k = kit(users=("u1", "u2"), brute_force=brute)
    a = k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10, mode="isolated")
    b = k.place_ok("u2", BTC, "long", Q01, 498_000_000, 10)
    k.tick(BTC, 497_000_000, 497_900_000)  # the ask 49,790 crosses both limits
    assert sorted(e["order"]["id"] for e in k.of_type(m.EV_ORDER_CLOSED)) == sorted([a.id, b.id])
    (iso,) = k.acct("u1").trades.values()
    # isolated long 0.1 at 49,900, IM 4_990_000: IM + u <= MM when
    # 4_990_000 + 0.1 (M - 499_000_000) <= M x 0.1 x 0.005, M <= 451_356_783.9 (about 45,135.7)
    assert iso.mode == "isolated" and iso.margin == 4_990_000
    k.tick(BTC, 452_000_000)
    assert k.closes() == []
    k.tick(BTC, 451_000_000)
    (c,) = k.closes()
    assert (c["trade"]["id"], c["reason"]) == (iso.id, "liquidation")
    assert len(k.acct("u2").trades) == 1  # the cross one at 49,800 is far from its own
    sound(k)


@pytest.mark.unit
def test_resting_orders_survive_a_snapshot_and_fill_the_same() -> None:
    k = kit(users=("u1", "u2"))
    k.place_ok("u1", BTC, "long", Q01, 499_000_000, 10)
    k.place_ok("u2", BTC, "short", Q01, 501_000_000, 5, mode="isolated", expires_ms=T0 + 10**7)
    again = restore(k.state)
    assert state_bytes(again.state) == k.snapshot_bytes()
    for bid, ask in ((498_000_000, 499_000_000), (501_000_000, 501_500_000)):
        msg = {"type": m.TICK, "market": BTC, "bid": bid, "ask": ask, "mark": (bid + ask) // 2}
        k.send(msg, at=k.now + 1_000)
        _, events = again.apply(k.log[-1][0], k.now, msg)
        assert m.encode_canonical(events) == m.encode_canonical(k.events)
        assert len(k.of_type(m.EV_TRADE_OPENED)) == 1
    assert state_bytes(again.state) == k.snapshot_bytes()
    sound(k)
