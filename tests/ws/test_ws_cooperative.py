"""Posting in greenlets on the event loop (cooperative.py, the pusher's default mode).

The Hub on a real event loop with real sockets: jobs at most ``limit`` at
once, in order, started only from the loop's own greenlet (also when submitted
from a job or another thread), a failing job that does not break the count,
socket waits with timeouts, ``close`` ending the jobs that wait. Then boto3's
client over the KeepAliveTransport inside hub greenlets, against the scripted
HTTP server: the same requests and outcomes as when blocking, a slow answer
that never delays the others nor the loop, timeouts, refused connections,
servers that close, TLS, and connections shared between blocking callers and
greenlets. Last, the Pusher itself in greenlet mode with one slow connection.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from greenlet import getcurrent

from opex_engine.pusher.config import PusherSettings
from opex_engine.pusher.cooperative import Hub, current_hub
from opex_engine.pusher.poster import OK, Poster, drop_idle_handlers
from opex_engine.pusher.pusher import Pusher
from opex_engine.pusher.registry import Registration
from opex_engine.pusher.transport import KeepAliveTransport
from tests.ws.support import BTC, GONE_410, OK_200, HttpServer, answer_ok_or_gone, price, tls_server

pytestmark = pytest.mark.integration  # real sockets on 127.0.0.1


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def in_hub(hub: Hub, fn: Callable[[], Any]) -> Any:
    """``fn()`` as a hub job; its result or its exception."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def job() -> None:
        try:
            done.set_result(fn())
        except BaseException as exc:  # handed to the test
            done.set_exception(exc)

    hub.submit(job)
    return await done


def client_for(url: str, read_timeout: float = 3.0, verify: Any = None) -> tuple[Any, KeepAliveTransport]:
    client = boto3.session.Session(aws_access_key_id="local", aws_secret_access_key="local",
                                   region_name="us-east-1").client(
        "apigatewaymanagementapi", endpoint_url=url, verify=verify,
        config=Config(parameter_validation=False, retries={"total_max_attempts": 1},
                      read_timeout=read_timeout, connect_timeout=1))
    transport = KeepAliveTransport(url, connect_timeout=1, read_timeout=read_timeout, max_connections=8)
    assert transport.attach(client)
    return client, transport


# ====================================================================== the hub
def test_jobs_run_in_order_at_most_limit_at_once_and_only_from_the_loop() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, limit=3)
        root = getcurrent()
        pairs = [socket.socketpair() for _ in range(6)]
        started: list[int] = []
        finished: list[int] = []
        peak = 0

        def job(i: int) -> None:
            nonlocal peak
            assert current_hub() is hub and getcurrent().parent is root  # never nested in another job
            started.append(i)
            peak = max(peak, hub.running)
            a, _ = pairs[i]
            a.setblocking(False)
            hub.wait_socket(a, False, 5.0)
            assert a.recv(10) == b"go"
            finished.append(i)
            if i == 0:
                hub.submit(finished.append, 100)  # from inside a job: queued, started by the loop

        for i in range(6):
            hub.submit(job, i)
        assert started == [0, 1, 2] and hub.running == 3  # the others wait, in order
        for i in (2, 0, 1, 3, 4, 5):
            pairs[i][1].send(b"go")
            await asyncio.sleep(0.05)
        assert started == [0, 1, 2, 3, 4, 5] and peak == 3
        assert finished[:2] == [2, 0] and sorted(finished) == [0, 1, 2, 3, 4, 5, 100]
        assert hub.running == 0 and current_hub() is None

        # from another thread: started by the loop
        threading.Thread(target=hub.submit, args=(finished.append, 200)).start()
        await asyncio.sleep(0.1)
        assert finished[-1] == 200

        # a job that raises is logged; the hub's count stays right
        hub.submit(lambda: 1 / 0)
        hub.submit(finished.append, 300)
        assert hub.running == 0 and finished[-1] == 300
        for a, b in pairs:
            a.close()
            b.close()

    run(scenario())


def test_socket_waits_time_out_and_close_ends_the_waiting_jobs() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hub = Hub(loop, limit=4)
        a, b = socket.socketpair()
        a.setblocking(False)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await in_hub(hub, lambda: hub.wait_socket(a, False, 0.2))
        assert 0.15 < time.monotonic() - t0 < 2.0
        # the reader was removed: a later byte wakes nobody and breaks nothing
        b.send(b"x")
        await asyncio.sleep(0.05)

        ended: list[str] = []
        pairs = [socket.socketpair() for _ in range(2)]

        def waiter(sock: socket.socket) -> None:
            try:
                hub.wait_socket(sock, False, None)
            finally:
                ended.append("ended")

        for x, _ in pairs:
            x.setblocking(False)
            hub.submit(waiter, x)
        assert hub.running == 2 and not ended
        hub.close()  # GreenletExit in both
        assert ended == ["ended", "ended"] and hub.running == 0
        for _, y in pairs:
            y.send(b"late")  # their readers are gone: nothing wakes
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError):
            hub.submit(print)
        for x, y in [*pairs, (a, b)]:
            x.close()
            y.close()

    run(scenario())


