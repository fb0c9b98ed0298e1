"""The hot path (``opex_api.hotpath``) answers exactly as FastAPI does.

The same requests go to the app with the hot path and to the app without it
(``create_app(..., hot_path=False)``): same status, headers and bytes, for the
happy path (retried with the same ``Idempotency-Key``, so the engine answers
both with the same reply) and for every refusal (no, bad, expired or revoked
session; bad keys, bodies and content types; engine timeout). Also: the Redis
round trip the hot path uses, the claims cache, and uvicorn writing a
response's head and body in one ``write``."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from redis.exceptions import ResponseError

from opex_api import security, serving
from opex_api.app import create_app
from opex_api.config import ApiSettings
from opex_api.hotpath import HotPath, hot_routes
from opex_api.resources import as_mapping, round_trip
from opex_api.security import issue_token, revoke_token
from tests.api.api_support import API, open_body, signup_and_signin
from tests.api.conftest import asgi_client

Exchange = tuple[int, list[tuple[str, str]], bytes]


async def exchange(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Exchange:
    r = await client.request(method, f"{API}{path}", **kwargs)
    headers = sorted((k, v) for k, v in r.headers.items() if k != "x-request-id")
    return r.status_code, headers, r.content


@pytest.fixture
async def two_apps(api_settings: ApiSettings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(with the hot path, without it) over ASGI, same settings."""
    fast, slow = create_app(api_settings), create_app(api_settings, hot_path=False)
    async with asgi_client(fast) as a, asgi_client(slow) as b:
        yield a, b
    for app in (fast, slow):
        await app.state.resources.close()


def _has_hot_path(app: FastAPI) -> bool:
    return any(m.cls is HotPath for m in app.user_middleware)


@pytest.mark.unit
def test_the_hot_routes_are_the_api_routes() -> None:
    assert set(hot_routes()) == {("POST", f"{API}/trade/open"), ("POST", f"{API}/trade/close"),
                                 ("GET", f"{API}/balance"), ("GET", f"{API}/trade/open")}


@pytest.mark.anyio
@pytest.mark.integration
async def test_the_hot_path_answers_the_happy_path_as_fastapi_does(
        two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient], engine: object, price_feed: object) -> None:
    fast, slow = two_apps
    await signup_and_signin(fast)
    token = fast.cookies["jwt"]
    slow.cookies.set("jwt", token)
    seen: list[Exchange] = []

    async def both(method: str, path: str, first: httpx.AsyncClient, **kwargs: Any) -> Exchange:
        second = slow if first is fast else fast
        a = await exchange(first, method, path, **kwargs)
        b = await exchange(second, method, path, **kwargs)
        assert a == b, (method, path, kwargs)
        assert a[0] == 200, a
        seen.append(a)
        return a

    trade_ids = []
    for first, body in ((fast, open_body()), (slow, open_body(side="short", quantity=0.02, margin_mode="isolated",
                                                                 leverage=5))):
        _, _, raw = await both("POST", "/trade/open", first, json=body,
                               headers={"Idempotency-Key": f"open-{uuid.uuid4().hex}"})
        trade_ids.append(httpx.Response(200, content=raw).json()["orderId"])
    await both("GET", "/balance", fast)
    await both("GET", "/trade/open", slow)
    # a partial close, then the rest; and the bearer header instead of the cookie
    await both("POST", "/trade/close", slow, json={"orderId": trade_ids[1], "quantity": 0.01},
               headers={"Idempotency-Key": "close-part"})
    for first, trade_id in ((fast, trade_ids[0]), (slow, trade_ids[1])):
        await both("POST", "/trade/close", first, json={"orderId": trade_id},
                   headers={"Idempotency-Key": f"close-{trade_id}", "Content-Type": "application/json"})
    fast.cookies.clear()
    slow.cookies.clear()
    _, _, raw = await both("GET", "/balance", fast, headers={"Authorization": f"Bearer {token}"})
    # "Trade already closed" (no key: two commands, the same answer)
    await both("POST", "/trade/close", slow, json={"orderId": trade_ids[0]},
               headers={"Authorization": f"Bearer {token}"})
    assert b'"message":"Trade already closed"' in seen[-1][2]
    assert [s[1] for s in seen][0] == [("content-length", str(len(seen[0][2]))), ("content-type", "application/json")]


