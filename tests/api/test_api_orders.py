"""Limit orders, take-profit / stop-loss, margin top-ups and the margin warning
through the API, against a real engine, Redis and Postgres: what the engine
reserves, fills, refuses and closes is what the API shows, with the engine's
statuses and messages."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from opex_api.config import ApiSettings
from opex_common import margin
from opex_common.markets import DEFAULT_MARKETS
from tests.api.api_support import (
    API,
    BTC,
    ETH,
    PRICES,
    SOL,
    PriceFeed,
    open_body,
    signup_and_signin,
    wait_for,
)
from tests.helpers import send_tick

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
START = 50_000_000
BTC_SPEC = DEFAULT_MARKETS[BTC]
LIMIT = 960_000_000  # $96,000.0: below the test ask of $97,001.0, a multiple of BTC's tick (1000)


def order_body(market: str = BTC, side: str = "long", quantity: float = 0.01, limit: int = LIMIT,
               leverage: int | None = 10, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"asset": market, "type": side, "quantity": quantity, "limitPrice": limit,
                            "decimal": 4, **extra}
    if leverage is not None:
        body["leverage"] = leverage
    return body


async def balance(client: httpx.AsyncClient) -> int:
    return (await client.get(f"{API}/balance")).json()["data"]["balance"]  # type: ignore[no-any-return]


async def open_trades(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    return (await client.get(f"{API}/trade/open")).json()["trades"]  # type: ignore[no-any-return]


async def test_limit_order_rests_is_listed_and_fills_on_a_tick(api_client: httpx.AsyncClient,
                                                               api_settings: ApiSettings) -> None:
    await signup_and_signin(api_client)
    im = margin.initial_margin(1_000_000, LIMIT, 10)
    fee = margin.fee(1_000_000, LIMIT, BTC_SPEC.maker_fee)
    headers = {"Idempotency-Key": "place-1"}
    r = await api_client.post(f"{API}/orders", json=order_body(), headers=headers)
    assert r.status_code == 201, r.text
    body = r.json()
    order = body["order"]
    assert body["message"] == "Order placed" and body["trade"] is None
    assert (order["type"], order["asset"], order["quantity"], order["limitPrice"], order["leverage"]) == \
        ("long", BTC, 0.01, LIMIT, 10)
    assert (order["reserved_margin"], order["reserved_fee"], order["status"]) == (im, fee, "open")
    assert order["margin_mode"] == "cross" and order["reduce_only"] is False and order["expires_at"] is None
    assert body["usdBalance"] == {"balance": START - im - fee, "decimal": 4}
    # a retry with the same key is the same order, placed once
    again = await api_client.post(f"{API}/orders", json=order_body(), headers=headers)
    assert again.status_code == 201 and again.json()["order"]["id"] == order["id"]

    listed = (await api_client.get(f"{API}/orders")).json()["orders"]
    assert listed == [order]
    acct = (await api_client.get(f"{API}/account")).json()["account"]
    # the reserve left the balance and is in no figure that backs positions
    assert acct["orders"] == [order] and acct["reserved"] == im + fee
    assert acct["balance"] == acct["equity"] == acct["available"] == START - im - fee
    assert acct["margin_used"] == 0 and acct["margin_warning"] is False

    # the ask drops to the limit: the order fills at the limit, as a maker
    send_tick(api_settings, BTC, LIMIT - 10_000, LIMIT)

    async def filled() -> list[dict[str, Any]]:
        return await open_trades(api_client)

    [trade] = await wait_for(filled)
    assert (trade["type"], trade["openPrice"], trade["margin"], trade["fees"], trade["quantity"]) == \
        ("long", LIMIT, im, fee, 0.01)
    assert (await api_client.get(f"{API}/orders")).json()["orders"] == []
    acct = (await api_client.get(f"{API}/account")).json()["account"]
    assert acct["reserved"] == 0 and acct["balance"] == START - im - fee and acct["margin_used"] == im


async def test_cancel_releases_the_reserve_and_orders_are_private(api_client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=api_client._transport, base_url="http://testserver") as bob:
        await signup_and_signin(api_client)
        await signup_and_signin(bob)
        r = await api_client.post(f"{API}/orders", json=order_body(ETH, "short", 0.5, 36_000_000, 5,
                                                                   margin_mode="isolated"))
        assert r.status_code == 201, r.text
        order = r.json()["order"]
        reserved = order["reserved_margin"] + order["reserved_fee"]
        assert reserved > 0 and order["margin_mode"] == "isolated"
        assert await balance(api_client) == START - reserved

        # another user's order is "not found", as an unknown one; nothing is cancelled
        r = await bob.delete(f"{API}/orders/{order['id']}")
        assert r.status_code == 404 and r.json() == {"message": "order not found"}
        assert (await bob.get(f"{API}/orders")).json()["orders"] == []
        assert (await bob.get(f"{API}/account")).json()["account"]["orders"] == []
        r = await api_client.delete(f"{API}/orders/00000000-0000-4000-8000-000000000000")
        assert r.status_code == 404
        assert r.json()["message"] == "order not found"
        assert len((await api_client.get(f"{API}/orders")).json()["orders"]) == 1

        r = await api_client.delete(f"{API}/orders/{order['id']}")
        assert r.status_code == 200, r.text
        assert r.json()["message"] == "Order cancelled" and r.json()["order"]["status"] == "cancelled"
        assert r.json()["usdBalance"] == {"balance": START, "decimal": 4}  # back exactly
        assert await balance(api_client) == START
        assert (await api_client.get(f"{API}/orders")).json()["orders"] == []
        assert (await api_client.delete(f"{API}/orders/{order['id']}")).status_code == 404
        assert (await api_client.delete(f"{API}/orders/not%20an%20id")).status_code == 422

    # good-till-time: the engine cancels it on the first tick after expires_at
    r = await api_client.post(f"{API}/orders", json=order_body(expires_at=int(time.time() * 1000) + 1200))
    assert r.status_code == 201 and r.json()["order"]["expires_at"] is not None
    assert await balance(api_client) < START

    async def expired() -> bool:
        return not (await api_client.get(f"{API}/orders")).json()["orders"]

    await wait_for(expired, timeout=10, interval=0.2)
    assert await balance(api_client) == START
    r = await api_client.post(f"{API}/orders", json=order_body(expires_at=1_000))
    assert r.status_code == 422 and "past" in r.json()["message"]


async def test_order_refusals_and_marketable_orders(api_client: httpx.AsyncClient) -> None:
    await signup_and_signin(api_client)
    ask = PRICES[BTC][1]
    # post-only at or above the ask would take liquidity: the engine refuses it
    r = await api_client.post(f"{API}/orders", json=order_body(limit=ask, post_only=True))
    assert r.status_code == 409 and r.json() == {"message": "post-only order would fill at once; refused"}
    # off the tick (BTC: 0.1 = 1000)
    r = await api_client.post(f"{API}/orders", json=order_body(limit=LIMIT + 500))
    assert r.status_code == 422 and "tick" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json=order_body(leverage=None))
    assert r.status_code == 422 and "leverage" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json=order_body(quantity=0.00005))
    assert r.status_code == 422 and "multiple" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json={**order_body(), "limitPrice": "960000000"})
    assert r.status_code == 422
    r = await api_client.post(f"{API}/orders", json={**order_body(), "stop": 1})
    assert r.status_code == 422 and "unknown field" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json=order_body(quantity=10, leverage=1))
    assert r.status_code == 409 and "insufficient balance" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json=order_body(reduce_only_trade_id="nope", side="short"))
    assert r.status_code == 404 and r.json()["message"] == "trade not found"
    assert await balance(api_client) == START and (await api_client.get(f"{API}/orders")).json()["orders"] == []

    # a buy limit above the ask fills at once as a taker, at the ask
    r = await api_client.post(f"{API}/orders", json=order_body(SOL, quantity=1, limit=2_100_000, leverage=5))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["message"] == "Order filled at once" and body["order"]["status"] == "filled"
    assert body["order"]["id"] is None and body["trade"]["openPrice"] == PRICES[SOL][1]
    fee = margin.fee(100_000_000, PRICES[SOL][1], DEFAULT_MARKETS[SOL].taker_fee)
    assert body["trade"]["fee"] == fee
    assert body["usdBalance"]["balance"] == START - body["trade"]["margin"] - fee
    # a reduce-only sell below the bid closes part of it at once
    trade_id = body["trade"]["id"]
    r = await api_client.post(f"{API}/orders", json=order_body(SOL, "short", 0.4, 1_900_000, None,
                                                               reduce_only_trade_id=trade_id))
    assert r.status_code == 201, r.text
    assert r.json()["message"] == "Reduce-only order filled at once"
    assert r.json()["closed"]["quantity"] == 0.4 and r.json()["closed"]["closePrice"] == PRICES[SOL][0]
    assert [t["quantity"] for t in await open_trades(api_client)] == [0.6]
    # reduce-only must be on the other side, and no larger than the trade
    r = await api_client.post(f"{API}/orders", json=order_body(SOL, "long", 0.1, 1_900_000, None,
                                                               reduce_only_trade_id=trade_id))
    assert r.status_code == 422 and "opposite side" in r.json()["message"]
    r = await api_client.post(f"{API}/orders", json=order_body(SOL, "short", 1, 2_100_000, None,
                                                               reduce_only_trade_id=trade_id))
    assert r.status_code == 422 and "larger" in r.json()["message"]
    # partial close larger than the trade
    r = await api_client.post(f"{API}/trade/close", json={"orderId": trade_id, "quantity": 0.7})
    assert r.status_code == 422 and "larger" in r.json()["message"]


async def test_tpsl_and_add_margin(api_client: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=api_client._transport, base_url="http://testserver") as bob:
        await signup_and_signin(api_client)
        await signup_and_signin(bob)
        r = await api_client.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.01, leverage=10,
                                                                     take_profit=1_000_000_000))
        assert r.status_code == 200, r.text
        cross = r.json()["order"]
        assert cross["take_profit"] == 1_000_000_000 and cross["stop_loss"] is None
        tid = cross["id"]
        url = f"{API}/trade/{tid}/tpsl"

        r = await api_client.put(url, json={"take_profit": 960_000_000})  # below a long's entry
        assert r.status_code == 422
        assert r.json()["message"] == "take_profit must be above the entry for a long, below it for a short"
        r = await api_client.put(url, json={"stop_loss": 980_000_000})  # above a long's entry
        assert r.status_code == 422 and "stop_loss must be below the entry" in r.json()["message"]
        r = await api_client.put(url, json={"stop_loss": 950_000_500})
        assert r.status_code == 422 and "tick" in r.json()["message"]
        assert (await api_client.put(url, json={})).status_code == 422
        assert (await api_client.put(url, json={"take_profit": 1_000_000_000, "x": 1})).status_code == 422

        r = await api_client.put(url, json={"stop_loss": 950_000_000})  # TP left out: kept
        assert r.status_code == 200, r.text
        assert (r.json()["order"]["take_profit"], r.json()["order"]["stop_loss"]) == (1_000_000_000, 950_000_000)
        r = await api_client.put(url, json={"take_profit": None})  # removed; SL kept
        assert (r.json()["order"]["take_profit"], r.json()["order"]["stop_loss"]) == (None, 950_000_000)
        [shown] = await open_trades(api_client)
        assert (shown["take_profit"], shown["stop_loss"]) == (None, 950_000_000)
        # another user's trade: not found
        r = await bob.put(url, json={"stop_loss": 940_000_000})
        assert r.status_code == 404 and r.json() == {"message": "trade not found"}
        r = await bob.post(f"{API}/trade/{tid}/margin", json={"amount": 10_000})
        assert r.status_code == 404

        # add margin: isolated only, within the free balance
        r = await api_client.post(f"{API}/trade/{tid}/margin", json={"amount": 10_000})
        assert r.status_code == 422 and "isolated" in r.json()["message"]
        r = await api_client.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.01, leverage=50,
                                                                     margin_mode="isolated"))
        iso = r.json()["order"]
        liq_before = iso["liquidation_price"]
        sl = liq_before // BTC_SPEC.tick_size * BTC_SPEC.tick_size - BTC_SPEC.tick_size  # a tick below it
        # a stop-loss the liquidation would reach first is refused
        r = await api_client.put(f"{API}/trade/{iso['id']}/tpsl", json={"stop_loss": sl})
        assert r.status_code == 422 and "beyond the liquidation price" in r.json()["message"]
        free = await balance(api_client)
        r = await api_client.post(f"{API}/trade/{iso['id']}/margin", json={"amount": free + 1})
        assert r.status_code == 409 and "free balance" in r.json()["message"]
        r = await api_client.post(f"{API}/trade/{iso['id']}/margin", json={"amount": "1"})
        assert r.status_code == 422
        r = await api_client.post(f"{API}/trade/{iso['id']}/margin", json={"amount": 1_000_000})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"] == "Margin added" and body["order"]["margin"] == iso["margin"] + 1_000_000
        assert body["usdBalance"]["balance"] == free - 1_000_000 == await balance(api_client)
        mmr = BTC_SPEC.maintenance_rate
        liq_after = body["order"]["liquidation_price"]
        assert liq_after == margin.isolated_trigger_price(1, 1_000_000, iso["openPrice"], iso["margin"] + 1_000_000,
                                                          mmr)
        assert liq_after < liq_before
        # with more margin, the same stop-loss is now above the liquidation price
        r = await api_client.put(f"{API}/trade/{iso['id']}/tpsl", json={"stop_loss": sl})
        assert r.status_code == 200 and r.json()["order"]["stop_loss"] == sl


async def test_closes_by_limit_tp_and_sl_reach_history(api_client: httpx.AsyncClient, price_feed: PriceFeed,
                                                       api_settings: ApiSettings, history_writer: object) -> None:
    await signup_and_signin(api_client)
    mark = PRICES[ETH][2]
    # an order placed and cancelled: order_reserve then order_release in the ledger
    r = await api_client.post(f"{API}/orders", json=order_body(ETH, "long", 1, 34_000_000, 10))
    order = r.json()["order"]
    reserved = order["reserved_margin"] + order["reserved_fee"]
    assert (await api_client.delete(f"{API}/orders/{order['id']}")).status_code == 200

    # three ETH longs: one closed by a reduce-only limit, one by its TP, one by its SL
    ids = []
    for _ in range(3):
        r = await api_client.post(f"{API}/trade/open", json=open_body(ETH, "long", 0.5, leverage=10))
        ids.append(r.json()["orderId"])
    limit_id, tp_id, sl_id = ids
    r = await api_client.post(f"{API}/orders", json=order_body(ETH, "short", 0.5, 35_100_000, None,
                                                               reduce_only_trade_id=limit_id))
    assert r.status_code == 201 and r.json()["order"]["reduce_only"] is True
    assert r.json()["order"]["reserved_margin"] == 0 and r.json()["order"]["leverage"] is None
    assert (await api_client.put(f"{API}/trade/{tp_id}/tpsl", json={"take_profit": 35_200_000})).status_code == 200
    assert (await api_client.put(f"{API}/trade/{sl_id}/tpsl", json={"stop_loss": 34_800_000})).status_code == 200

    # the bid reaches the reduce-only limit (one tick, then the feed puts prices back)
    send_tick(api_settings, ETH, 35_100_000, 35_101_000, mark)
    await wait_for(lambda: _open_ids(api_client, {tp_id, sl_id}))
    # the mark rises to the take-profit, then falls to the stop-loss
    price_feed.set(ETH, 35_250_000, 35_251_000, 35_250_000)
    await wait_for(lambda: _open_ids(api_client, {sl_id}))
    price_feed.set(ETH, 34_700_000, 34_701_000, 34_700_000)
    await wait_for(lambda: _open_ids(api_client, set()))

    async def closed() -> dict[str, dict[str, Any]] | None:
        trades = (await api_client.get(f"{API}/trade/closed")).json()["trades"]
        return {t["id"]: t for t in trades} if len(trades) == 3 else None

    by_id = await wait_for(closed)
    assert by_id[limit_id]["reason"] == "limit_close" and by_id[limit_id]["closePrice"] == 35_100_000
    assert by_id[tp_id]["reason"] == "take_profit" and by_id[tp_id]["closePrice"] == 35_250_000
    assert by_id[sl_id]["reason"] == "stop_loss" and by_id[sl_id]["closePrice"] == 34_700_000
    maker = margin.fee(50_000_000, 35_100_000, DEFAULT_MARKETS[ETH].maker_fee)
    assert by_id[limit_id]["fee"] == maker and by_id[tp_id]["pnl"] > 0 > by_id[sl_id]["pnl"]

    async def ledger() -> list[dict[str, Any]] | None:
        entries = (await api_client.get(f"{API}/ledger", params={"limit": 500})).json()["entries"]
        return entries if sum(e["kind"] == "margin_release" for e in entries) == 3 else None

    entries = await wait_for(ledger)
    by_kind = {e["kind"]: e for e in entries}
    assert by_kind["order_reserve"]["amount"] == -reserved and by_kind["order_release"]["amount"] == reserved
    assert by_kind["order_release"]["balance_after"] == START


async def _open_ids(client: httpx.AsyncClient, expected: set[str]) -> bool:
    return {t["id"] for t in await open_trades(client)} == expected


async def test_margin_warning_shows_on_the_account(api_client: httpx.AsyncClient, price_feed: PriceFeed) -> None:
    await signup_and_signin(api_client)
    qty = 4  # BTC at 100x, cross: most of the balance as margin
    r = await api_client.post(f"{API}/trade/open", json=open_body(BTC, "long", qty, leverage=100, slippage=100))
    assert r.status_code == 200, r.text
    trade = r.json()["order"]
    acct = (await api_client.get(f"{API}/account")).json()["account"]
    assert acct["margin_warning"] is False and acct["margin_ratio_bps"] < 8000
    q, entry, im, bal = qty * 100_000_000, trade["openPrice"], trade["margin"], acct["balance"]
    mmr = BTC_SPEC.maintenance_rate

    def ratio(m: int) -> int:
        return margin.maintenance(q, m, mmr) * 10_000 // (bal + im + margin.pnl(1, q, entry, m))

    mark = entry
    while ratio(mark) < 9000:  # a mark with the margin ratio near 90%: warned, not liquidated
        mark -= 10_000
    price_feed.set(BTC, mark - 5_000, mark + 5_000, mark)

    async def warned() -> dict[str, Any] | None:
        a = (await api_client.get(f"{API}/account")).json()["account"]
        return a if a["margin_warning"] else None

    acct = await wait_for(warned)
    assert 8000 <= acct["margin_ratio_bps"] < 10_000 and [t["id"] for t in acct["trades"]] == [trade["id"]]
    # the price comes back: the warning clears (below 70%)
    price_feed.set(BTC, *PRICES[BTC])

    async def cleared() -> bool:
        return not (await api_client.get(f"{API}/account")).json()["account"]["margin_warning"]

    await wait_for(cleared)


@pytest.mark.unit
def test_account_view_keeps_reserved_out_of_equity() -> None:
    """The figures the API and the WebSocket push show (opex_common.views):
    what resting orders reserve is neither balance nor equity nor available;
    the warning flag is the engine's; what is not an order is left out."""
    from opex_common.views import account_health

    trade = {"id": "t1", "market": BTC, "side": 1, "qty": 10_000_000, "entry": 970_000_000, "leverage": 10,
             "margin": 9_700_000, "margin_mode": "cross", "fees": 0, "funding": 0, "take_profit": None,
             "stop_loss": None, "opened_ms": 1}
    order = {"id": "o1", "market": ETH, "side": -1, "qty": 50_000_000, "limit_price": 36_000_000, "leverage": 5,
             "margin_mode": "isolated", "reserved_margin": 3_600_000, "reserved_fee": 3_600, "placed_ms": 1,
             "expires_ms": None, "reduce_only": False, "trade_id": None}
    account = {"balance": 1_000_000, "trades": [trade], "orders": [order, None, {"id": 3}], "margin_warning": True}
    mark = 960_000_000
    h = account_health(account, {BTC: {"mark": mark}}, DEFAULT_MARKETS)
    u = margin.pnl(1, 10_000_000, 970_000_000, mark)
    assert h["reserved"] == 3_603_600 and h["margin_warning"] is True
    assert h["equity"] == 1_000_000 + 9_700_000 + u and h["available"] == 1_000_000 + u
    mm = margin.maintenance(10_000_000, mark, BTC_SPEC.maintenance_rate)
    assert h["margin_ratio_bps"] == -(-(mm * 10_000) // (1_000_000 + 9_700_000 + u))
    assert h["orders"] == [{
        "id": "o1", "type": "short", "asset": ETH, "quantity": 0.5, "limitPrice": 36_000_000, "leverage": 5,
        "margin_mode": "isolated", "reserved_margin": 3_600_000, "reserved_fee": 3_600, "decimal": 4,
        "placed_ms": 1, "createdAt": "1970-01-01T00:00:00.001Z", "expires_at": None, "reduce_only": False,
        "reduce_only_trade_id": None, "status": "open"}]
    assert account_health({"balance": 5}, {}, DEFAULT_MARKETS)["margin_warning"] is False