# ====================================================================== boto3 in greenlets
def test_posts_in_greenlets_are_the_posts_made_blocking(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(answer_ok_or_gone)
    client, transport = client_for(server.url)
    client.post_to_connection(ConnectionId="blocking", Data=b'{"a":1}')

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), limit=8)
        await in_hub(hub, lambda: client.post_to_connection(ConnectionId="green", Data=b'{"a":1}'))
        with pytest.raises(client.exceptions.GoneException):
            await in_hub(hub, lambda: client.post_to_connection(ConnectionId="gone", Data=b"{}"))
        results = await asyncio.gather(*(in_hub(hub, lambda i=i: client.post_to_connection(
            ConnectionId=f"c{i}", Data=b"{}")) for i in range(20)))
        assert all(r["ResponseMetadata"]["HTTPStatusCode"] == 200 for r in results)

    run(scenario())
    blocking, green = server.requests[0], server.requests[1]
    names = [line.split(b":")[0] for line in blocking.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert names == [line.split(b":")[0] for line in green.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]]
    assert blocking.split(b"\r\n", 1)[0] == b"POST /@connections/blocking HTTP/1.1"
    assert green.split(b"\r\n", 1)[0] == b"POST /@connections/green HTTP/1.1"
    assert blocking.endswith(b'{"a":1}') and green.endswith(b'{"a":1}')
    # 22 posts, 20 of them at once: at most 8 connections (the transport's pool)
    assert transport.requests == 23 and transport.connections_opened <= 9


def test_a_slow_answer_delays_neither_the_other_posts_nor_the_loop(server_factory: Callable[..., HttpServer]) -> None:
    def respond(req: bytes, i: int) -> bytes:
        if b"/slow" in req.split(b"\r\n", 1)[0]:
            time.sleep(0.8)
        return OK_200

    server = server_factory(respond)
    client, _ = client_for(server.url)

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), limit=4)
        done: dict[str, float] = {}
        t0 = time.monotonic()

        def post(cid: str) -> None:
            client.post_to_connection(ConnectionId=cid, Data=b"{}")
            done[cid] = time.monotonic() - t0

        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while "slow" not in done:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.ensure_future(ticker())
        hub.submit(post, "slow")
        for i in range(30):
            hub.submit(post, f"fast{i}")
        while len(done) < 31:
            await asyncio.sleep(0.01)
        await tick_task
        assert max(v for k, v in done.items() if k != "slow") < done["slow"] - 0.3  # the fast ones went first
        assert ticks >= 20  # the loop ran all along (not blocked for 0.8 s)

    run(scenario())


def test_timeouts_refusals_and_servers_that_close(server_factory: Callable[..., HttpServer]) -> None:
    slow = server_factory(lambda req, i: (time.sleep(1.5), OK_200)[1])
    closing = server_factory(lambda req, i: OK_200 if i == 0 else None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused_port = s.getsockname()[1]

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), limit=4)
        client, _ = client_for(slow.url, read_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(ReadTimeoutError):
            await in_hub(hub, lambda: client.post_to_connection(ConnectionId="slow", Data=b"{}"))
        assert time.monotonic() - t0 < 1.2

        client, _ = client_for(f"http://127.0.0.1:{refused_port}")
        with pytest.raises(EndpointConnectionError):
            await in_hub(hub, lambda: client.post_to_connection(ConnectionId="x", Data=b"{}"))

        client, _ = client_for(closing.url)
        await in_hub(hub, lambda: client.post_to_connection(ConnectionId="a", Data=b"{}"))  # connection 0, kept
        closing.respond = lambda req, i: None  # read the request, close without answering
        with pytest.raises(ConnectionClosedError):
            await in_hub(hub, lambda: client.post_to_connection(ConnectionId="b", Data=b"{}"))
        assert len(closing.requests) == 3  # the reused connection, one fresh one, nothing more

    run(scenario())


def test_connections_move_between_blocking_callers_and_greenlets(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: OK_200)
    client, transport = client_for(server.url)

    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), limit=1)
        await asyncio.to_thread(client.post_to_connection, ConnectionId="thread", Data=b"{}")  # blocking socket
        await in_hub(hub, lambda: client.post_to_connection(ConnectionId="green", Data=b"{}"))  # now non-blocking
        await asyncio.to_thread(client.post_to_connection, ConnectionId="thread2", Data=b"{}")  # waits by select

    run(scenario())
    assert transport.connections_opened == 1 and transport.requests == 3 and len(server.requests) == 3