@pytest.mark.anyio
@pytest.mark.integration
async def test_the_hot_path_refuses_as_fastapi_does(api_settings: ApiSettings, redis: object) -> None:
    """No engine runs here: whatever reaches it times out (503)."""
    s = api_settings.model_copy(update={"reply_timeout_s": 0.2})
    fast_app, slow_app = create_app(s), create_app(s, hot_path=False)
    assert _has_hot_path(fast_app) and not _has_hot_path(slow_app)
    user_id = uuid.uuid4().hex
    token, _, _ = issue_token(user_id, "hot@example.com", s)
    revoked, jti, exp = issue_token(user_id, "hot@example.com", s)
    expired = _expired_token(s, user_id)
    await revoke_token(security.Claims(user_id, "hot@example.com", jti, exp), s, fast_app.state.resources.redis)
    auth = {"Authorization": f"Bearer {token}"}
    json_ct = {**auth, "Content-Type": "application/json"}
    good = httpx.Request("POST", "http://x", json=open_body()).content
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/trade/open", {"content": good, "headers": {"Content-Type": "application/json"}}),
        ("POST", "/trade/open", {"content": good, "headers": {**json_ct, "Authorization": "Bearer x.y.z"}}),
        ("POST", "/trade/open", {"content": good, "headers": {**json_ct, "Authorization": f"Bearer {expired}"}}),
        ("POST", "/trade/open", {"content": good, "headers": {**json_ct, "Authorization": f"Bearer {revoked}"}}),
        ("POST", "/trade/open", {"content": good, "headers": {**json_ct, "Idempotency-Key": "bad key"}}),
        ("POST", "/trade/open", {"content": good, "headers": {**json_ct, "Idempotency-Key": "k" * 129}}),
        ("POST", "/trade/open", {"json": {**open_body(), "leverage": 0}, "headers": {**auth, "Idempotency-Key": "k" * 257}}),
        ("POST", "/trade/open", {"content": b'{"asset": ', "headers": json_ct}),
        ("POST", "/trade/open", {"content": b"[" * 100_00 + b"]" * 100_00, "headers": json_ct}),
        ("POST", "/trade/open", {"content": b"", "headers": json_ct}),
        ("POST", "/trade/open", {"content": b"[]", "headers": json_ct}),
        ("POST", "/trade/open", {"content": b'{"quantity": NaN}', "headers": json_ct}),
        ("POST", "/trade/open", {"json": {**open_body(), "extra": 1}, "headers": auth}),
        ("POST", "/trade/open", {"json": {**open_body(), "leverage": "10"}, "headers": auth}),
        ("POST", "/trade/open", {"json": {**open_body(), "asset": "DOGE_USDC_PERP"}, "headers": auth}),
        ("POST", "/trade/open", {"json": {**open_body(), "leverage": 60}, "headers": auth}),  # above BTC's max
        ("POST", "/trade/open", {"json": {**open_body(), "quantity": 0.000001}, "headers": auth}),  # off the step
        ("POST", "/trade/open", {"content": good, "headers": {**auth, "Content-Type": "text/plain"}}),
        ("POST", "/trade/open", {"content": good, "headers": auth}),  # no content type
        ("POST", "/trade/open", {"content": good, "headers": [*json_ct.items(), ("Idempotency-Key", "a"),
                                                              ("Idempotency-Key", "b")]}),
        ("POST", "/trade/open", {"content": good, "headers": [*json_ct.items(), ("Content-Type", "text/plain")]}),
        ("POST", "/trade/open", {"content": good, "headers": json_ct}),  # valid: the engine times out
        ("POST", "/trade/close", {"json": {"orderId": "abc"}, "headers": auth}),  # engine timeout
        ("POST", "/trade/close", {"json": {"orderId": "a b"}, "headers": auth}),
        ("POST", "/trade/close", {"json": {"orderId": "abc", "quantity": 0}, "headers": auth}),
        ("POST", "/trade/close", {"json": {"orderId": "abc"}, "headers": {"Authorization": f"Bearer {revoked}"}}),
        ("POST", "/trade/close", {"json": {"orderId": "abc"}}),
        ("GET", "/balance", {}),
        ("GET", "/balance", {"headers": {"Authorization": f"Bearer {expired}"}}),
        ("GET", "/balance", {"headers": {"Authorization": f"Bearer {revoked}"}}),
        ("GET", "/balance", {"headers": {"Cookie": f"jwt={token}"}}),  # no read model, no engine: 503
        ("GET", "/trade/open", {"headers": {"Authorization": f"Basic {token}"}}),
        ("HEAD", "/balance", {"headers": auth}),
        ("PUT", "/trade/open", {"headers": auth}),
        ("GET", "/trade/open/", {"headers": auth}),
    ]
    statuses = []
    try:
        async with asgi_client(fast_app) as fast, asgi_client(slow_app) as slow:
            for method, path, kwargs in cases:
                a = await exchange(fast, method, path, **kwargs)
                b = await exchange(slow, method, path, **kwargs)
                assert a == b, (method, path, kwargs)
                statuses.append(a[0])
    finally:
        for app in (fast_app, slow_app):
            await app.state.resources.close()
    assert 200 not in statuses and 500 not in statuses
    assert {400, 401, 405, 422, 503} <= set(statuses)


