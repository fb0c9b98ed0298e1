"""Sessions: tampered, expired, revoked, wrong-algorithm tokens; passwords;
rate limits; the JWT secret; WebSocket tickets."""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import jwt
import orjson
import pytest

from opex_api.app import create_app
from opex_api.config import ApiSettings
from opex_api.security import TokenError, decode_token, issue_token, jwt_secret, revoke_token, verify_token
from opex_common.settings import Settings
from tests.api.api_support import API, signup_and_signin
from tests.api.conftest import asgi_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


async def _whoami(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(f"{API}/user/whoami", headers={"Cookie": f"jwt={token}"})


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_bad_tokens_get_401(api_client: httpx.AsyncClient, api_settings: ApiSettings) -> None:
    user = await signup_and_signin(api_client)
    good = api_client.cookies["jwt"]
    api_client.cookies.clear()
    assert (await _whoami(api_client, good)).status_code == 200

    header, payload, signature = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    now = int(time.time())
    secret = jwt_secret(api_settings)
    bad = {
        "tampered payload": f"{header}.{_b64({**claims, 'sub': uuid.uuid4().hex})}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "other secret": jwt.encode(claims, "another-secret-of-at-least-32-bytes!!", algorithm="HS256"),
        "HS512": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": jwt.encode({**claims, "iat": now - 100, "exp": now - 1}, secret, algorithm="HS256"),
        "no exp": jwt.encode({k: v for k, v in claims.items() if k != "exp"}, secret, algorithm="HS256"),
        "no jti": jwt.encode({k: v for k, v in claims.items() if k != "jti"}, secret, algorithm="HS256"),
        "sub not a string": jwt.encode({**claims, "sub": 7}, secret, algorithm="HS256"),
        "garbage": "not.a.jwt",
        "empty": "",
        "huge": "a" * 5000,
    }
    for name, token in bad.items():
        r = await _whoami(api_client, token)
        assert r.status_code == 401, name
        assert r.json()["message"], name
    r = await api_client.get(f"{API}/balance", headers={"Authorization": f"Bearer {bad['expired']}"})
    assert r.status_code == 401 and "expired" in r.json()["message"]
    assert user


async def test_token_lifetime_and_revocation_functions(api_settings: ApiSettings) -> None:
    """The plain functions the WebSocket handlers use."""
    import redis.asyncio as aioredis

    redis = aioredis.Redis.from_url(api_settings.redis_url)
    try:
        token, jti, exp = issue_token("u1", "u1@example.com", api_settings)
        assert exp - int(time.time()) in (api_settings.jwt_ttl_s, api_settings.jwt_ttl_s - 1)
        claims = await verify_token(token, api_settings, redis)
        assert (claims.user_id, claims.email, claims.jti, claims.exp) == ("u1", "u1@example.com", jti, exp)
        await revoke_token(claims, api_settings, redis)
        ttl = await redis.ttl(api_settings.keys.revoked_token(jti))
        assert 0 < ttl <= api_settings.jwt_ttl_s + 1  # kept only as long as the token could be used
        with pytest.raises(TokenError):
            await verify_token(token, api_settings, redis)
        short = api_settings.model_copy(update={"jwt_ttl_s": 60})
        token2, _, exp2 = issue_token("u1", "u1@example.com", short)
        assert decode_token(token2, short).exp == exp2 <= int(time.time()) + 60
    finally:
        await redis.aclose()


def test_refuses_to_start_without_a_secret(settings: Settings) -> None:
    with pytest.raises(RuntimeError, match="JWT secret is empty"):
        create_app(settings.model_copy(update={"jwt_secret": "", "jwt_secret_name": ""}))


async def test_signin_and_signup_errors(api_client: httpx.AsyncClient) -> None:
    user = await signup_and_signin(api_client)
    api_client.cookies.clear()
    r = await api_client.post(f"{API}/user/signin", json={"email": user["email"], "password": "wrong password"})
    assert r.status_code == 401 and r.json()["message"] == "wrong email or password"
    assert "set-cookie" not in r.headers
    r = await api_client.post(f"{API}/user/signin", json={"email": "nobody@example.com", "password": "whatever1"})
    assert r.status_code == 401 and r.json()["message"] == "wrong email or password"
    # emails are case-insensitive, and taken once
    r = await api_client.post(f"{API}/user/signup", json={"email": user["email"].upper(), "password": "another pw 1"})
    assert r.status_code == 409 and "already" in r.json()["message"]
    r = await api_client.post(f"{API}/user/signin", json={"email": user["email"].upper(), "password": user["password"]})
    assert r.status_code == 200
    r = await api_client.get(f"{API}/user/whoami")
    assert r.status_code == 200 and r.json()["user"]["id"] == user["id"]


async def test_signin_and_signup_are_rate_limited_per_client(api_settings: ApiSettings) -> None:
    app = create_app(api_settings.model_copy(update={"signin_rate_per_min": 3, "signup_rate_per_min": 2,
                                                     "reply_timeout_s": 0.1}))
    try:
        async with asgi_client(app, "10.1.1.1") as a, asgi_client(app, "10.1.1.2") as b:
            body = {"email": "nobody@example.com", "password": "whatever1"}
            codes = [(await a.post(f"{API}/user/signin", json=body)).status_code for _ in range(5)]
            assert codes == [401, 401, 401, 429, 429]
            r = await a.post(f"{API}/user/signin", json=body)
            assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
            assert "too many" in r.json()["message"]
            assert (await b.post(f"{API}/user/signin", json=body)).status_code == 401  # another client
            codes = [(await a.post(f"{API}/user/signup", json={"email": f"x{i}{uuid.uuid4().hex[:6]}@ex.io",
                                                               "password": "password1"})).status_code
                     for i in range(3)]
            # 503: no engine in this test; what matters is the third attempt's 429
            assert codes[2] == 429 and codes[:2] != [429, 429]
    finally:
        await app.state.resources.close()


async def test_ws_ticket(api_client: httpx.AsyncClient, api_settings: ApiSettings, redis: object) -> None:
    user = await signup_and_signin(api_client)
    r = await api_client.post(f"{API}/ws/ticket")
    assert r.status_code == 200
    ticket = r.json()["ticket"]
    assert r.json()["expires_in"] == 30 and len(ticket) >= 40
    key = api_settings.keys.ws_ticket(ticket)
    stored = orjson.loads(redis.get(key))  # type: ignore[attr-defined]
    assert stored["user_id"] == user["id"] and stored["email"] == user["email"]
    assert 0 < redis.ttl(key) <= 30  # type: ignore[attr-defined]
    api_client.cookies.clear()
    assert (await api_client.post(f"{API}/ws/ticket")).status_code == 401


async def test_a_revoked_session_cannot_trade(api_client: httpx.AsyncClient, api_settings: ApiSettings,
                                              redis: object) -> None:
    """Writes check revocation atomically with the submission: nothing reaches the engine."""
    from tests.api.api_support import open_body

    user = await signup_and_signin(api_client)
    token = api_client.cookies["jwt"]
    r = await api_client.post(f"{API}/trade/open", json=open_body())
    assert r.status_code == 200
    trade_id = r.json()["orderId"]
    assert (await api_client.post(f"{API}/user/logout")).status_code == 200
    stream = api_settings.keys.input_stream(0)
    last = redis.xrevrange(stream, count=1)[0][0]  # type: ignore[attr-defined]
    hdr = {"Cookie": f"jwt={token}"}
    r = await api_client.post(f"{API}/trade/open", json=open_body(), headers=hdr)
    assert r.status_code == 401 and "signed out" in r.json()["message"]
    r = await api_client.post(f"{API}/trade/close", json={"orderId": trade_id}, headers=hdr)
    assert r.status_code == 401
    later = redis.xrange(stream, min=f"({last.decode()}")  # type: ignore[attr-defined]
    assert all(orjson.loads(fields[b"d"])["type"] == "tick" for _, fields in later)  # only the price feed's
    r = await api_client.post(f"{API}/user/signin", json={"email": user["email"], "password": user["password"]})
    assert r.status_code == 200
    assert [t["id"] for t in (await api_client.get(f"{API}/trade/open")).json()["trades"]] == [trade_id]
