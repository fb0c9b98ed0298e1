"""Bad input: every body validated (types, ranges, unknown fields), the right
status with a message, request size limits. None of it reaches the engine."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from opex_api.config import ApiSettings
from tests.api.api_support import API, BTC, ETH, SOL, open_body, signup_and_signin

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BAD_OPEN_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("unknown field", {**open_body(), "userId": "someone-else"}, "userId"),
    ("unknown asset", {**open_body(), "asset": "DOGE_USDC_PERP"}, "asset"),
    ("lower-case asset", {**open_body(), "asset": "btc_usdc_perp"}, "asset"),
    ("side", {**open_body(), "type": "buy"}, "type"),
    ("quantity zero", {**open_body(), "quantity": 0}, "quantity"),
    ("quantity negative", {**open_body(), "quantity": -0.01}, "quantity"),
    ("quantity as text", {**open_body(), "quantity": "0.01"}, "quantity"),
    ("quantity as bool", {**open_body(), "quantity": True}, "quantity"),
    ("quantity huge", {**open_body(), "quantity": 1e300}, "quantity"),
    ("quantity off the BTC step", {**open_body(), "quantity": 0.00015}, "multiple of 0.0001"),
    ("quantity off the SOL step", open_body(SOL, quantity=0.015), "multiple of 0.01"),
    ("quantity beyond 1e-8", {**open_body(), "quantity": 0.123456789}, "decimals"),
    ("leverage zero", {**open_body(), "leverage": 0}, "leverage"),
    ("leverage 101", {**open_body(), "leverage": 101}, "leverage"),
    ("leverage float", {**open_body(), "leverage": 10.5}, "leverage"),
    ("leverage text", {**open_body(), "leverage": "10"}, "leverage"),
    ("slippage negative", {**open_body(), "slippage": -1}, "slippage"),
    ("slippage over 100%", {**open_body(), "slippage": 10_001}, "slippage"),
    ("openPrice zero", {**open_body(), "openPrice": 0}, "openPrice"),
    ("openPrice float", {**open_body(), "openPrice": 97000.5}, "openPrice"),
    ("openPrice absurd", {**open_body(), "openPrice": 10**20}, "openPrice"),
    ("decimal 2", {**open_body(), "decimal": 2}, "decimal"),
    ("margin mode", {**open_body(), "margin_mode": "portfolio"}, "margin_mode"),
    ("take profit off tick", {**open_body(), "take_profit": 990_000_500}, "tick size"),
    ("missing quantity", {k: v for k, v in open_body().items() if k != "quantity"}, "quantity: is required"),
    ("take profit below a long's entry", {**open_body(), "take_profit": 900_000_000}, "take_profit"),
    ("stop loss above a long's entry", {**open_body(), "stop_loss": 990_000_000}, "stop_loss"),
]


async def test_bad_open_bodies_get_422(api_client: httpx.AsyncClient) -> None:
    await signup_and_signin(api_client)
    wrong = []
    for case, body, mentions in BAD_OPEN_BODIES:  # one engine for all the cases
        r = await api_client.post(f"{API}/trade/open", json=body)
        if r.status_code != 422 or mentions not in r.json()["message"]:
            wrong.append((case, r.status_code, r.text))
    assert wrong == []
    assert (await api_client.get(f"{API}/trade/open")).json()["trades"] == []
    assert (await api_client.get(f"{API}/balance")).json()["data"]["balance"] == 50_000_000


async def test_other_bad_requests(api_client: httpx.AsyncClient, api_settings: ApiSettings) -> None:
    await signup_and_signin(api_client)
    post = api_client.post
    r = await post(f"{API}/trade/open", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["message"] == "the request body is not valid JSON"
    r = await post(f"{API}/trade/open", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = await post(f"{API}/trade/open", content=b"", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = await post(f"{API}/trade/open", content=b"asset=BTC", headers={"content-type": "text/plain"})
    assert r.status_code in (400, 422)
    for body in ({}, {"orderId": ""}, {"orderId": "x" * 65}, {"orderId": "a b"}, {"orderId": 5},
                 {"orderId": "abc", "quantity": 0}, {"orderId": "abc", "extra": 1}):
        r = await post(f"{API}/trade/close", json=body)
        assert r.status_code == 422, body
    r = await post(f"{API}/trade/close", json={"orderId": "no-such-trade"})
    assert r.status_code == 404 and r.json()["message"] == "trade not found"

    for body in ({"email": "not-an-email", "password": "long enough"}, {"email": "a@b.io", "password": "short"},
                 {"email": "a@b.io", "password": "x" * 129}, {"email": "a@b.io"},
                 {"email": "a@b.io", "password": "long enough", "admin": True}):
        r = await post(f"{API}/user/signup", json=body)
        assert r.status_code == 422, body
        assert r.json()["message"]

    r = await api_client.get(f"{API}/candles", params={"symbol": BTC, "interval": "2m"})
    assert r.status_code == 422 and "interval" in r.json()["message"]
    for limit in ("0", "1001", "ten"):
        r = await api_client.get(f"{API}/candles", params={"symbol": ETH, "limit": limit})
        assert r.status_code == 422
    assert (await api_client.get(f"{API}/candles")).status_code == 422
    assert (await api_client.get(f"{API}/ledger", params={"limit": 0})).status_code == 422
    assert (await api_client.get(f"{API}/trade/closed", params={"before": -1})).status_code == 422
    r = await post(f"{API}/trade/open", json=open_body(), headers={"Idempotency-Key": "bad key with spaces"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["message"]

    assert (await api_client.get(f"{API}/no/such/endpoint")).status_code == 404
    assert (await api_client.delete(f"{API}/balance")).status_code == 405


async def test_request_size_limit(app_client: httpx.AsyncClient, api_settings: ApiSettings) -> None:
    limit = api_settings.max_body_bytes
    big = {"email": "a@b.io", "password": "x" * limit}
    r = await app_client.post(f"{API}/user/signin", json=big)
    assert r.status_code == 413 and str(limit) in r.json()["message"]

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(limit // 1000 + 2):
            yield b" " * 1000

    r = await app_client.post(f"{API}/user/signin", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = await app_client.post(f"{API}/user/signin", content=b"{}",
                              headers={"content-type": "application/json", "content-length": "abc"})
    assert r.status_code == 400
