"""The ws Lambda handler called directly with API Gateway WebSocket events:
real Redis for the registry and the session checks, moto for @connections."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis as redis_lib

from opex_common.settings import Settings
from opex_ws import handler as ws_handler
from tests.ws.support import (
    BTC,
    ETH,
    FakeLambdaContext,
    MotoApi,
    connect_event,
    disconnect_event,
    message_event,
)

pytestmark = pytest.mark.integration


def call(event: dict[str, Any]) -> dict[str, Any]:
    return ws_handler.handler(event, FakeLambdaContext())  # type: ignore[no-any-return]


def connect(cid: str, jwt: str) -> None:
    assert call(connect_event(cid, cookie=f"theme=dark; jwt={jwt}"))["statusCode"] == 200


def reply(moto_api: MotoApi, cid: str) -> dict[str, Any]:
    return moto_api.frames(cid)[-1]


def next_message(pubsub: Any, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.2)
        if msg is not None and msg["type"] == "message":
            return orjson.loads(msg["data"])
    raise AssertionError("no message")


def test_connect_with_the_cookie_registers_the_connection(ws_app: Any, redis: redis_lib.Redis,
                                                          settings: Settings, token: Callable[[str], str]) -> None:
    k = settings.keys
    connect("conn-A1=", token("user-a"))
    assert redis.hget(k.ws_connection("conn-A1="), "user_id") == b"user-a"
    assert redis.hget(k.ws_connection("conn-A1="), "markets") == b"[]"
    assert redis.sismember(k.ws_user_connections("user-a"), "conn-A1=")
    assert redis.sismember(k.ws_connections(), "conn-A1=")
    ttl = settings.ws_connection_ttl_s
    assert ttl - 5 <= redis.ttl(k.ws_connection("conn-A1=")) <= ttl
    assert ttl - 5 <= redis.ttl(k.ws_user_connections("user-a")) <= ttl
    # lower-case header name, as HTTP/2 clients send it
    assert call(connect_event("conn-A2=", cookie=f"jwt={token('user-a')}", cookie_header="cookie"))["statusCode"] == 200


@pytest.mark.parametrize("case", ["none", "garbage", "other_secret", "expired", "wrong_cookie_name"])
def test_connect_without_a_valid_session_is_refused(ws_app: Any, redis: redis_lib.Redis, settings: Settings,
                                                    case: str) -> None:
    import jwt as pyjwt

    now = int(time.time())
    claims = {"sub": "u", "email": "u@x.io", "jti": "j", "iat": now - 100, "exp": now + 100}
    cookie = {
        "none": None,
        "garbage": "jwt=not.a.token",
        "other_secret": "jwt=" + pyjwt.encode(claims, "another-secret-0123456789abcdef0123", algorithm="HS256"),
        "expired": "jwt=" + pyjwt.encode({**claims, "exp": now - 10}, settings.jwt_secret, algorithm="HS256"),
        "wrong_cookie_name": "token=" + pyjwt.encode(claims, settings.jwt_secret, algorithm="HS256"),
    }[case]
    result = call(connect_event("conn-X=", cookie=cookie))
    assert result["statusCode"] == 401
    assert not redis.exists(settings.keys.ws_connection("conn-X="))


def test_a_signed_out_session_cannot_connect(ws_app: Any, redis: redis_lib.Redis, settings: Settings) -> None:
    from opex_api.security import issue_token

    jwt, jti, _ = issue_token("user-a", "a@x.io", settings)
    redis.set(settings.keys.revoked_token(jti), b"1", ex=60)
    assert call(connect_event("conn-R=", cookie=f"jwt={jwt}"))["statusCode"] == 401


def test_a_ticket_works_once(ws_app: Any, redis: redis_lib.Redis, settings: Settings) -> None:
    k = settings.keys
    ticket = "T" * 43
    redis.set(k.ws_ticket(ticket), orjson.dumps({"user_id": "user-t", "email": "t@x.io", "jti": "j1",
                                                 "exp": int(time.time()) + 600}), ex=30)
    assert call(connect_event("conn-T1=", ticket=ticket))["statusCode"] == 200
    assert redis.hget(k.ws_connection("conn-T1="), "user_id") == b"user-t"
    assert not redis.exists(k.ws_ticket(ticket))  # GETDEL: single use
    assert call(connect_event("conn-T2=", ticket=ticket))["statusCode"] == 401


@pytest.mark.parametrize("payload", [
    {"user_id": "user-t", "email": "t@x.io", "jti": "revoked-jti", "exp": 4_000_000_000},
    {"user_id": "user-t", "email": "t@x.io", "jti": "j", "exp": 1},
    {"email": "t@x.io"},
    "not an object",
])
def test_a_bad_ticket_is_refused(ws_app: Any, redis: redis_lib.Redis, settings: Settings, payload: Any) -> None:
    k = settings.keys
    redis.set(k.revoked_token("revoked-jti"), b"1", ex=60)
    ticket = "B" * 43
    redis.set(k.ws_ticket(ticket), orjson.dumps(payload), ex=30)
    assert call(connect_event("conn-B=", ticket=ticket))["statusCode"] == 401
    assert call(connect_event("conn-B=", ticket="short"))["statusCode"] == 401
    assert call(connect_event("conn-B=", ticket="x" * 43))["statusCode"] == 401  # unknown


def test_a_failed_ticket_falls_back_to_the_cookie(ws_app: Any, token: Callable[[str], str]) -> None:
    assert call(connect_event("conn-F=", ticket="U" * 43, cookie=f"jwt={token('u')}"))["statusCode"] == 200


def test_too_many_connections_are_refused(ws_app: Any, redis: redis_lib.Redis, settings: Settings,
                                          token: Callable[[str], str]) -> None:
    limit = ws_app.settings.ws_max_connections_per_user
    jwt = token("busy")
    for i in range(limit):
        connect(f"busy-{i}=", jwt)
    assert call(connect_event("busy-over=", cookie=f"jwt={jwt}"))["statusCode"] == 403
    # a connection whose registry entry expired no longer counts
    redis.delete(settings.keys.ws_connection("busy-0="))
    connect("busy-again=", jwt)
    assert not redis.sismember(settings.keys.ws_user_connections("busy"), "busy-0=")


def test_disconnect_removes_the_connection(ws_app: Any, redis: redis_lib.Redis, settings: Settings,
                                           token: Callable[[str], str]) -> None:
    k = settings.keys
    connect("conn-D=", token("user-d"))
    assert call(disconnect_event("conn-D="))["statusCode"] == 200
    assert not redis.exists(k.ws_connection("conn-D="))
    assert not redis.sismember(k.ws_connections(), "conn-D=")
    assert not redis.sismember(k.ws_user_connections("user-d"), "conn-D=")
    assert call(disconnect_event("conn-D="))["statusCode"] == 200  # twice is fine


def test_subscribe_unsubscribe_ping(ws_app: Any, redis: redis_lib.Redis, settings: Settings,
                                    moto_api: MotoApi, token: Callable[[str], str]) -> None:
    k = settings.keys
    connect("c1", token("user-s"))
    changes = redis.pubsub(ignore_subscribe_messages=True)
    changes.subscribe(f"{k.prefix}:ws:changes")

    assert call(message_event("c1", '{"type":"subscribe","markets":["ETH_USDC_PERP","BTC_USDC_PERP",'
                                    '"BTC_USDC_PERP"]}'))["statusCode"] == 200
    assert reply(moto_api, "c1") == {"type": "subscribed", "markets": [BTC, ETH]}
    assert orjson.loads(redis.hget(k.ws_connection("c1"), "markets")) == [BTC, ETH]
    assert next_message(changes) == {"op": "upsert", "id": "c1"}

    call(message_event("c1", '{"type":"unsubscribe","markets":["ETH_USDC_PERP","SOL_USDC_PERP"]}'))
    assert reply(moto_api, "c1") == {"type": "subscribed", "markets": [BTC]}

    redis.expire(k.ws_connection("c1"), 30)
    call(message_event("c1", base64.b64encode(b'{"type":"ping"}').decode(), is_base64=True))
    pong = reply(moto_api, "c1")
    assert pong["type"] == "pong" and abs(pong["ts"] - time.time() * 1000) < 5000
    assert redis.ttl(k.ws_connection("c1")) > 60  # activity pushed the expiry back
    changes.close()


@pytest.mark.parametrize(("body", "code"), [
    ("hello", "bad_request"),
    ('{"type":"chat","text":"hi"}', "unknown_type"),
    ('{"type":"subscribe","markets":["DOGE_USDC_PERP"]}', "unknown_market"),
    ('{"type":"subscribe","markets":"BTC_USDC_PERP"}', "bad_request"),
    ("x" * 5000, "too_large"),
    (None, "bad_request"),
])
def test_bad_messages_get_an_error_on_that_connection(ws_app: Any, moto_api: MotoApi, redis: redis_lib.Redis,
                                                      settings: Settings, token: Callable[[str], str],
                                                      body: str | None, code: str) -> None:
    connect("c2", token("user-e"))
    connect("bystander", token("user-f"))
    assert call(message_event("c2", body))["statusCode"] == 200
    err = reply(moto_api, "c2")
    assert err["type"] == "error" and err["code"] == code and err["message"]
    assert moto_api.frames("bystander") == []
    assert redis.hget(settings.keys.ws_connection("c2"), "markets") == b"[]"


def test_a_message_on_an_unregistered_connection_closes_it(ws_app: Any, moto_api: MotoApi) -> None:
    call(message_event("stranger", '{"type":"subscribe","markets":["BTC_USDC_PERP"]}'))
    assert reply(moto_api, "stranger")["code"] == "not_registered"
    assert moto_api.deleted == ["stranger"]


def test_a_reply_to_a_vanished_client_is_not_an_error(ws_app: Any, moto_api: MotoApi,
                                                      token: Callable[[str], str]) -> None:
    connect("c3", token("user-g"))
    moto_api.gone.add("c3")
    assert call(message_event("c3", '{"type":"ping"}'))["statusCode"] == 200


def test_malformed_events_do_not_crash(ws_app: Any) -> None:
    assert call({})["statusCode"] == 400
    assert call({"requestContext": {"routeKey": "$default"}})["statusCode"] == 400
    assert call({"requestContext": "nope"})["statusCode"] == 400


def test_redis_outage_refuses_connects_with_503(moto_settings: Settings, moto_api: MotoApi,
                                                token: Callable[[str], str]) -> None:
    dead = moto_settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    app = ws_handler.configure(dead)
    try:
        assert call(connect_event("c4", cookie=f"jwt={token('u')}"))["statusCode"] == 503
        assert call(message_event("c4", '{"type":"ping"}'))["statusCode"] == 200
        assert reply(moto_api, "c4")["code"] == "unavailable"
        assert call(disconnect_event("c4"))["statusCode"] == 200
    finally:
        app.close()
        ws_handler.reset()
