"""Abuse of the REST API: brute force, forged sessions, hostile bodies.

What tests/api already proves is not repeated here (docs/reliability.md lists
it): per-client signin/signup limits in-process, tampered/alg-none/other-key/
expired tokens on read endpoints, logout revocation, another user's trade ids
(404, invisible in every list), oversized and non-JSON bodies. This file adds
what an attacker would try next.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import redis as redis_lib

from opex_api.security import issue_token, jwt_secret
from opex_common.settings import Settings
from tests.abuse.support import API, Uvicorn, api_settings, asgi_client, b64, make_app

pytestmark = [pytest.mark.integration]

PASSWORD = "correct horse battery"


# ---------------------------------------------------------------------- brute force
def _guesses(server: Uvicorn, email: str, n: int, forged_xff: bool) -> tuple[list[int], httpx.Response]:
    """``n`` wrong passwords, then the right one."""
    with httpx.Client(base_url=server.url, timeout=10) as c:
        assert c.post(f"{API}/user/signup", json={"email": email, "password": PASSWORD}).status_code == 201
        codes = []
        for i in range(n):
            headers = {"Connection": "close"}  # a new connection each time: any worker may answer
            if forged_xff:
                headers["X-Forwarded-For"] = f"198.51.100.{i + 1}"
            r = c.post(f"{API}/user/signin", json={"email": email, "password": f"guess-{i:04d}"}, headers=headers)
            codes.append(r.status_code)
        extra = {"X-Forwarded-For": "198.51.100.250"} if forged_xff else {}
        return codes, c.post(f"{API}/user/signin", json={"email": email, "password": PASSWORD}, headers=extra)


@pytest.mark.slow
def test_signin_brute_force_over_http_is_throttled_across_workers(settings: Settings, redis: redis_lib.Redis,
                                                                  tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    """Through uvicorn with two worker processes, as the local stack runs it
    (the limit lives in Redis, so the workers share it): after the limit
    every attempt gets 429 with Retry-After, the right password included."""
    limit = 5
    server = Uvicorn(settings, tmp_path, workers=2, SIGNIN_RATE_PER_MIN=str(limit)).start()
    try:
        codes, last = _guesses(server, f"bf{uuid.uuid4().hex[:8]}@example.com", 3 * limit, forged_xff=False)
    finally:
        server.stop()
    assert set(codes) <= {401, 429}, codes
    assert 1 <= codes.count(401) <= limit, codes  # never more than the limit, whichever worker answered
    assert codes[-limit:] == [429] * limit, codes
    assert last.status_code == 429 and "set-cookie" not in last.headers, "the right password got through"
    assert 1 <= int(last.headers["retry-after"]) <= 60


@pytest.mark.slow
def test_a_forged_x_forwarded_for_does_not_reset_the_signin_limit(settings: Settings, redis: redis_lib.Redis,
                                                                   tmp_path: Path, engine) -> None:  # type: ignore[no-untyped-def]
    limit = 5
    server = Uvicorn(settings, tmp_path, workers=1, SIGNIN_RATE_PER_MIN=str(limit)).start()
    try:
        codes, last = _guesses(server, f"xf{uuid.uuid4().hex[:8]}@example.com", 3 * limit, forged_xff=True)
    finally:
        server.stop()
    assert codes.count(401) <= limit, f"{codes.count(401)} guesses checked with a forged X-Forwarded-For each"
    assert last.status_code == 429


@pytest.mark.anyio
async def test_distributed_brute_force_on_one_account_is_throttled(settings: Settings, redis: redis_lib.Redis,
                                                                   engine) -> None:  # type: ignore[no-untyped-def]
    """40 wrong guesses at one account from 20 addresses, 2 each: every
    address stays under its own limit, so only a per-account limit stops it.
    Expected: at most a few times SIGNIN_RATE_PER_MIN guesses per account per
    minute are checked against the password; the rest get 429."""
    limit = 5
    app = make_app(settings, signin_rate_per_min=limit)
    email = f"d{uuid.uuid4().hex[:8]}@example.com"
    try:
        async with asgi_client(app, "192.0.2.250") as owner:
            assert (await owner.post(f"{API}/user/signup", json={"email": email, "password": PASSWORD})
                    ).status_code == 201
        codes = []
        for n in range(20):
            async with asgi_client(app, f"203.0.113.{n + 1}") as bot:
                for i in range(2):
                    r = await bot.post(f"{API}/user/signin", json={"email": email, "password": f"g{n}-{i}"})
                    codes.append(r.status_code)
        checked = codes.count(401)
        assert checked <= 3 * limit, f"{checked} password guesses at one account were checked in a minute"
    finally:
        await app.state.resources.close()


# ---------------------------------------------------------------------- forged sessions on the write path
def _hs(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A JWS signed by hand with HMAC-SHA256 (any header, any key, even an empty one)."""
    signing_input = f"{b64(header)}.{b64(claims)}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(key, signing_input, hashlib.sha256).digest())}"


