"""Authorization across two users: a user never sees or closes another's
trades, history or ledger, and ids do not leak (404, not 403)."""

from __future__ import annotations

import httpx
import pytest

from tests.api.api_support import API, BTC, ETH, open_body, signup_and_signin, wait_for
from tests.api.conftest import asgi_client

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


async def test_users_are_isolated(api_client: httpx.AsyncClient, history_writer: object) -> None:
    transport = api_client._transport  # the same app, another browser
    alice = api_client
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as bob:
        a = await signup_and_signin(alice)
        b = await signup_and_signin(bob)
        r = await alice.post(f"{API}/trade/open", json=open_body(BTC, "long", 0.01))
        assert r.status_code == 200
        alice_trade = r.json()["orderId"]
        r = await alice.post(f"{API}/trade/open", json=open_body(ETH, "short", 0.5))
        alice_partial = r.json()["orderId"]
        assert (await alice.post(f"{API}/trade/close", json={"orderId": alice_partial, "quantity": 0.1})
                ).status_code == 200

        # Bob sees none of it
        assert (await bob.get(f"{API}/trade/open")).json()["trades"] == []
        assert (await bob.get(f"{API}/account")).json()["account"]["trades"] == []
        asset = (await bob.get(f"{API}/balance/asset")).json()["data"]
        assert all(v["balance"] == 0 for v in asset.values())

        # and cannot close it, whole or in part: 404, the same as for an id that does not exist
        for body in ({"orderId": alice_trade}, {"orderId": alice_trade, "quantity": 0.001}):
            r = await bob.post(f"{API}/trade/close", json=body)
            assert r.status_code == 404 and r.json() == {"message": "trade not found"}
        r = await bob.post(f"{API}/trade/close", json={"orderId": "00000000-0000-4000-8000-000000000000"})
        assert r.status_code == 404 and r.json() == {"message": "trade not found"}

        # an Idempotency-Key Bob reuses from Alice does not replay Alice's command
        r = await alice.post(f"{API}/trade/open", json=open_body(BTC), headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 200
        r = await bob.post(f"{API}/trade/open", json=open_body(BTC), headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 200 and len((await bob.get(f"{API}/trade/open")).json()["trades"]) == 1

        # Alice's trade is still open, untouched
        trades = (await alice.get(f"{API}/trade/open")).json()["trades"]
        assert alice_trade in [t["id"] for t in trades]

        async def alice_closed() -> list[dict[str, object]]:
            return (await alice.get(f"{API}/trade/closed")).json()["trades"]  # type: ignore[no-any-return]

        closed = await wait_for(alice_closed)
        assert [t["id"] for t in closed] == [alice_partial] and closed[0]["userId"] == a["id"]

        async def bob_ledger() -> list[dict[str, object]]:
            return (await bob.get(f"{API}/ledger")).json()["entries"]  # type: ignore[no-any-return]

        entries = await wait_for(bob_ledger)
        assert {e["trade_id"] for e in entries} <= {None, *[t["id"] for t in (await bob.get(f"{API}/trade/open")
                                                                                   ).json()["trades"]]}
        assert (await bob.get(f"{API}/trade/closed")).json()["trades"] == []
        assert b["id"] != a["id"]


async def test_every_user_endpoint_requires_a_session(app_client: httpx.AsyncClient) -> None:
    app = app_client._transport.app  # type: ignore[attr-defined]
    async with asgi_client(app) as anon:
        for method, path in [("GET", "/user/whoami"), ("POST", "/user/logout"), ("GET", "/balance"),
                             ("GET", "/balance/asset"), ("GET", "/trade/open"), ("POST", "/trade/open"),
                             ("POST", "/trade/close"), ("GET", "/trade/closed"), ("GET", "/account"),
                             ("GET", "/ledger"), ("POST", "/ws/ticket")]:
            r = await anon.request(method, f"{API}{path}", json={} if method == "POST" else None)
            assert r.status_code == 401, path
            assert r.json()["message"]
        for path in ["/markets", "/supportedAssets", "/config", "/health"]:
            assert (await anon.get(f"{API}{path}")).status_code == 200, path
