"""The poller against the fake Backpack server: subscription, ticks into every
shard, pub/sub and the prices hash, coalescing, pings, reconnects."""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
import redis.asyncio as aioredis

from tests.fakes.backpack import FakeBackpack
from tests.prices.harness import StreamReader, fast_config, poller_settings, run, running_poller, wait_until

pytestmark = pytest.mark.integration

SYMBOLS = ["BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"]

# The captured frames quoted in backpack.md, verbatim.
SOL_BOOK = ('{"stream":"bookTicker.SOL_USDC_PERP","data":{"e":"bookTicker","E":1788367430247487,'
            '"s":"SOL_USDC_PERP","a":"98.97","A":"22.39","b":"98.96","B":"288.77","u":4330360995,'
            '"T":1788367430246081}}')
SOL_MARK = ('{"stream":"markPrice.SOL_USDC_PERP","data":{"e":"markPrice","E":1788367430422109,'
            '"T":1788367430421396,"s":"SOL_USDC_PERP","p":"98.94","f":"0.0000125","i":"98.94998504",'
            '"n":1788368400000}}')


def test_subscription_frame_is_exactly_backpacks(settings) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake, running_poller(poller_settings(settings, fake), fast_config()):
            await fake.wait_subscribed(6)
            assert len(fake.received) == 1
            assert json.loads(fake.received[0]) == {
                "method": "SUBSCRIBE",
                "params": [f"{kind}.{s}" for s in SYMBOLS for kind in ("bookTicker", "markPrice")],
            }
            # compact JSON, exactly the documented shape and key order
            assert fake.received[0] == (
                '{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC_PERP","markPrice.BTC_USDC_PERP",'
                '"bookTicker.ETH_USDC_PERP","markPrice.ETH_USDC_PERP","bookTicker.SOL_USDC_PERP",'
                '"markPrice.SOL_USDC_PERP"]}'
            )

    run(scenario())


def test_ticks_reach_every_shard_the_hash_and_the_channel(settings, redis) -> None:
    s = None

    async def scenario() -> None:
        nonlocal s
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, engine_shards=3)
            sub = aioredis.Redis.from_url(s.redis_url)
            pubsub = sub.pubsub()
            await pubsub.subscribe(s.keys.prices_channel())
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()) as poller:
                    await fake.wait_subscribed(6)
                    assert await fake.send("bookTicker.SOL_USDC_PERP", SOL_BOOK) == 1
                    assert await fake.send("markPrice.SOL_USDC_PERP", SOL_MARK) == 1

                    async def complete() -> bool:
                        for shard in range(3):
                            ticks = await reader.messages(shard, "tick")
                            if not ticks or ticks[-1]["mark"] != 989400:
                                return False
                        return True

                    await wait_until(complete, what="the full tick in all three shards")
                    expected = {"type": "tick", "market": "SOL_USDC_PERP", "bid": 989600, "ask": 989700,
                                "mark": 989400, "index": 989500, "funding_rate": 12500,
                                "next_funding_ms": 1788368400000, "ts": 1788367430422}
                    for shard in range(3):
                        ticks = await reader.messages(shard, "tick")
                        assert ticks[-1] == expected
                        # before the first markPrice the mark is the mid (provisional), never missing
                        assert all(t["bid"] == 989600 and t["ask"] == 989700 for t in ticks)
                        assert {t["market"] for t in ticks} == {"SOL_USDC_PERP"}
                    assert poller.stream_entries == 3 * poller.forwarded
                    price = await reader.price("SOL_USDC_PERP")
                    assert price == {"bid": 989600, "ask": 989700, "mark": 989400, "index": 989500,
                                     "funding_rate": 12500, "next_funding_ms": 1788368400000,
                                     "ts": 1788367430422, "source": "backpack"}
                    seen: list[dict] = []

                    async def got_full_push() -> bool:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.05)
                        if msg:
                            seen.append(orjson.loads(msg["data"]))
                        return any(m["prices"].get("SOL_USDC_PERP", {}).get("mark") == 989400 for m in seen)

                    await wait_until(got_full_push, what="a prices message on the live channel")
                    assert all(m["type"] == "prices" and set(m["prices"]) == {"SOL_USDC_PERP"} for m in seen)
                    status = await wait_until(
                        lambda: _status_where(reader, lambda st: st["source"] == "backpack"), what="status")
                    assert status["connected"] is True and status["mode"] == "backpack"
                    assert status["last_tick_age_ms"]["SOL_USDC_PERP"] is not None
                    assert status["last_tick_age_ms"]["BTC_USDC_PERP"] is None
                    assert status["dropped"] == {}
            finally:
                await pubsub.aclose()
                await sub.aclose()
                await reader.close()

    run(scenario())