def _forged_tokens(settings: Settings) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "victim-user", "email": "victim@example.com", "jti": uuid.uuid4().hex, "iat": now,
              "exp": now + 3600}
    secret = jwt_secret(settings)
    good_header = {"alg": "HS256", "typ": "JWT"}
    signature = jwt.encode(claims, secret, algorithm="HS256").split(".")[2]
    tokens = {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "alg None": f"{b64({'alg': 'None', 'typ': 'JWT'})}.{b64(claims)}.",
        "alg NONE with a signature": f"{b64({'alg': 'NONE'})}.{b64(claims)}.{signature}",
        "no header alg": f"{b64({'typ': 'JWT'})}.{b64(claims)}.{signature}",
        "wrong key": jwt.encode(claims, "an-attackers-own-secret-of-32-bytes!!", algorithm="HS256"),
        "empty key": _hs(good_header, claims, b""),
        "HS512 with the real key": jwt.encode(claims, secret, algorithm="HS512"),
        "header swapped to HS384": f"{b64({'alg': 'HS384', 'typ': 'JWT'})}.{b64(claims)}.{signature}",
        "kid injection": _hs({**good_header, "kid": "../../../../dev/null"}, claims, b""),
        "jku header": jwt.encode(claims, "x" * 32, algorithm="HS256",
                                 headers={"jku": "http://127.0.0.1:9/keys.json"}),
        "expired a second ago": jwt.encode({**claims, "iat": now - 60, "exp": now - 1}, secret, algorithm="HS256"),
        "not yet valid": jwt.encode({**claims, "nbf": now + 3600}, secret, algorithm="HS256"),
        "payload of another user under a valid signature": (
            f"{b64(good_header)}.{b64({**claims, 'sub': 'someone-else'})}.{signature}"),
        "two tokens glued": jwt.encode(claims, secret, algorithm="HS256") + "." + signature,
    }
    return tokens


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_forged_and_revoked_sessions_never_reach_the_engine(settings: Settings,
                                                                  redis: redis_lib.Redis) -> None:
    """Every forged token, and a genuine token after logout, on every write
    and session endpoint (cookie and bearer): 401, and not one entry is added
    to the engine's input stream (tests/api covers the read endpoints)."""
    app = make_app(settings, reply_timeout_s=0.2)
    stream = settings.keys.input_stream(0)
    try:
        async with asgi_client(app) as client:
            # a genuine session, then signed out (logout needs no engine)
            genuine, _, _ = issue_token("victim-user", "victim@example.com", api_settings(settings))
            r = await client.post(f"{API}/user/logout", headers={"Authorization": f"Bearer {genuine}"})
            assert r.status_code == 200
            tokens = {**_forged_tokens(settings), "revoked by logout": genuine}
            before = redis.xlen(stream) if redis.exists(stream) else 0
            open_body = {"asset": "BTC_USDC_PERP", "type": "long", "quantity": 0.01, "leverage": 10,
                         "slippage": 50, "openPrice": 971234567}
            calls = [("POST", "/trade/open", open_body), ("POST", "/trade/close", {"orderId": "abc-def"}),
                     ("POST", "/ws/ticket", None), ("POST", "/user/logout", None), ("GET", "/account", None),
                     ("GET", "/ledger", None), ("GET", "/trade/closed", None), ("GET", "/trade/open", None)]
            wrong = []
            for name, token in tokens.items():
                for how in ("cookie", "bearer"):
                    headers = ({"Cookie": f"jwt={token}"} if how == "cookie"
                               else {"Authorization": f"Bearer {token}"})
                    for method, path, body in calls:
                        r = await client.request(method, f"{API}{path}", json=body, headers=headers)
                        if r.status_code != 401 or not r.json().get("message"):
                            wrong.append((name, how, path, r.status_code, r.text[:120]))
            after = redis.xlen(stream) if redis.exists(stream) else 0
            tickets = list(redis.scan_iter(match=f"{settings.keys.prefix}:wsticket:*"))
        assert wrong == []
        assert after == before, "a forged or revoked session put a command on the engine's stream"
        assert tickets == [], "a WebSocket ticket was issued to a forged or revoked session"
    finally:
        await app.state.resources.close()


