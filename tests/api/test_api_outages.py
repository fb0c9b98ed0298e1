"""When the engine, Redis or Postgres is unavailable the API answers 503 with
a clear message (never hangs), and recovers by itself when it is back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import pytest

from opex_api.app import create_app
from opex_api.config import ApiSettings
from tests.api.api_support import API, open_body, proxied, signup_and_signin
from tests.api.conftest import asgi_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
async def quick_client(api_settings: ApiSettings, price_feed: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings.model_copy(update={"reply_timeout_s": 0.5}))
    async with asgi_client(app) as client:
        yield client
    await app.state.resources.close()


async def test_engine_down_then_back(quick_client: httpx.AsyncClient, engine_factory: object) -> None:
    engine = engine_factory().start()  # type: ignore[operator]
    client = quick_client
    user = await signup_and_signin(client)
    engine.stop()

    t0 = time.monotonic()
    r = await client.post(f"{API}/trade/open", json=open_body(), headers={"Idempotency-Key": "during-outage"})
    assert r.status_code == 503 and "trading is temporarily unavailable" in r.json()["message"]
    assert time.monotonic() - t0 < 2.0 and r.headers["retry-after"] == "1"
    # reads do not queue behind the engine: its read model answers
    r = await client.get(f"{API}/balance")
    assert r.status_code == 200 and r.json()["userId"] == user["id"]
    # a signup while the engine is down: 503, and the same signup again later finishes it
    creds = {"email": f"late-{user['id'][:8]}@example.com", "password": "correct horse battery"}
    r = await client.post(f"{API}/user/signup", json=creds)
    assert r.status_code == 503

    engine = engine_factory().start()  # type: ignore[operator]
    # the command sent during the outage waited in the stream; the retry with the
    # same key gets its result rather than a second trade
    r = await client.post(f"{API}/trade/open", json=open_body(), headers={"Idempotency-Key": "during-outage"})
    assert r.status_code == 200
    assert len((await client.get(f"{API}/trade/open")).json()["trades"]) == 1
    r = await client.post(f"{API}/user/signup", json=creds)
    assert r.status_code == 201
    client.cookies.clear()
    assert (await client.post(f"{API}/user/signin", json=creds)).status_code == 200
    r = await client.get(f"{API}/balance")
    assert r.status_code == 200 and r.json()["data"]["balance"] == 50_000_000
    engine.stop()


async def test_signin_opens_an_account_the_engine_never_opened(quick_client: httpx.AsyncClient,
                                                               engine_factory: object) -> None:
    creds = {"email": "no-engine-at-signup@example.com", "password": "correct horse battery"}
    r = await quick_client.post(f"{API}/user/signup", json=creds)
    assert r.status_code == 503  # no engine running: the user row exists, the account does not
    engine = engine_factory().start()  # type: ignore[operator]
    # the pending create_account is applied as the engine starts; signin makes sure of it either way
    assert (await quick_client.post(f"{API}/user/signin", json=creds)).status_code == 200
    r = await quick_client.get(f"{API}/balance")
    assert r.status_code == 200 and r.json()["data"]["balance"] == 50_000_000
    engine.stop()


async def test_redis_down_then_back(api_settings: ApiSettings, engine: object, price_feed: object) -> None:
    target = urlsplit(api_settings.redis_url)
    with proxied(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
        via_proxy = api_settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0",
                                                    "reply_timeout_s": 1.0, "redis_timeout_s": 1.0})
        app = create_app(via_proxy)
        try:
            async with asgi_client(app) as client:
                await signup_and_signin(client)
                assert (await client.get(f"{API}/balance")).status_code == 200
                proxy.cut()
                for method, path, body in [("GET", "/balance", None), ("GET", "/user/whoami", None),
                                           ("POST", "/trade/open", open_body()), ("GET", "/markets", None)]:
                    t0 = time.monotonic()
                    r = await client.request(method, f"{API}{path}", json=body)
                    assert r.status_code == 503, (path, r.text)
                    assert "Redis" in r.json()["message"] or "unavailable" in r.json()["message"]
                    assert time.monotonic() - t0 < 5
                proxy.restore()
                r = await client.get(f"{API}/balance")
                assert r.status_code == 200
                assert (await client.post(f"{API}/trade/open", json=open_body())).status_code == 200
        finally:
            await app.state.resources.close()


async def test_postgres_down_then_back(api_settings: ApiSettings, engine: object, price_feed: object) -> None:
    target = urlsplit(api_settings.database_url)
    with proxied(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn = api_settings.database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        app = create_app(api_settings.model_copy(update={"database_url": dsn, "db_timeout_s": 1.0}))
        try:
            async with asgi_client(app) as client:
                user = await signup_and_signin(client)
                assert (await client.get(f"{API}/trade/closed")).status_code == 200
                proxy.cut()
                t0 = time.monotonic()
                r = await client.get(f"{API}/trade/closed")
                assert r.status_code == 503 and "database" in r.json()["message"]
                assert time.monotonic() - t0 < 5
                r = await client.post(f"{API}/user/signin", json={"email": user["email"],
                                                                  "password": user["password"]})
                assert r.status_code == 503
                # trading and live reads do not need Postgres
                assert (await client.post(f"{API}/trade/open", json=open_body())).status_code == 200
                r = await client.get(f"{API}/markets")
                assert r.status_code == 200 and r.json()["markets"][0]["change_24h_bps"] is None
                proxy.restore()
                deadline = time.monotonic() + 10
                while (r := await client.get(f"{API}/trade/closed")).status_code != 200:
                    assert time.monotonic() < deadline, r.text
                assert r.json() == {"trades": [], "next": None}
        finally:
            await app.state.resources.close()