def _expired_token(settings: ApiSettings, user_id: str) -> str:
    import jwt

    now = int(time.time())
    return jwt.encode({"sub": user_id, "email": "hot@example.com", "jti": uuid.uuid4().hex, "iat": now - 100,
                       "exp": now - 10}, security.jwt_secret(settings), algorithm=security.ALGORITHM)


# ---------------------------------------------------------------------- the claims cache
@pytest.mark.anyio
@pytest.mark.integration
async def test_cached_claims_still_expire_and_are_still_revoked(api_settings: ApiSettings, redis: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    token, jti, exp = issue_token("cache-user", "cache@example.com", api_settings)
    claims = security.decode_token(token, api_settings)
    assert security.decode_token(token, api_settings) is claims  # cached: the signature is checked once
    r = aioredis.Redis.from_url(api_settings.redis_url)
    try:
        assert await security.verify_token(token, api_settings, r) is claims
        await revoke_token(claims, api_settings, r)
        with pytest.raises(security.TokenError, match="signed out"):
            await security.verify_token(token, api_settings, r)
    finally:
        await r.aclose()
    now = time.time()
    monkeypatch.setattr(security.time, "time", lambda: now + exp - int(now) + 1)
    with pytest.raises(security.TokenError, match="expired"):
        security.decode_token(token, api_settings)
    assert (security.jwt_secret(api_settings), token) not in security._VERIFIED  # and no longer cached


# ---------------------------------------------------------------------- one Redis round trip
@pytest.mark.anyio
@pytest.mark.integration
async def test_round_trip_replies_and_recovers_from_an_error_reply(api_settings: ApiSettings, redis: Any) -> None:
    keys = api_settings.keys
    a, h = keys.account("rt-user"), keys.prices()
    redis.set(a, b"text")
    redis.hset(h, mapping={"BTC": b"1", "ETH": b"2"})
    client = aioredis.Redis.from_url(api_settings.redis_url)
    try:
        got = await round_trip(client, [("EXISTS", a), ("GET", a), ("HGETALL", h), ("GET", keys.account("none"))])
        assert got[0] == 1 and got[1] == b"text" and as_mapping(got[2]) == {b"BTC": b"1", b"ETH": b"2"}
        assert got[3] is None and as_mapping([]) == {}
        with pytest.raises(ResponseError):  # INCR of a non-number: an error reply, then one reply left unread
            await round_trip(client, [("INCR", a), ("GET", a)])
        for _ in range(3):  # the connection was dropped, not reused with a reply pending
            assert await round_trip(client, [("GET", a), ("EXISTS", a)]) == [b"text", 1]
        results = await asyncio.gather(*(round_trip(client, [("GET", a)]) for _ in range(20)))
        assert results == [[b"text"]] * 20
        pool = client.connection_pool
        assert not pool._in_use_connections  # type: ignore[attr-defined]
    finally:
        await client.aclose()


# ---------------------------------------------------------------------- one write per response
class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


def _cycle(method: str = "GET", keep_alive: bool = True) -> Any:
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.protocols.http.flow_control import FlowControl

    serving.coalesce_response_writes()
    transport = _Transport()
    cycle = httptools_impl.RequestResponseCycle(
        scope={"method": method, "type": "http"}, transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport), logger=logging.getLogger("test"),  # type: ignore[arg-type]
        access_logger=logging.getLogger("test"), access_log=False, default_headers=[],
        message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive, on_response=lambda: None)
    return cycle, transport


@pytest.mark.unit
@pytest.mark.anyio
async def test_uvicorn_writes_a_response_head_and_body_in_one_write() -> None:
    cycle, transport = _cycle()
    await cycle.send({"type": "http.response.start", "status": 200,
                      "headers": [(b"content-length", b"2"), (b"content-type", b"application/json")]})
    assert transport.writes == []
    await cycle.send({"type": "http.response.body", "body": b"{}"})
    (data,) = transport.writes
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n{}")
    assert cycle.response_complete

    # streamed: the head goes with the first chunk, the rest as they come
    cycle, transport = _cycle()
    await cycle.send({"type": "http.response.start", "status": 200, "headers": []})
    await cycle.send({"type": "http.response.body", "body": b"ab", "more_body": True})
    await cycle.send({"type": "http.response.body", "body": b"cd"})
    assert len(transport.writes) == 2 and transport.writes[0].endswith(b"\r\n\r\n2\r\nab\r\n")
    assert transport.writes[1] == b"2\r\ncd\r\n0\r\n\r\n"

    # HEAD: no body is written, the head still is; connection: close still closes after it
    cycle, transport = _cycle("HEAD", keep_alive=False)
    await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await cycle.send({"type": "http.response.body", "body": b""})
    (data,) = transport.writes
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" in data and transport.closed
