"""The pusher service on the real Redis (pub/sub, registry) posting to moto's
@connections; connections are registered by the real ws handler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import pytest
import redis as redis_lib

from opex_common.settings import Settings
from opex_engine.pusher.config import pusher_settings
from opex_engine.pusher.pusher import PusherService
from opex_ws import handler as ws_handler
from tests.ws.support import (
    BTC,
    ETH,
    FakeLambdaContext,
    MotoApi,
    connect_event,
    message_event,
    price,
    publish_prices,
)

pytestmark = pytest.mark.integration


def call(event: dict[str, Any]) -> dict[str, Any]:
    return ws_handler.handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


async def eventually(check: Callable[[], Any], timeout: float = 8.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout}s")


def with_service(moto_settings: Settings, redis: redis_lib.Redis,
                 body: Callable[[PusherService], Awaitable[None]], **overrides: Any) -> None:
    settings = pusher_settings(moto_settings).model_copy(update={
        "ws_price_rate_per_s": 5.0, "ws_registry_refresh_s": 0.3, **overrides})

    async def main() -> None:
        service = PusherService(settings)
        stop = asyncio.Event()
        task = asyncio.ensure_future(service.run(stop))
        try:
            await eventually(lambda: redis.pubsub_numsub(settings.keys.prices_channel())[0][1] >= 1,
                             what="the pusher subscribed")
            await body(service)
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    asyncio.run(main())


def run_in_thread(fn: Callable[..., Any], *args: Any) -> Coroutine[Any, Any, Any]:
    # the handler runs its own event loop per thread, as in Lambda
    return asyncio.to_thread(fn, *args)


def test_prices_snapshot_then_live_frames(ws_app: Any, moto_settings: Settings, redis: redis_lib.Redis,
                                          moto_api: MotoApi, token: Callable[[str], str]) -> None:
    publish_prices(moto_settings, redis, {BTC: price(1_000_000_000, 1_000_010_000, ts=1)})

    async def body(service: PusherService) -> None:
        assert (await run_in_thread(call, connect_event("c1", cookie=f"jwt={token('ua')}")))["statusCode"] == 200
        await run_in_thread(call, message_event("c1", '{"type":"subscribe","markets":["BTC_USDC_PERP"]}'))
        # the reply, and the latest prices at once (from the prices hash); the
        # reply normally comes first, but the pusher's periodic full read may
        # see the subscription a moment before the handler has replied
        await eventually(lambda: len(moto_api.frames("c1")) >= 2, what="subscribed + snapshot")
        by_type = {f["type"]: f for f in moto_api.frames("c1")[:2]}
        assert by_type["subscribed"] == {"type": "subscribed", "markets": [BTC]}
        assert by_type["prices"]["prices"][BTC]["ts"] == 1
        started = time.monotonic()
        for i in range(2, 22):
            publish_prices(moto_settings, redis, {BTC: price(1_000_000_000 + i, 1_000_010_000 + i, ts=i),
                                                  ETH: price(30_000_000, 30_001_000, ts=i)})
            await asyncio.sleep(0.05)
        await eventually(lambda: moto_api.frames("c1")[-1]["prices"][BTC]["ts"] == 21, what="the last price")
        elapsed = time.monotonic() - started
        frames = [f for f in moto_api.frames("c1") if f["type"] == "prices"][1:]
        assert len(frames) <= elapsed * 5 + 2  # coalesced: at most 5 a second, whatever the tick rate
        assert all(set(f["prices"]) == {BTC} for f in frames)  # only what it subscribed to

    with_service(moto_settings, redis, body)


def test_account_changes_reach_their_owner_only(ws_app: Any, moto_settings: Settings, redis: redis_lib.Redis,
                                                moto_api: MotoApi, token: Callable[[str], str]) -> None:
    account = {"user_id": "ua", "balance": 99_000_000, "realized_pnl": 0, "fees_paid": 500, "funding_paid": 0,
               "trades": [], "orders": [], "version": 2, "updated_ms": 0}
    events = [{"id": "0:1-0:0", "type": "ledger", "user_id": "ua", "kind": "fee", "amount": -500,
               "balance_after": 99_000_000, "ts": 1}]

    async def body(service: PusherService) -> None:
        await run_in_thread(call, connect_event("a1", cookie=f"jwt={token('ua')}"))
        await run_in_thread(call, connect_event("b1", cookie=f"jwt={token('ub')}"))
        await eventually(lambda: len(service.pusher.conns) == 2, what="both connections known")
        redis.publish(moto_settings.keys.accounts_channel(),
                      orjson.dumps({"accounts": [{"user_id": "ua", "account": account, "events": events}]}))
        frame = await eventually(lambda: moto_api.frames("a1"), what="the account push")
        assert frame[0]["type"] == "account" and frame[0]["events"] == events
        assert frame[0]["account"]["balance"] == 99_000_000
        await asyncio.sleep(0.3)
        assert moto_api.frames("b1") == []

    with_service(moto_settings, redis, body)


def test_gone_removes_the_connection_from_the_registry(ws_app: Any, moto_settings: Settings,
                                                       redis: redis_lib.Redis, moto_api: MotoApi,
                                                       token: Callable[[str], str]) -> None:
    k = moto_settings.keys

    async def body(service: PusherService) -> None:
        for cid in ("gone1", "alive1"):
            await run_in_thread(call, connect_event(cid, cookie=f"jwt={token('ua')}"))
            await run_in_thread(call, message_event(cid, '{"type":"subscribe","markets":["BTC_USDC_PERP"]}'))
        await eventually(lambda: len(service.pusher.by_market[BTC]) == 2, what="both subscribed")
        moto_api.gone.add("gone1")
        publish_prices(moto_settings, redis, {BTC: price(1_000_000_000, 1_000_010_000)})
        await eventually(lambda: not redis.exists(k.ws_connection("gone1")), what="gone1 removed")
        assert not redis.sismember(k.ws_connections(), "gone1")
        assert not redis.sismember(k.ws_user_connections("ua"), "gone1")
        assert redis.exists(k.ws_connection("alive1")) and "alive1" in service.pusher.conns
        assert "gone1" not in service.pusher.conns

    with_service(moto_settings, redis, body)


def test_expired_entries_are_pruned_and_new_ones_found_without_notice(
        ws_app: Any, moto_settings: Settings, redis: redis_lib.Redis, moto_api: MotoApi) -> None:
    k = moto_settings.keys

    async def body(service: PusherService) -> None:
        redis.sadd(k.ws_connections(), "leaked")  # its hash expired long ago
        # written without a change notification (as if pub/sub lost it)
        redis.hset(k.ws_connection("quiet"), mapping={"user_id": "uq", "markets": '["ETH_USDC_PERP"]',
                                                      "connected_at": "0"})
        redis.sadd(k.ws_connections(), "quiet")
        await eventually(lambda: not redis.sismember(k.ws_connections(), "leaked"), what="leaked id pruned")
        await eventually(lambda: "quiet" in service.pusher.conns, what="quiet connection found")

    with_service(moto_settings, redis, body)


def test_bad_payloads_are_skipped_and_a_lost_redis_connection_is_recovered(
        ws_app: Any, moto_settings: Settings, redis: redis_lib.Redis, moto_api: MotoApi,
        token: Callable[[str], str]) -> None:
    k = moto_settings.keys

    async def body(service: PusherService) -> None:
        await run_in_thread(call, connect_event("c1", cookie=f"jwt={token('ua')}"))
        await run_in_thread(call, message_event("c1", '{"type":"subscribe","markets":["BTC_USDC_PERP"]}'))
        await eventually(lambda: "c1" in service.pusher.conns, what="c1 known")
        for channel in (k.prices_channel(), k.accounts_channel(), f"{k.prefix}:ws:changes"):
            for junk in (b"", b"null", b"[1,2]", b'{"prices": {"BTC_USDC_PERP": {"bid": -1}}}',
                         b'{"accounts": [{"user_id": "ua", "account": {"balance": "x"}}]}', b"\xff\xfe"):
                redis.publish(channel, junk)
        # the pusher's own pub/sub connection drops (Redis restart, failover)
        mine = [c for c in redis.client_list() if c.get("name") == f"{k.prefix}:pusher:0" and "psub" in c
                and int(c.get("sub", 0)) > 0]
        assert mine, "the pusher's pub/sub connection is named"
        redis.client_kill_filter(_id=mine[0]["id"])
        await eventually(lambda: redis.pubsub_numsub(k.prices_channel())[0][1] >= 1, what="resubscribed")
        publish_prices(moto_settings, redis, {BTC: price(1_000_000_000, 1_000_010_000, ts=42)})
        await eventually(lambda: any(f.get("prices", {}).get(BTC, {}).get("ts") == 42
                                     for f in moto_api.frames("c1")), what="prices after reconnecting")
        assert service.pusher.stats["bad_prices"] >= 1

    with_service(moto_settings, redis, body)