def test_tls_in_greenlets(tmp_path: Path) -> None:
    server, cert = tls_server(tmp_path)
    try:
        client, transport = client_for(server.url, verify=str(cert))

        async def scenario() -> None:
            hub = Hub(asyncio.get_running_loop(), limit=4)
            await asyncio.gather(*(in_hub(hub, lambda i=i: client.post_to_connection(
                ConnectionId=f"c{i}", Data=b"{}")) for i in range(6)))
            with pytest.raises(client.exceptions.GoneException):
                await in_hub(hub, lambda: client.post_to_connection(ConnectionId="gone", Data=b"{}"))

        run(scenario())
        assert transport.requests == 7 and 1 <= transport.connections_opened <= 4
    finally:
        server.close()


# ====================================================================== the poster and the pusher
def test_the_poster_chooses_its_mode_and_drops_idle_handlers(server_factory: Callable[..., HttpServer]) -> None:
    server = server_factory(lambda req, i: OK_200)
    base = {"environment": "test", "key_prefix": "unit", "ws_callback_url": server.url, "ws_push_concurrency": 2}
    posters = [Poster(PusherSettings(**base)), Poster(PusherSettings(**base, ws_push_mode="threads")),
               Poster(PusherSettings(**base, ws_push_transport="botocore"))]  # urllib3 would block the loop
    try:
        assert [p.mode for p in posters] == ["greenlets", "threads", "threads"]
        assert not posters[0]._threads and len(posters[1]._threads) == 2
        events = posters[0].client.meta.events
        assert events.emit("before-call.apigatewaymanagementapi.PostToConnection", params={}, model=None,
                           context={}) == []
        assert "rebuild_and_replace_user_agent_handler" in drop_idle_handlers(posters[0].client)

        async def scenario() -> list[int]:
            outcomes: list[int] = []
            finished = asyncio.Event()

            def job() -> None:
                outcomes.append(posters[0].post("c1", b"{}")[0])
                finished.set()

            posters[0].submit(job)
            await finished.wait()
            return outcomes

        assert run(scenario()) == [OK]
        ua = dict(line.split(b": ", 1) for line in server.requests[-1].split(b"\r\n\r\n")[0].split(b"\r\n")[1:])
        assert ua[b"User-Agent"].startswith(b"Boto3/")  # botocore's header, built once
    finally:
        for p in posters:
            p.close()


def test_the_pusher_in_greenlets_a_slow_connection_skips_frames_and_never_delays_the_others(
        server_factory: Callable[..., HttpServer]) -> None:
    """test_ws_pusher_unit's slow-connection test, on real sockets in greenlet mode."""
    times: dict[str, list[float]] = {}
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}
    lock = threading.Lock()

    def respond(req: bytes, i: int) -> bytes:
        cid = req.split(b"\r\n", 1)[0].split(b"/@connections/")[1].split(b" ")[0].decode()
        with lock:
            in_flight[cid] = in_flight.get(cid, 0) + 1
            most[cid] = max(most.get(cid, 0), in_flight[cid])
        if cid == "slow":
            time.sleep(0.8)
        with lock:
            in_flight[cid] -= 1
            times.setdefault(cid, []).append(time.monotonic())
        return OK_200 if cid != "gone" else GONE_410

    server = server_factory(respond)
    s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url=server.url,
                       ws_price_rate_per_s=10.0, ws_push_concurrency=4)
    gone: list[tuple[str, str]] = []

    async def scenario() -> None:
        pusher = Pusher(s, Poster(s), on_gone=lambda c, u: gone.append((c, u)))
        assert pusher.poster.mode == "greenlets"
        pusher.upsert(Registration("slow", "u0", frozenset({BTC})))
        pusher.upsert(Registration("gone", "u9", frozenset({BTC})))
        for i in range(3):
            pusher.upsert(Registration(f"fast{i}", f"u{i + 1}", frozenset({BTC})))
        for i in range(20):  # 2 seconds of ticks at 10 a second
            pusher.on_prices({BTC: price(1_000_000_000 + i, 1_000_010_000 + i, ts=i)})
            await asyncio.sleep(0.1)
        assert await pusher.drain(5)
        pusher.poster.close()

    run(scenario())
    slow = times["slow"]
    for i in range(3):
        fast = times[f"fast{i}"]
        assert len(fast) >= 10 and len(fast) >= 2 * len(slow), (len(fast), len(slow))
        assert max(b - a for a, b in zip(fast, fast[1:], strict=False)) < 0.8
    assert 2 <= len(slow) <= 6 and most["slow"] == 1
    assert gone == [("gone", "u9")] and len(times["gone"]) == 1
