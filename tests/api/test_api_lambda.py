"""The Lambda handler (opex_api.handler.handler) invoked directly with API
Gateway HTTP API v2 events, as Lambda would: cookies in and out, the request
id as correlation id, EMF metrics, the JWT secret from Secrets Manager (moto)."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import orjson
import pytest
from moto import mock_aws

from opex_api.config import ApiSettings
from tests.api.api_support import API, BTC, FakeLambdaContext, PriceFeed, env_for, http_api_event, open_body

pytestmark = pytest.mark.integration

SECRET_NAME = "opex/test/jwt"


@pytest.fixture
def lambda_handler(api_settings: ApiSettings, engine: object, price_feed: PriceFeed,
                   monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """opex_api.handler imported fresh with the test's settings in the
    environment, as in AWS: ENVIRONMENT=aws, the secret in Secrets Manager."""
    env = env_for(api_settings, ENVIRONMENT="aws", JWT_SECRET="", JWT_SECRET_NAME=SECRET_NAME,
                  AWS_DEFAULT_REGION="eu-west-1", AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                  POWERTOOLS_METRICS_NAMESPACE="OpexTest", POWERTOOLS_SERVICE_NAME="opex-api")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name=SECRET_NAME, SecretString=f"from-secrets-manager-{uuid.uuid4().hex}")
        sys.modules.pop("opex_api.handler", None)
        module = importlib.import_module("opex_api.handler")
        yield module
        asyncio.get_event_loop().run_until_complete(module.app.state.resources.close())
        sys.modules.pop("opex_api.handler", None)


def _invoke(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]]:
    out = module.handler(event, FakeLambdaContext())
    is_json = out["headers"].get("content-type", "").startswith("application/json")
    body = orjson.loads(out["body"]) if out.get("body") and is_json else {}
    return out["statusCode"], out, body


def test_handler_serves_the_api_with_cookies_in_and_out(lambda_handler: ModuleType,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    email = f"lambda-{uuid.uuid4().hex[:8]}@example.com"
    creds = {"email": email, "password": "correct horse battery"}

    status, out, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/user/signup", body=creds))
    assert status == 201, body
    user_id = body["user"]["id"]

    rid = f"apigw-{uuid.uuid4().hex[:8]}"
    status, out, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/user/signin", body=creds,
                                                               request_id=rid))
    assert status == 200, body
    # payload v2: cookies leave in the `cookies` list, not in headers
    assert "set-cookie" not in {k.lower() for k in out["headers"]}
    [cookie] = out["cookies"]
    assert cookie.startswith("jwt=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" in cookie  # ENVIRONMENT=aws
    assert out["headers"]["x-request-id"] == rid  # the API Gateway request id is the correlation id
    jwt_cookie = cookie.split(";", 1)[0]

    status, _, body = _invoke(lambda_handler, http_api_event("GET", f"{API}/user/whoami", cookies=[jwt_cookie]))
    assert status == 200 and body == {"user": {"id": user_id, "email": email}}

    status, _, body = _invoke(lambda_handler, http_api_event("GET", f"{API}/user/whoami"))
    assert status == 401

    status, _, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/trade/open", body=open_body(BTC),
                                                             cookies=[jwt_cookie, "other=1"]))
    assert status == 200, body
    trade_id = body["orderId"]

    status, _, body = _invoke(lambda_handler, http_api_event("GET", f"{API}/account", cookies=[jwt_cookie]))
    assert status == 200 and [t["id"] for t in body["account"]["trades"]] == [trade_id]

    status, _, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/trade/close",
                                                             body={"orderId": trade_id}, cookies=[jwt_cookie]))
    assert status == 200 and body["message"] == "Trade closed"

    status, _, body = _invoke(lambda_handler, http_api_event("GET", f"{API}/candles",
                                                             query="symbol=BTC_USDC_PERP&interval=1h&limit=5"))
    assert status == 200 and body["interval"] == "1h"

    status, out, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/user/logout", cookies=[jwt_cookie]))
    assert status == 200
    assert out["cookies"][0].startswith("jwt=") and "Max-Age=0" in out["cookies"][0]
    status, _, _ = _invoke(lambda_handler, http_api_event("GET", f"{API}/user/whoami", cookies=[jwt_cookie]))
    assert status == 401  # revoked, though the client sent the old cookie

    # Powertools Metrics: EMF lines with the business metrics and the cold start
    printed = capsys.readouterr().out
    emf = [orjson.loads(line) for line in printed.splitlines() if line.startswith("{") and "_aws" in line]
    names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"Signup", "Signin", "TradeOpened", "TradeClosed"} <= names
    assert any("ColdStart" in doc for doc in emf)


def test_handler_limits_and_errors(lambda_handler: ModuleType) -> None:
    status, _, body = _invoke(lambda_handler, http_api_event("POST", f"{API}/user/signin",
                                                             body={"email": "x@y.io", "password": "p" * 20000}))
    assert status == 413 and "larger" in body["message"]
    status, _, body = _invoke(lambda_handler, http_api_event("GET", "/docs"))
    assert status == 200
    status, _, body = _invoke(lambda_handler, http_api_event("GET", "/openapi.json"))
    assert status == 200 and f"{API}/trade/open" in body["paths"]
    # the rate limit counts per source IP (API Gateway's sourceIp)
    ip = "198.51.100.23"
    codes = [_invoke(lambda_handler, http_api_event("POST", f"{API}/user/signin", source_ip=ip,
                                                    body={"email": "nobody@example.com", "password": "x"}))[0]
             for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]
    status, _, _ = _invoke(lambda_handler, http_api_event("POST", f"{API}/user/signin", source_ip="198.51.100.24",
                                                          body={"email": "nobody@example.com", "password": "x"}))
    assert status == 401
