"""Schema fuzzing: every operation of the OpenAPI document, with data that
fits the schema and data that does not, against the API under uvicorn (over
TCP) with a real engine, Redis and Postgres. No input may cause a 5xx, and
every response must match the documented statuses, content types and schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from opex_api.config import ApiSettings
from tests.api.api_support import API, LiveServer, PriceFeed

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_server(api_settings: ApiSettings, engine: object, price_feed: PriceFeed, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(api_settings, tmp_path, SIGNIN_RATE_PER_MIN="1000000", SIGNUP_RATE_PER_MIN="1000000").start()
    yield server
    server.stop()


def _session(base: str, email: str) -> requests.Session:
    session = requests.Session()
    creds = {"email": email, "password": "correct horse battery"}
    assert session.post(f"{base}{API}/user/signup", json=creds, timeout=10).status_code == 201
    assert session.post(f"{base}{API}/user/signin", json=creds, timeout=10).status_code == 200
    return session


def test_every_operation_survives_fuzzing(fuzz_server: LiveServer) -> None:
    base = fuzz_server.url
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = _session(base, "fuzzer@example.com")
    # an open trade, so that closes can hit a real id
    r = httpx.post(f"{base}{API}/trade/open", cookies={"jwt": session.cookies["jwt"]}, timeout=10, json={
        "asset": "SOL_USDC_PERP", "type": "long", "quantity": 1, "leverage": 5, "slippage": 100,
        "openPrice": 2_000_100})
    assert r.status_code == 200, r.text
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    seen: dict[str, set[int]] = {}

    def fuzz(operation: object, mode: GenerationMode) -> None:
        label = f"{operation.method.upper()} {operation.path}"  # type: ignore[attr-defined]
        logout = operation.path.endswith("/user/logout")  # type: ignore[attr-defined]
        checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
        def run(case: schemathesis.Case) -> None:
            # logging out revokes the session: give that operation a throwaway one
            s = _session(base, f"out-{uuid.uuid4().hex[:12]}@example.com") if logout else session
            response = case.call(base_url=base, session=s, timeout=10)
            seen.setdefault(label, set()).add(response.status_code)
            case.validate_response(response, checks=checks)

        try:
            run()
        except Unsatisfiable:
            # nothing to get wrong: an operation with no parameters and no body
            assert mode == GenerationMode.NEGATIVE, label

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode)
    assert all(code < 500 for codes in seen.values() for code in codes), seen
    # the fuzzer reached the trading endpoints' success paths, not only their validation
    assert 200 in seen[f"GET {API}/account"] and 200 in seen[f"GET {API}/markets"]
    assert 200 in seen[f"POST {API}/trade/open"] and 404 in seen[f"POST {API}/trade/close"]