# ---------------------------------------------------------------------- hostile bodies
NESTED_ARRAYS = b"[" * 8000 + b"]" * 8000  # within the 16 KB body limit
NESTED_OBJECTS = b'{"a":' * 3000 + b"1" + b"}" * 3000
OPEN_FIELDS = b'"asset":"BTC_USDC_PERP","type":"long","leverage":10,"slippage":50,"openPrice":971234567'
HOSTILE: dict[str, bytes] = {
    "deeply nested arrays": NESTED_ARRAYS,
    "deeply nested objects": NESTED_OBJECTS,
    "deep nesting inside a field": b'{"asset":' + b"[" * 6000 + b"]" * 6000 + b"}",
    "wide array": b'{"asset":[' + b"0," * 5000 + b"0]}",
    "NaN": b"{" + OPEN_FIELDS + b',"quantity":NaN}',
    "Infinity": b"{" + OPEN_FIELDS + b',"quantity":Infinity}',
    "-Infinity": b"{" + OPEN_FIELDS + b',"quantity":-Infinity}',
    "1e400": b"{" + OPEN_FIELDS + b',"quantity":1e400}',
    "5000-digit integer": b'{"asset":"BTC_USDC_PERP","openPrice":' + b"9" * 5000 + b"}",
    "4000-digit integer": b'{"asset":"BTC_USDC_PERP","leverage":' + b"9" * 4000 + b"}",
    "duplicate keys": b'{"asset":"BTC_USDC_PERP","asset":"DOGE","quantity":0.01}',
    "invalid UTF-8": b'{"asset":"\xff\xfe\xfd"}',
    "UTF-16": '{"asset":"BTC_USDC_PERP"}'.encode("utf-16"),
    "BOM": b'\xef\xbb\xbf{"asset":"BTC_USDC_PERP"}',
    "lone surrogate": b'{"orderId":"\\ud800","email":"a\\udfff@b.io","password":"x\\ud800yyyyyy"}',
    "NUL characters": b'{"orderId":"a\\u0000b","email":"a\\u0000@b.io","password":"\\u0000\\u0000\\u0000\\u0000"}',
    "null": b"null",
    "a bare string": b'"x"',
    "a bare number": b"1",
    "truncated": b'{"asset":"BTC_USDC_PERP","qua',
    "trailing garbage": b'{"asset":"BTC_USDC_PERP"} {"x":1}',
    "comments": b'{/* hi */"asset":"BTC_USDC_PERP"}',
}


@pytest.mark.anyio
async def test_hostile_bodies_get_a_4xx_never_a_500(settings: Settings, redis: redis_lib.Redis) -> None:
    """Deeply nested, numerically absurd, mis-encoded and non-JSON bodies on
    every endpoint that reads one: a 4xx with a message, never a 500, and
    nothing reaches the engine."""
    app = make_app(settings, reply_timeout_s=0.2, signin_rate_per_min=10_000, signup_rate_per_min=10_000)
    token, _, _ = issue_token(f"abuser-{uuid.uuid4().hex[:6]}", "abuser@example.com", api_settings(settings))
    stream = settings.keys.input_stream(0)
    try:
        async with asgi_client(app) as client:
            wrong = []
            for path in ("/trade/open", "/trade/close", "/user/signup", "/user/signin"):
                for name, body in HOSTILE.items():
                    for ctype in ("application/json", "text/plain"):
                        r = await client.post(f"{API}{path}", content=body, headers={
                            "content-type": ctype, "Authorization": f"Bearer {token}"})
                        ok = 400 <= r.status_code < 500
                        try:
                            ok = ok and bool(r.json().get("message"))
                        except ValueError:
                            ok = False
                        if not ok:
                            wrong.append((path, name, ctype, r.status_code, r.text[:120]))
            # and a form post, which the API does not speak
            r = await client.post(f"{API}/trade/open", data={"asset": "BTC_USDC_PERP"},
                                  headers={"Authorization": f"Bearer {token}"})
            if not 400 <= r.status_code < 500:
                wrong.append(("/trade/open", "form", "urlencoded", r.status_code, r.text[:120]))
        assert wrong == []
        assert not redis.exists(stream) or all(
            orjson.loads(f[b"d"]).get("type") != "open" for _, f in redis.xrange(stream)), "a hostile body traded"
    finally:
        await app.state.resources.close()


@pytest.mark.anyio
async def test_an_announced_huge_body_is_refused_before_it_is_sent(settings: Settings, redis: redis_lib.Redis,
                                                                   tmp_path: Path) -> None:
    """Over real HTTP (h11 under uvicorn): a Content-Length far beyond the
    limit is answered 413 at once, without waiting for (or reading) the body."""
    server = Uvicorn(settings, tmp_path, workers=1).start()
    try:
        limit = api_settings(settings).max_body_bytes
        host, port = "127.0.0.1", server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write((f"POST {API}/user/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {100 * limit}\r\n\r\n").encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.read(4096), 10)  # answered without waiting for the body
        writer.close()
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
    finally:
        server.stop()
