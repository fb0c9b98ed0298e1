"""The old platform's whole flow, through HTTP: in-process (ASGI) and against
uvicorn over TCP, with a real engine, Redis, Postgres and history writer."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.api.api_support import API, BTC, PRICES, LiveServer, Process, open_body, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

STARTING_BALANCE = 50_000_000  # $5,000.00


async def _old_platform_flow(client: httpx.AsyncClient) -> None:
    # the Postgres database is shared by the run's tests: a unique email
    email, password = f"Trader.{uuid.uuid4().hex[:8]}@Example.com", "correct horse battery"
    r = await client.post(f"{API}/user/signup", json={"email": email, "password": password})
    assert r.status_code == 201, r.text
    user = r.json()["user"]
    assert r.json()["message"] and user["email"] == email.lower() and len(user["id"]) == 32

    r = await client.post(f"{API}/user/signin", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    assert r.json()["user"] == user
    set_cookie = r.headers["set-cookie"]
    assert set_cookie.startswith("jwt=") and "HttpOnly" in set_cookie and "SameSite=lax" in set_cookie
    assert "Secure" not in set_cookie  # plain http locally; Secure in AWS (tested with the Lambda handler)

    r = await client.get(f"{API}/user/whoami")
    assert r.status_code == 200 and r.json() == {"user": user}

    r = await client.get(f"{API}/balance")
    assert r.status_code == 200
    assert r.json() == {"message": r.json()["message"], "data": {"balance": STARTING_BALANCE, "decimal": 4},
                        "userId": user["id"]}

    r = await client.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.01, leverage=10, slippage=50))
    assert r.status_code == 200, r.text
    opened = r.json()
    order = opened["order"]
    ask = PRICES[BTC][1]
    assert order["openPrice"] == ask and order["quantity"] == 0.01 and order["type"] == "long"
    assert order["asset"] == BTC and order["leverage"] == 10
    assert order["margin"] == ask * 1_000_000 // 100_000_000 // 10  # q x fill / L: $97.001
    assert order["fee"] == 4851  # 5 bps of $970.01, rounded up
    assert opened["orderId"] == order["id"]
    assert [o["id"] for o in opened["openOrders"]] == [order["id"]]
    assert opened["usdBalance"] == {"balance": STARTING_BALANCE - order["margin"] - order["fee"], "decimal": 4}

    r = await client.get(f"{API}/trade/open")
    assert r.status_code == 200
    assert [(t["id"], t["quantity"]) for t in r.json()["trades"]] == [(order["id"], 0.01)]

    r = await client.post(f"{API}/trade/close", json={"orderId": order["id"]})
    assert r.status_code == 200, r.text
    closed = r.json()
    bid = PRICES[BTC][0]
    pnl = (bid - ask) * 1_000_000 // 100_000_000
    assert closed["message"] == "Trade closed" and closed["openOrders"] == []
    assert closed["closed"]["closePrice"] == bid and closed["closed"]["pnl"] == pnl
    expected_balance = STARTING_BALANCE - order["fee"] + pnl - closed["closed"]["fee"]
    assert closed["usdBalance"] == {"balance": expected_balance, "decimal": 4}

    r = await client.post(f"{API}/trade/close", json={"orderId": order["id"]})
    assert r.status_code == 200 and r.json()["message"] == "Trade already closed"

    async def history() -> list[dict[str, object]]:
        resp = await client.get(f"{API}/trade/closed")
        assert resp.status_code == 200, resp.text
        return resp.json()["trades"]  # type: ignore[no-any-return]

    trades = await wait_for(history)
    assert len(trades) == 1
    t = trades[0]
    assert t["id"] == order["id"] and t["userId"] == user["id"] and t["liquidated"] is False
    assert (t["openPrice"], t["closePrice"], t["quantity"], t["leverage"], t["type"], t["asset"]) == \
        (ask, bid, 0.01, 10, "long", BTC)
    assert t["pnl"] == pnl and t["margin"] == order["margin"] and t["decimal"] == 4
    assert isinstance(t["createdAt"], str) and t["createdAt"].endswith("Z")

    r = await client.post(f"{API}/user/logout")
    assert r.status_code == 200
    assert 'jwt=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    token = client.cookies.get("jwt")
    assert token is None  # the cookie was cleared...
    r = await client.get(f"{API}/user/whoami")
    assert r.status_code == 401


async def test_old_platform_flow_in_process(api_client: httpx.AsyncClient, history_writer: Process) -> None:
    await _old_platform_flow(api_client)


async def test_old_platform_flow_over_tcp(live_server: LiveServer, history_writer: Process) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=15) as client:
        await _old_platform_flow(client)


async def test_logout_revokes_the_token_not_only_the_cookie(api_client: httpx.AsyncClient) -> None:
    await_user = await _signed_in(api_client)
    token = api_client.cookies["jwt"]
    r = await api_client.post(f"{API}/user/logout")
    assert r.status_code == 200
    # a client that kept the token (a copied cookie, a script) is refused too
    for _ in range(2):
        r = await api_client.get(f"{API}/user/whoami", headers={"Cookie": f"jwt={token}"})
        assert r.status_code == 401 and "signed out" in r.json()["message"]
        r = await api_client.get(f"{API}/balance", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
    assert await_user


async def _signed_in(client: httpx.AsyncClient) -> dict[str, object]:
    from tests.api.api_support import signup_and_signin

    return await signup_and_signin(client)
