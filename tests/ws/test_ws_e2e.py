"""End to end: the local gateway and the pusher as processes (as ``make run``
starts them), a real engine, real WebSocket clients. Prices enter Redis as the
poller writes them (engine tick, prices hash, live channel)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis as redis_lib
import websockets

from opex_common.settings import Settings
from tests.helpers import call
from tests.ws.support import BTC, ETH, Live, WsClient, price, publish_prices

pytestmark = pytest.mark.e2e

BTC_100K = (1_000_000_000, 1_000_010_000)  # bid / ask: $100,000.0 / $100,001.0


async def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s")


def test_an_unauthenticated_connect_is_refused(live: Live, settings: Settings, redis: redis_lib.Redis) -> None:
    async def main() -> None:
        for url, headers in ((live.url, None), (live.url, {"Cookie": "jwt=eyJhbGciOiJub25lIn0.e30."}),
                             (live.url + "/?ticket=" + "n" * 43, None)):
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(url, additional_headers=headers, open_timeout=10)
            assert info.value.response.status_code == 401

    asyncio.run(main())
    assert not redis.scard(settings.keys.ws_connections())


def test_a_subscribed_client_receives_prices_at_the_capped_rate(live: Live, settings: Settings,
                                                                redis: redis_lib.Redis,
                                                                token: Callable[[str], str]) -> None:
    rate = settings.ws_price_rate_per_s  # 2 a second by default
    publish_prices(settings, redis, {BTC: price(*BTC_100K, ts=1)})

    async def main() -> None:
        btc = await WsClient.connect(live.url, cookie=token("rate-a"))
        eth = await WsClient.connect(live.url, cookie=token("rate-b"))
        assert (await btc.request({"type": "subscribe", "markets": [BTC]}, "subscribed"))["markets"] == [BTC]
        await eth.request({"type": "subscribe", "markets": [ETH]}, "subscribed")
        snapshot = await btc.wait_for("prices")  # the latest prices at once
        assert snapshot["prices"][BTC]["ts"] == 1 and snapshot["decimal"] == 4
        start = len(btc.messages)
        t0 = time.monotonic()
        ts = 1
        while time.monotonic() - t0 < 3.0:  # 20 ticks a second for 3 seconds
            ts += 1
            await asyncio.to_thread(publish_prices, settings, redis,
                                    {BTC: price(BTC_100K[0] + ts * 1000, BTC_100K[1] + ts * 1000, ts=ts)})
            await asyncio.sleep(0.05)
        await btc.wait_for("prices", lambda m: m["prices"][BTC]["ts"] == ts, timeout=5, after=start)
        frames = [(t, m) for t, m in btc.messages[start:] if m["type"] == "prices"]
        ticks = ts - 1
        assert ticks >= 30
        # 3 s at 2 a second: about 6 frames (+1 at the edges), instead of one per tick
        assert 3 * rate - 2 <= len(frames) <= 3 * rate + 2, (len(frames), ticks)
        gaps = [b[0] - a[0] for a, b in zip(frames, frames[1:], strict=False)]
        assert min(gaps) >= 0.5 / rate, gaps  # never a burst (arrival times jitter a little)
        assert all(list(m["prices"]) == [BTC] for _, m in frames)
        assert eth.of_type("prices") == []  # subscribed to ETH only
        await btc.close()
        await eth.close()

    asyncio.run(main())


def test_trade_open_and_liquidation_reach_their_owner_only(live: Live, engine: Any, settings: Settings,
                                                          redis: redis_lib.Redis,
                                                          token: Callable[[str], str]) -> None:
    for user in ("alice", "bob"):
        assert call(settings, {"type": "create_account", "user_id": user}, client=redis)["ok"]
    publish_prices(settings, redis, {BTC: price(*BTC_100K)}, to_engine=True)

    async def main() -> None:
        alice = await WsClient.connect(live.url, cookie=token("alice"))
        bob = await WsClient.connect(live.url, cookie=token("bob"))
        for client in (alice, bob):
            await client.request({"type": "subscribe", "markets": [BTC]}, "subscribed")
            await client.wait_for("prices")  # the pusher knows this connection

        # Alice opens 0.01 BTC long at 50x, isolated
        rep = await asyncio.to_thread(call, settings, {
            "type": "open", "user_id": "alice", "market": BTC, "side": "long", "qty": 1_000_000,
            "leverage": 50, "slippage_bps": 100, "price": BTC_100K[1], "margin_mode": "isolated"}, 10.0, redis)
        assert rep["ok"], rep
        trade_id = rep["data"]["trade"]["id"]
        opened = await alice.wait_for("account", lambda m: any(
            e["type"] == "trade_opened" for e in m["events"]))
        acct = opened["account"]
        assert acct["balance"] == rep["data"]["balance"]  # the new balance, no refetch needed
        (trade,) = acct["trades"]
        assert trade["id"] == trade_id and trade["margin_mode"] == "isolated"
        assert trade["mark"] is not None and trade["unrealized_pnl"] is not None
        liquidation_price = trade["liquidation_price"]
        assert 0 < liquidation_price < BTC_100K[0]
        assert {"equity", "margin_used", "available", "margin_ratio_bps"} <= set(acct)
        assert any(e["type"] == "ledger" for e in opened["events"])

        # the mark falls through the liquidation price
        low = liquidation_price - 5_000_000
        publish_prices(settings, redis, {BTC: price(low - 10_000, low + 10_000, mark=low)}, to_engine=True)
        liquidated = await alice.wait_for("account", lambda m: any(
            e["type"] == "trade_closed" and e["reason"] == "liquidation" for e in m["events"]))
        assert liquidated["account"]["trades"] == []
        read_model = orjson.loads(redis.get(settings.keys.account("alice")))
        assert liquidated["account"]["balance"] == read_model["balance"]
        closed = next(e for e in liquidated["events"] if e["type"] == "trade_closed")
        assert closed["liquidated"] is True and closed["trade"]["id"] == trade_id

        await asyncio.sleep(1.0)
        assert bob.of_type("account") == []  # never Bob's business
        assert len(bob.of_type("prices")) >= 1
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_a_vanished_client_is_cleaned_up_after_a_gone(live: Live, settings: Settings, redis: redis_lib.Redis,
                                                      token: Callable[[str], str]) -> None:
    k = settings.keys
    publish_prices(settings, redis, {BTC: price(*BTC_100K)})

    async def main() -> None:
        client = await WsClient.connect(live.url, cookie=token("ghost"))
        await client.request({"type": "subscribe", "markets": [BTC]}, "subscribed")
        await client.wait_for("prices")
        (cid,) = [i.decode() for i in redis.smembers(k.ws_user_connections("ghost"))]

        # the gateway dies with the client's socket: no $disconnect ever runs
        await asyncio.to_thread(live.restart_gateway)
        assert redis.exists(k.ws_connection(cid)) and redis.sismember(k.ws_connections(), cid)

        async def tick_until_gone() -> None:
            i = 0
            while redis.exists(k.ws_connection(cid)):
                i += 1
                publish_prices(settings, redis, {BTC: price(BTC_100K[0] + i, BTC_100K[1] + i)})
                await asyncio.sleep(0.2)

        await asyncio.wait_for(tick_until_gone(), 20)
        assert not redis.sismember(k.ws_connections(), cid)
        assert not redis.sismember(k.ws_user_connections("ghost"), cid)

        # the pusher carries on with the clients that are there
        fresh = await WsClient.connect(live.url, cookie=token("ghost"))
        await fresh.request({"type": "subscribe", "markets": [BTC]}, "subscribed")
        publish_prices(settings, redis, {BTC: price(*BTC_100K, ts=777)})
        await fresh.wait_for("prices", lambda m: m["prices"][BTC]["ts"] == 777)
        await fresh.close()

    asyncio.run(main())


def test_several_pusher_processes_share_the_connections(live_factory: Callable[..., Live], settings: Settings,
                                                        redis: redis_lib.Redis,
                                                        token: Callable[[str], str]) -> None:
    live = live_factory(WS_PUSH_PROCESSES="2")
    live.pusher.wait_subscribed(redis, settings.keys.prices_channel())  # type: ignore[union-attr]
    deadline = time.monotonic() + 20
    while redis.pubsub_numsub(settings.keys.prices_channel())[0][1] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    publish_prices(settings, redis, {BTC: price(*BTC_100K, ts=5)})

    async def main() -> None:
        clients = [await WsClient.connect(live.url, cookie=token(f"multi-{i}")) for i in range(8)]
        for c in clients:
            await c.request({"type": "subscribe", "markets": [BTC]}, "subscribed")
            await c.wait_for("prices")
        publish_prices(settings, redis, {BTC: price(*BTC_100K, ts=6)})
        for c in clients:
            await c.wait_for("prices", lambda m: m["prices"][BTC]["ts"] == 6)
        await asyncio.sleep(0.5)
        for c in clients:  # each connection is served by exactly one process: once, not twice
            assert len([m for m in c.of_type("prices") if m["prices"][BTC]["ts"] == 6]) == 1
            await c.close()

    asyncio.run(main())