def test_updates_are_coalesced_to_one_tick_per_interval_with_the_latest_prices(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, tick_interval_ms=300)
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()):
                    await fake.wait_subscribed(6)
                    for i in range(30):  # back to back, well inside one interval
                        await fake.emit_book("BTC_USDC_PERP", f"{65000 + i}.1", f"{65000 + i}.3")
                    await fake.emit_mark("BTC_USDC_PERP", "65029.2", "65029.25", "-0.000031234567890123456789")

                    async def latest_arrived() -> bool:
                        ticks = await reader.messages(0, "tick")
                        return bool(ticks) and ticks[-1]["mark"] == 650292000

                    await wait_until(latest_arrived, what="the coalesced tick")
                    entries = [(eid, m) for eid, m in await reader.entries(0) if m["type"] == "tick"]
                    assert 1 <= len(entries) <= 3, entries
                    last = entries[-1][1]
                    assert (last["bid"], last["ask"], last["index"]) == (650291000, 650293000, 650292500)
                    assert last["funding_rate"] == -31235  # 1e-9 units, half-even
                    stamps = [int(eid.split("-")[0]) for eid, _ in entries]
                    assert all(b - a >= 290 for a, b in zip(stamps, stamps[1:], strict=False)), stamps
            finally:
                await reader.close()

    run(scenario())


def test_answers_the_servers_pings(settings) -> None:
    async def scenario() -> None:
        async with FakeBackpack(ping_interval=0.05, pong_timeout=0.5) as fake, \
                running_poller(poller_settings(settings, fake), fast_config()):
            await fake.wait_subscribed(6)
            await wait_until(lambda: fake.pongs_received >= 5, what="5 pongs")
            assert fake.dropped_for_pong == 0
            assert fake.total_connections == 1

    run(scenario())


@pytest.mark.parametrize("how", ["abort", "close"])
def test_reconnects_and_resubscribes_after_the_server_drops_it(settings, redis, how) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake)
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()) as poller:
                    await fake.wait_subscribed(6)
                    await fake.emit_book("ETH_USDC_PERP", "3200.10", "3200.20")
                    await wait_until(lambda: reader.messages(0, "tick"), what="first tick")
                    assert await fake.drop_clients(how) == 1
                    await wait_until(lambda: fake.total_connections == 2, what="a new connection")
                    await fake.wait_subscribed(6)
                    assert fake.received[0] == fake.received[1]  # the same SUBSCRIBE again
                    await fake.emit_book("ETH_USDC_PERP", "3201.10", "3201.20")

                    async def second() -> bool:
                        ticks = await reader.messages(0, "tick", "ETH_USDC_PERP")
                        return bool(ticks) and ticks[-1]["bid"] == 32011000

                    await wait_until(second, what="a tick after the reconnect")
                    assert poller.client is not None and poller.client.connects == 2
                    status = await wait_until(
                        lambda: _status_where(reader, lambda st: st["reconnects"] == 1), what="status")
                    assert status["connected"] is True
            finally:
                await reader.close()

    run(scenario())


async def _status_where(reader: StreamReader, pred) -> dict | None:  # type: ignore[no-untyped-def]
    st = await reader.status()
    return st if st and pred(st) else None


def test_reconnect_backoff_grows_while_the_server_refuses(settings) -> None:
    """503 at the handshake: attempts continue, spaced by growing, jittered delays."""

    async def scenario() -> None:
        async with FakeBackpack() as fake:
            fake.available = False
            cfg = fast_config(reconnect_min_s=0.02, reconnect_max_s=0.32)
            async with running_poller(poller_settings(settings, fake), cfg) as poller:
                await wait_until(lambda: fake.refused_connections >= 6, what="6 refused attempts")
                assert poller.client is not None
                assert poller.client.connected is False and "503" in poller.client.last_error
                fake.available = True
                await fake.wait_subscribed(6, timeout=15)  # generous: CI machines are shared
                assert poller.client.connects == 1

    run(scenario())


