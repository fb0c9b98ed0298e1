"""The pusher's input validation and output frames, without any I/O."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opex_common.markets import DEFAULT_MARKETS
from opex_common.views import account_health
from opex_engine.pusher import frames
from opex_engine.pusher.registry import parse_change, parse_registration
from tests.ws.support import BTC, ETH, price

pytestmark = pytest.mark.unit
M = DEFAULT_MARKETS


def trade(**kw: Any) -> dict[str, Any]:
    t = {"id": "t1", "market": BTC, "side": 1, "qty": 10_000_000, "entry": 1_000_000_000, "leverage": 10,
         "margin": 10_000_000, "margin_mode": "cross", "fees": 500, "funding": 0, "take_profit": None,
         "stop_loss": None, "opened_ms": 1_700_000_000_000}
    t.update(kw)
    return t


def account(**kw: Any) -> dict[str, Any]:
    a = {"user_id": "u1", "balance": 90_000_000, "realized_pnl": 0, "fees_paid": 500, "funding_paid": 0,
         "trades": [trade()], "orders": [], "version": 3, "updated_ms": 1_700_000_000_000}
    a.update(kw)
    return a


def test_prices_are_validated_per_entry() -> None:
    good = price(1_000_000_000, 1_000_010_000)
    msg = {"type": "prices", "prices": {
        BTC: good,
        ETH: {**good, "bid": "1"},  # text: refused
        "DOGE_USDC_PERP": good,  # unknown market
        "SOL_USDC_PERP": {**good, "mark": True},  # bool is not an int
    }}
    updates, bad = frames.parse_prices(orjson.dumps(msg), M)
    assert list(updates) == [BTC] and bad == 3
    assert frames.parse_prices(b"not json", M) == ({}, 1)
    assert frames.parse_prices(b'{"prices": []}', M) == ({}, 1)
    assert frames.parse_prices(b"[]", M) == ({}, 1)


def test_price_frame_shape() -> None:
    p = price(1_000_000_000, 1_000_010_000, ts=123)
    wire = {BTC: frames.price_wire(p)}
    frame = orjson.loads(frames.prices_frame(wire, [BTC, ETH]))
    assert frame == {"type": "prices", "decimal": 4, "prices": {BTC: {
        "bid": 1_000_000_000, "ask": 1_000_010_000, "mark": 1_000_005_000, "index": 1_000_005_000,
        "funding_rate": "0.0000125", "next_funding_ms": p["next_funding_ms"], "ts": 123}}}


def test_price_hash_snapshot() -> None:
    p = price(1_000_000_000, 1_000_010_000)
    raw = {BTC.encode(): orjson.dumps(p), ETH.encode(): b"{bad", b"XYZ": orjson.dumps(p)}
    assert frames.parse_price_hash(raw, M) == {BTC: p}


def test_accounts_are_validated_and_events_filtered() -> None:
    ev_mine = {"type": "trade_opened", "user_id": "u1", "trade": trade()}
    ev_other = {"type": "ledger", "user_id": "u2", "amount": 1}
    msg = {"accounts": [
        {"user_id": "u1", "account": account(), "events": [ev_mine, ev_other, "junk"]},
        {"user_id": "u2", "account": account(balance="lots")},
        {"user_id": "u3", "account": account(trades=[trade(side=2)])},
        {"user_id": "", "account": account()},
        "junk",
    ]}
    updates, bad = frames.parse_accounts(orjson.dumps(msg), M)
    assert bad == 4
    assert [u.user_id for u in updates] == ["u1"]
    assert updates[0].events == [ev_mine]


def test_account_frame_is_get_account_at_latest_marks() -> None:
    prices = {BTC: price(1_010_000_000, 1_010_010_000, mark=1_010_000_000)}
    update = frames.AccountUpdate("u1", account(), [{"type": "ledger", "amount": -500}])
    view = frames.account_view(update, prices, M)
    assert view == account_health(account(), prices, M)
    frame = orjson.loads(frames.account_frame(view, update.events))
    assert frame["type"] == "account" and frame["events"] == update.events
    a = frame["account"]
    assert a["balance"] == 90_000_000
    # long 0.1 BTC from 100,000 to a mark of 101,000: +100 USD unrealized
    assert a["unrealized_pnl"] == 1_000_000
    assert a["equity"] == 90_000_000 + 10_000_000 + 1_000_000
    assert a["trades"][0]["unrealized_pnl"] == 1_000_000 and a["trades"][0]["mark"] == 1_010_000_000
    assert {"margin_used", "available", "margin_ratio_bps", "maintenance"} <= set(a)


def test_oversized_account_frames_shrink() -> None:
    view = account_health(account(), {}, M)
    events = [{"type": "ledger", "pad": "x" * 1000} for _ in range(300)]
    frame = orjson.loads(frames.account_frame(view, events))
    assert frame["events"] == [] and frame["events_dropped"] == 300
    huge = dict(view, trades=[view["trades"][0]] * 2000)
    assert orjson.loads(frames.account_frame(huge, []))["type"] == "resync"
    many = [{"type": "ledger"}] * (frames.MAX_EVENTS_PER_FRAME + 5)
    frame = orjson.loads(frames.account_frame(view, many))
    assert len(frame["events"]) == frames.MAX_EVENTS_PER_FRAME and frame["events_dropped"] == 5


def test_registry_entries_and_changes() -> None:
    reg = parse_registration("c1", {b"user_id": b"u1", b"markets": b'["BTC_USDC_PERP","NOPE"]'}, M)
    assert reg is not None and reg.markets == frozenset({BTC}) and reg.user_id == "u1"
    assert parse_registration("c1", {}, M) is None
    assert parse_registration("c1", {b"markets": b"[]"}, M) is None
    assert parse_registration("c1", {b"user_id": b"u1", b"markets": b"{bad"}, M) is None
    assert parse_change(b'{"op":"upsert","id":"c1"}') == ("upsert", "c1")
    assert parse_change(b'{"op":"drop","id":"c1"}') is None
    assert parse_change(b'{"op":"remove","id":""}') is None
    assert parse_change(b"nope") is None


INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(derandomize=True, database=None, deadline=None)
@given(st.recursive(st.none() | st.booleans() | INT64 | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                    max_leaves=20))
def test_arbitrary_payloads_never_crash(payload: Any) -> None:
    data = orjson.dumps(payload)
    frames.parse_prices(data, M)
    frames.parse_accounts(data, M)
    parse_change(data)
    updates, _ = frames.parse_accounts(orjson.dumps({"accounts": [{"user_id": "u", "account": payload}]}), M)
    for u in updates:  # whatever passes validation can be shown
        frames.account_frame(frames.account_view(u, {}, M), u.events)


_odd = st.none() | st.booleans() | INT64 | st.text(max_size=3) | st.sampled_from([0, -1, 1, 2**40, "isolated", -1])


@settings(derandomize=True, database=None, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(trade())), _odd, max_size=4),
       st.dictionaries(st.sampled_from(["balance", "realized_pnl", "version", "orders"]), _odd, max_size=2),
       st.sampled_from([{}, {BTC: price(1_000_000_000, 1_000_010_000)}]))
def test_near_valid_accounts_are_refused_or_shown(trade_changes: dict[str, Any], acct_changes: dict[str, Any],
                                                  prices: dict[str, Any]) -> None:
    payload = {"accounts": [{"user_id": "u1", "account": account(trades=[trade(**trade_changes)], **acct_changes),
                             "events": []}]}
    updates, bad = frames.parse_accounts(orjson.dumps(payload), M)
    assert len(updates) + bad == 1
    for u in updates:
        frames.account_frame(frames.account_view(u, prices, M), u.events)
