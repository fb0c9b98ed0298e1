"""Trading through the API against a real engine: idempotent retries, partial
closes, refusals, account health computed with the engine's formulas (and the
liquidation price shown is where the engine liquidates), markets, candles."""

from __future__ import annotations

import time
from typing import Any

import httpx
import psycopg
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

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
START = 50_000_000


async def test_idempotency_key_applies_a_retried_open_once(api_client: httpx.AsyncClient) -> None:
    await signup_and_signin(api_client)
    headers = {"Idempotency-Key": "open-1"}
    first = await api_client.post(f"{API}/trade/open", json=open_body(), headers=headers)
    again = await api_client.post(f"{API}/trade/open", json=open_body(), headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["orderId"] == again.json()["orderId"]
    trades = (await api_client.get(f"{API}/trade/open")).json()["trades"]
    assert len(trades) == 1
    order = first.json()["order"]
    assert (await api_client.get(f"{API}/balance")).json()["data"]["balance"] == START - order["margin"] - order["fee"]
    # the same key on a close is another command
    close = await api_client.post(f"{API}/trade/close", json={"orderId": order["id"]}, headers=headers)
    assert close.status_code == 200 and close.json()["message"] == "Trade closed"


async def test_partial_close_and_refusals(api_client: httpx.AsyncClient, price_feed: PriceFeed) -> None:
    await signup_and_signin(api_client)
    r = await api_client.post(f"{API}/trade/open", json=open_body(ETH, "short", 1.5, leverage=20))
    trade = r.json()["order"]
    r = await api_client.post(f"{API}/trade/close", json={"orderId": trade["id"], "quantity": 2})
    assert r.status_code == 422 and "larger" in r.json()["message"]
    r = await api_client.post(f"{API}/trade/close", json={"orderId": trade["id"], "quantity": 0.0005})
    assert r.status_code == 422 and "multiple" in r.json()["message"]
    r = await api_client.post(f"{API}/trade/close", json={"orderId": trade["id"], "quantity": 0.5})
    assert r.status_code == 200 and r.json()["message"] == "Trade partially closed"
    assert r.json()["closed"]["quantity"] == 0.5 and r.json()["closed"]["remaining_quantity"] == 1
    assert [t["quantity"] for t in r.json()["openOrders"]] == [1]

    # slippage: the ask moved 1% above what the client saw
    bid, ask, _ = PRICES[BTC]
    price_feed.set(BTC, bid * 101 // 100, ask * 101 // 100)
    await _wait_engine_price(api_client, BTC, ask * 101 // 100)
    r = await api_client.post(f"{API}/trade/open", json=open_body(BTC, slippage=50))
    assert r.status_code == 409 and "slippage" in r.json()["message"]
    r = await api_client.post(f"{API}/trade/open", json={**open_body(BTC, slippage=150)})
    assert r.status_code == 200  # within 1.5%
    # insufficient balance
    r = await api_client.post(f"{API}/trade/open", json={**open_body(BTC, quantity=10, leverage=2),
                                                        "openPrice": ask * 101 // 100})
    assert r.status_code == 409 and "insufficient balance" in r.json()["message"]


async def _wait_engine_price(client: httpx.AsyncClient, market: str, ask: int) -> None:
    """The feed's tick reaches the engine through its stream: wait until a
    zero-slippage probe at the new ask is accepted (then close the probe)."""
    async def accepted() -> bool:
        r = await client.post(f"{API}/trade/open", json={**open_body(market, quantity=0.0001, slippage=0),
                                                         "openPrice": ask})
        if r.status_code == 200:
            await client.post(f"{API}/trade/close", json={"orderId": r.json()["orderId"]})
            return True
        return False

    await wait_for(accepted, timeout=10, interval=0.2)


async def test_account_figures_and_liquidation_price(api_client: httpx.AsyncClient, price_feed: PriceFeed,
                                                     api_settings: ApiSettings, history_writer: object) -> None:
    await signup_and_signin(api_client)
    long_btc = (await api_client.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.02, leverage=20))).json()
    short_eth = (await api_client.post(f"{API}/trade/open", json=open_body(ETH, "short", 2, leverage=50,
                                                                          margin_mode="isolated"))).json()
    assert short_eth["order"]["margin_mode"] == "isolated"

    # marks move; the API's figures follow the engine's formulas
    btc_mark, eth_mark = 960_000_000, 35_300_000
    price_feed.set(BTC, btc_mark - 5000, btc_mark + 5000, btc_mark)
    price_feed.set(ETH, eth_mark - 500, eth_mark + 500, eth_mark)
    acct = (await api_client.get(f"{API}/account")).json()["account"]
    by_id = {t["id"]: t for t in acct["trades"]}
    lb, se = by_id[long_btc["orderId"]], by_id[short_eth["orderId"]]
    mmr = {s: DEFAULT_MARKETS[s].maintenance_rate for s in (BTC, ETH)}
    u_btc = (1 * 2_000_000 * (btc_mark - lb["openPrice"])) // 100_000_000
    u_eth = (-1 * 200_000_000 * (eth_mark - se["openPrice"])) // 100_000_000
    assert (lb["mark"], lb["unrealized_pnl"]) == (btc_mark, u_btc)
    assert (se["mark"], se["unrealized_pnl"]) == (eth_mark, u_eth)
    mm_btc = -(-(2_000_000 * btc_mark * mmr[BTC]) // (100_000_000 * 1_000_000))
    mm_eth = -(-(200_000_000 * eth_mark * mmr[ETH]) // (100_000_000 * 1_000_000))
    assert (lb["maintenance"], se["maintenance"]) == (mm_btc, mm_eth)
    balance = acct["balance"]
    assert acct["margin_used"] == lb["margin"] + se["margin"]
    assert acct["unrealized_pnl"] == u_btc + u_eth
    assert acct["equity"] == balance + lb["margin"] + u_btc + max(0, se["margin"] + u_eth)
    assert acct["available"] == balance + min(0, u_btc)
    cross_equity = balance + lb["margin"] + u_btc
    assert acct["margin_ratio_bps"] == -(-(mm_btc * 10_000) // cross_equity)
    assert acct["decimal"] == 4 and acct["orders"] == []

    # the isolated liquidation price shown is the engine's exact trigger
    liq = se["liquidation_price"]
    assert liq == margin.isolated_trigger_price(-1, 200_000_000, se["openPrice"], se["margin"], mmr[ETH])
    assert margin.isolated_is_liquidatable(-1, 200_000_000, se["openPrice"], se["margin"], liq, mmr[ETH])
    assert not margin.isolated_is_liquidatable(-1, 200_000_000, se["openPrice"], se["margin"], liq - 1, mmr[ETH])
    # cross: a long's liquidation price is below the mark (None if no price liquidates it)
    assert lb["liquidation_price"] is None or lb["liquidation_price"] < btc_mark

    # one tick below the trigger nothing happens; at it the engine liquidates
    price_feed.set(ETH, liq - 1 - 500, liq - 1 + 500, liq - 1)
    time.sleep(0.3)
    ids = [t["id"] for t in (await api_client.get(f"{API}/trade/open")).json()["trades"]]
    assert short_eth["orderId"] in ids
    price_feed.set(ETH, liq - 500, liq + 500, liq)

    async def liquidated() -> list[dict[str, Any]]:
        trades = (await api_client.get(f"{API}/trade/closed")).json()["trades"]
        return [t for t in trades if t["id"] == short_eth["orderId"]]

    [closed] = await wait_for(liquidated)
    assert closed["liquidated"] is True and closed["reason"] == "liquidation" and closed["closePrice"] == liq
    assert [t["id"] for t in (await api_client.get(f"{API}/trade/open")).json()["trades"]] == [long_btc["orderId"]]

    r = await api_client.get(f"{API}/ledger", params={"limit": 3})
    page = r.json()
    assert r.status_code == 200 and len(page["entries"]) == 3 and page["next"]
    older = (await api_client.get(f"{API}/ledger", params={"limit": 100, "before": page["next"]})).json()
    kinds = [e["kind"] for e in page["entries"] + older["entries"]]
    assert kinds[-1] == "deposit" and "liquidation_fee" in kinds and older["next"] is None


async def test_balance_per_asset_signs(api_client: httpx.AsyncClient) -> None:
    await signup_and_signin(api_client)
    a = (await api_client.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.01))).json()["order"]
    b = (await api_client.post(f"{API}/trade/open", json=open_body(SOL, "short", 1))).json()["order"]
    data = (await api_client.get(f"{API}/balance/asset")).json()["data"]
    assert data == {BTC: {"balance": a["margin"], "decimal": 4}, ETH: {"balance": 0, "decimal": 4},
                    SOL: {"balance": -b["margin"], "decimal": 4}}


async def test_read_model_missing_for_an_existing_user(api_client: httpx.AsyncClient, api_settings: ApiSettings,
                                                       redis: Any) -> None:
    """The engine has the account but its read model is gone from Redis: the
    API never opens a second account (no second deposit); it says so (503)
    until the engine writes the read model again, which any change does."""
    user = await signup_and_signin(api_client)
    redis.delete(api_settings.keys.account(user["id"]))
    r = await api_client.get(f"{API}/balance")
    if r.status_code == 503:  # the engine did not re-publish the read model on the conflict
        assert "retry" in r.json()["message"]
        r = await api_client.post(f"{API}/trade/open", json=open_body())
        assert r.status_code == 200
        order = r.json()["order"]
        assert r.json()["usdBalance"]["balance"] == START - order["margin"] - order["fee"]
    else:
        assert r.status_code == 200 and r.json()["data"]["balance"] == START
    r = await api_client.get(f"{API}/balance")
    assert r.status_code == 200 and r.json()["data"]["balance"] <= START


async def test_markets_config_and_assets(app_client: httpx.AsyncClient, price_feed: PriceFeed,
                                         api_settings: ApiSettings) -> None:
    r = await app_client.get(f"{API}/markets")
    assert r.status_code == 200
    markets = {m["symbol"]: m for m in r.json()["markets"]}
    assert list(markets) == [BTC, ETH, SOL]
    btc = markets[BTC]
    bid, ask, mark = PRICES[BTC]
    assert (btc["bid"], btc["ask"], btc["mark"], btc["index"], btc["decimal"]) == (bid, ask, mark, mark, 4)
    assert btc["stale"] is False and btc["max_leverage"] == 100
    assert (btc["taker_fee_bps"], btc["maker_fee_bps"]) == (5, 2)
    assert (btc["tick_size"], btc["qty_step"]) == (1000, 0.0001)
    assert (markets[ETH]["tick_size"], markets[ETH]["qty_step"], markets[SOL]["qty_step"]) == (100, 0.001, 0.01)
    assert btc["funding_rate"] == "0" and btc["next_funding_time"] % 3_600_000 == 0
    price_feed.funding_rate = 12_500
    price_feed.publish()
    btc = (await app_client.get(f"{API}/markets")).json()["markets"][0]
    assert btc["funding_rate"] == "0.0000125"

    cfg = (await app_client.get(f"{API}/config")).json()
    assert cfg == {"ws_url": api_settings.ws_public_url, "markets": [BTC, ETH, SOL], "decimal": 4}
    assets = (await app_client.get(f"{API}/supportedAssets")).json()["assets"]
    assert assets == [{"symbol": BTC, "name": "Bitcoin"}, {"symbol": ETH, "name": "Ethereum"},
                      {"symbol": SOL, "name": "Solana"}]


FUTURE = 4_102_444_800  # 2100-01-01: after anything a poller in this run writes


async def test_candles_roll_up_minutes(app_client: httpx.AsyncClient, pg_dsn: str) -> None:
    # 130 one-minute candles of SOL from FUTURE: open i, close i + 1, high i + 5, low i - 5 (+ base)
    base = 2_000_000
    rows = [(SOL, FUTURE + 60 * i, base + i, base + i + 5, base + i - 5, base + i + 1) for i in range(130)]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO candles_1m (market, start_s, open, high, low, close, source) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'backfill')", rows)
    try:
        r = await app_client.get(f"{API}/candles", params={"symbol": SOL, "interval": "1m", "limit": 3})
        assert r.status_code == 200 and r.json()["decimal"] == 4 and r.json()["interval"] == "1m"
        assert r.json()["candles"] == [
            {"time": FUTURE + 60 * i, "open": base + i, "high": base + i + 5, "low": base + i - 5, "close": base + i + 1}
            for i in (127, 128, 129)]
        r = await app_client.get(f"{API}/candles", params={"symbol": SOL, "interval": "1h", "limit": 5})
        hours = r.json()["candles"]
        # FUTURE is on an hour boundary: minutes 0-59, 60-119, 120-129
        assert hours == [
            {"time": FUTURE, "open": base, "high": base + 59 + 5, "low": base - 5, "close": base + 60},
            {"time": FUTURE + 3600, "open": base + 60, "high": base + 119 + 5, "low": base + 55, "close": base + 120},
            {"time": FUTURE + 7200, "open": base + 120, "high": base + 134, "low": base + 115, "close": base + 130},
        ]
        r = await app_client.get(f"{API}/candles", params={"symbol": SOL, "interval": "15m", "limit": 2})
        assert [c["time"] for c in r.json()["candles"]] == [FUTURE + 6300, FUTURE + 7200]
        assert r.json()["candles"][0]["open"] == base + 105 and r.json()["candles"][0]["close"] == base + 120
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM candles_1m WHERE market = %s AND start_s >= %s", (SOL, FUTURE))