def test_graceful_stop_closes_the_socket(settings) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            async with running_poller(poller_settings(settings, fake), fast_config()):
                await fake.wait_subscribed(6)
            await wait_until(lambda: not fake.subscriptions, timeout=10, what="the client to disconnect")

    run(scenario())


def test_fake_drops_a_client_that_does_not_pong(settings) -> None:
    """The fake itself: a client that never answers pings is disconnected."""
    from websockets.asyncio.client import connect
    from websockets.frames import Frame, Opcode

    async def scenario() -> None:
        async with FakeBackpack(ping_interval=0.05, pong_timeout=0.1) as fake, \
                connect(fake.ws_url, ping_interval=None) as ws:
            send_frame = ws.protocol.send_frame

            def no_pongs(frame: Frame) -> None:  # a deaf client
                if frame.opcode is not Opcode.PONG:
                    send_frame(frame)

            ws.protocol.send_frame = no_pongs  # type: ignore[method-assign]
            await ws.send('{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC_PERP"],"id":7}')
            await wait_until(lambda: fake.dropped_for_pong == 1, what="the drop")
            assert fake.received == ['{"method":"SUBSCRIBE","params":["bookTicker.BTC_USDC_PERP"],"id":7}']

    run(scenario())


def test_fake_rest_endpoints_speak_backpacks_errors(settings) -> None:
    import aiohttp

    async def scenario() -> None:
        async with FakeBackpack() as fake, aiohttp.ClientSession() as http:
            async with http.get(f"{fake.rest_url}/api/v1/klines", params={"symbol": "NOPE", "interval": "1m",
                                                                          "startTime": "0"}) as r:
                assert r.status == 400 and (await r.json())["code"] == "INVALID_SYMBOL"
            async with http.get(f"{fake.rest_url}/api/v1/klines",
                                params={"symbol": "BTC_USDC_PERP", "interval": "1m"}) as r:
                assert r.status == 400 and "startTime" in (await r.json())["message"]
            await fake.emit_mark("BTC_USDC_PERP", "65000.5", "65001")  # no client: only recorded
            async with http.get(f"{fake.rest_url}/api/v1/markPrices") as r:
                body = await r.json()
            assert body[0]["symbol"] == "BTC_USDC_PERP" and body[0]["markPrice"] == "65000.5"
            assert set(body[0]) == {"symbol", "markPrice", "indexPrice", "fundingRate", "nextFundingTimestamp"}

    run(scenario())


def test_simulated_mode_never_connects(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, price_source="simulated", tick_interval_ms=50)
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()) as poller:
                    await wait_until(lambda: reader.messages(0, "tick", "BTC_USDC_PERP"), what="simulated ticks")
                    assert poller.client is None and poller.source == "simulated"
                    assert (await reader.price("BTC_USDC_PERP"))["source"] == "simulated"  # type: ignore[index]
                await asyncio.sleep(0.05)
                assert fake.total_connections == 0
            finally:
                await reader.close()

    run(scenario())


def test_a_silent_socket_is_replaced(settings) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            cfg = fast_config(silence_timeout_s=0.3)
            async with running_poller(poller_settings(settings, fake), cfg) as poller:
                await fake.wait_subscribed(6)
                await wait_until(lambda: fake.total_connections >= 2, timeout=10, what="a reconnect")
                assert poller.client is not None and "1001" in poller.client.last_error

    run(scenario())


def test_marks_are_primed_from_rest_until_the_stream_sends_one(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            fake.set_mark_prices([{"symbol": "ETH_USDC_PERP", "markPrice": "3199.5", "indexPrice": "3199.7",
                                   "fundingRate": "-0.00002", "nextFundingTimestamp": 1788368400000}])
            s = poller_settings(settings, fake)
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()) as poller:
                    await fake.wait_subscribed(6)
                    eth = poller.book.states["ETH_USDC_PERP"]
                    await wait_until(lambda: eth.primed is not None, what="the markPrices answer")
                    await fake.emit_book("ETH_USDC_PERP", "3200.10", "3200.20")
                    ticks = await wait_until(lambda: reader.messages(0, "tick", "ETH_USDC_PERP"), what="a tick")
                    assert (ticks[-1]["mark"], ticks[-1]["index"], ticks[-1]["funding_rate"]) == (
                        31995000, 31997000, -20000)
            finally:
                await reader.close()

    run(scenario())
