"""The local gateway as a process, with the real handlers and real WebSocket
clients: the upgrade, the routes, and the @connections API through boto3."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import boto3
import orjson
import pytest
import redis as redis_lib
import websockets
from botocore.config import Config

from opex_common.settings import Settings
from tests.ws.support import Live, WsClient

pytestmark = pytest.mark.integration


def management(live: Live) -> Any:
    # what the pusher uses, pointed at the gateway; the gateway does not check SigV4
    return boto3.client("apigatewaymanagementapi", endpoint_url=f"http://127.0.0.1:{live.port}",
                        region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local",
                        config=Config(retries={"total_max_attempts": 1}))


def connection_ids(redis: redis_lib.Redis, settings: Settings, user_id: str) -> list[str]:
    return sorted(i.decode() for i in redis.smembers(settings.keys.ws_user_connections(user_id)))


async def wait_until(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


def test_the_upgrade_is_refused_without_a_session(live_factory: Callable[..., Live]) -> None:
    live = live_factory(with_pusher=False)

    async def main() -> None:
        for headers in (None, {"Cookie": "jwt=forged"}):
            with pytest.raises(websockets.InvalidStatus) as info:
                await websockets.connect(live.url, additional_headers=headers, open_timeout=10)
            assert info.value.response.status_code == 401
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(live.url + "/?ticket=" + "z" * 43, open_timeout=10)
        assert info.value.response.status_code == 401

    asyncio.run(main())


def test_messages_and_replies_through_the_gateway(live_factory: Callable[..., Live], redis: redis_lib.Redis,
                                                  settings: Settings, token: Callable[[str], str]) -> None:
    live = live_factory(with_pusher=False)

    async def main() -> None:
        client = await WsClient.connect(live.url, cookie=token("gw-user"))
        try:
            assert (await client.request({"type": "ping"}, "pong"))["ts"] > 0
            sub = await client.request({"type": "subscribe", "markets": ["SOL_USDC_PERP"]}, "subscribed")
            assert sub["markets"] == ["SOL_USDC_PERP"]
            err = await client.request("this is not json", "error")
            assert err["code"] == "bad_request"
            start = len(client.messages)
            await client.ws.send(b'{"type":"ping"}')  # a binary frame reaches the handler base64-encoded
            await client.wait_for("pong", after=start)
            (cid,) = connection_ids(redis, settings, "gw-user")
            assert orjson.loads(redis.hget(settings.keys.ws_connection(cid), "markets")) == ["SOL_USDC_PERP"]
        finally:
            await client.close()
        # $disconnect ran
        await wait_until(lambda: not connection_ids(redis, settings, "gw-user"))
        assert not redis.exists(settings.keys.ws_connection(cid))

    asyncio.run(main())


def test_a_ticket_from_the_api_opens_the_socket_once(live_factory: Callable[..., Live], redis: redis_lib.Redis,
                                                      settings: Settings) -> None:
    live = live_factory(with_pusher=False)
    ticket = "t" * 43
    redis.set(settings.keys.ws_ticket(ticket), orjson.dumps({"user_id": "tk-user", "email": "t@x.io"}), ex=30)

    async def main() -> None:
        client = await WsClient.connect(f"{live.url}/?ticket={ticket}")
        assert (await client.request({"type": "ping"}, "pong"))["type"] == "pong"
        await client.close()
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{live.url}/?ticket={ticket}", open_timeout=10)
        assert info.value.response.status_code == 401

    asyncio.run(main())


def test_the_connections_api(live_factory: Callable[..., Live], redis: redis_lib.Redis, settings: Settings,
                             token: Callable[[str], str]) -> None:
    live = live_factory(with_pusher=False)
    api = management(live)

    async def main() -> None:
        client = await WsClient.connect(live.url, cookie=token("api-user"), user_agent_header="pytest-ws")
        (cid,) = await wait_until(lambda: connection_ids(redis, settings, "api-user"))
        info = await asyncio.to_thread(api.get_connection, ConnectionId=cid)
        assert info["Identity"]["SourceIp"] == "127.0.0.1" and info["Identity"]["UserAgent"] == "pytest-ws"
        assert abs(info["ConnectedAt"].timestamp() - time.time()) < 60

        await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b'{"type":"hello","n":1}')
        assert (await client.wait_for("hello"))["n"] == 1

        for call in (lambda: api.post_to_connection(ConnectionId="nope=", Data=b"{}"),
                     lambda: api.get_connection(ConnectionId="nope="),
                     lambda: api.delete_connection(ConnectionId="nope=")):
            with pytest.raises(api.exceptions.GoneException) as gone:
                await asyncio.to_thread(call)
            assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        with pytest.raises(api.exceptions.PayloadTooLargeException):
            await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b"x" * (129 * 1024))

        await asyncio.to_thread(api.delete_connection, ConnectionId=cid)
        await asyncio.wait_for(client.ws.wait_closed(), 10)
        assert client.ws.close_code == 1000
        await wait_until(lambda: not redis.exists(settings.keys.ws_connection(cid)))  # $disconnect ran
        with pytest.raises(api.exceptions.GoneException):
            await asyncio.to_thread(api.post_to_connection, ConnectionId=cid, Data=b"{}")

    asyncio.run(main())


def test_an_oversized_frame_closes_the_connection(live_factory: Callable[..., Live],
                                                          redis: redis_lib.Redis, settings: Settings,
                                                          token: Callable[[str], str]) -> None:
    live = live_factory(with_pusher=False)

    async def main() -> None:
        client = await WsClient.connect(live.url, cookie=token("big"), max_size=None)
        await client.ws.send("x" * (129 * 1024))  # over API Gateway's 128 KB
        await asyncio.wait_for(client.ws.wait_closed(), 10)
        assert client.ws.close_code == 1009
        await wait_until(lambda: not connection_ids(redis, settings, "big"))

    asyncio.run(main())


def test_idle_connections_are_closed_like_api_gateway(settings: Settings, redis: redis_lib.Redis, tmp_path: Any,
                                                      token: Callable[[str], str]) -> None:
    from tests.helpers import free_port
    from tests.ws.support import gateway_process

    port = free_port()
    proc = gateway_process(settings, port, tmp_path)
    proc.argv += ["--idle-timeout-s", "1"]
    proc.start().wait_port(port)
    try:
        async def main() -> None:
            client = await WsClient.connect(f"ws://127.0.0.1:{port}", cookie=token("idle"))
            await asyncio.wait_for(client.ws.wait_closed(), 10)
            assert client.ws.close_code == 1001
            await wait_until(lambda: not connection_ids(redis, settings, "idle"))

        asyncio.run(main())
    finally:
        proc.stop()


def test_stopping_the_gateway_disconnects_everyone_cleanly(live_factory: Callable[..., Live],
                                                           redis: redis_lib.Redis, settings: Settings,
                                                           token: Callable[[str], str]) -> None:
    live = live_factory(with_pusher=False)

    async def main() -> None:
        clients = [await WsClient.connect(live.url, cookie=token(f"bye-{i}")) for i in range(3)]
        assert redis.scard(settings.keys.ws_connections()) == 3
        assert await asyncio.to_thread(live.gateway.stop) == 0  # SIGTERM
        for c in clients:
            await asyncio.wait_for(c.ws.wait_closed(), 10)
            assert c.ws.close_code == 1001
        assert redis.scard(settings.keys.ws_connections()) == 0  # $disconnect ran for each

    asyncio.run(main())
