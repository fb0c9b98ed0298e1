"""Fixtures of the WebSocket tests.

- ``moto_api``: moto's @connections API (mock_aws), recording every post and
  able to answer GoneException (410), fail, or be slow for chosen ids;
- ``ws_app``: the ws handlers configured for the test's settings, replying
  through moto;
- ``live``: the local gateway and the pusher as processes (what ``make run``
  starts), for end-to-end tests with real WebSocket clients;
- ``server_factory``: scripted HTTP servers (support.HttpServer), closed after the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from opex_common.settings import Settings
from tests.helpers import free_port
from tests.ws.support import MOTO_CALLBACK_URL, HttpServer, Live, MotoApi, gateway_process, pusher_process


@pytest.fixture
def moto_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoApi]:
    from moto import mock_aws
    from moto.apigatewaymanagementapi.models import ApiGatewayManagementApiBackend
    from moto.core.exceptions import JsonRESTError

    class GoneException(JsonRESTError):
        code = 410

        def __init__(self) -> None:
            super().__init__("GoneException", "")

    class InternalServerError(JsonRESTError):
        code = 500

        def __init__(self) -> None:
            super().__init__("InternalServerErrorException", "injected failure")

    api = MotoApi()
    original_post = ApiGatewayManagementApiBackend.post_to_connection
    original_delete = ApiGatewayManagementApiBackend.delete_connection

    def post(self: Any, data: bytes, connection_id: str) -> None:
        with api.lock:
            api.in_flight[connection_id] = n = api.in_flight.get(connection_id, 0) + 1
            api.max_in_flight[connection_id] = max(n, api.max_in_flight.get(connection_id, 0))
        try:
            delay = api.slow.get(connection_id)
            if delay:
                time.sleep(delay)
            with api.lock:
                if connection_id in api.gone:
                    raise GoneException()
                left = api.failing.get(connection_id, 0)
                if left:
                    api.failing[connection_id] = left - 1
                    raise InternalServerError()
                api.posts.append((connection_id, bytes(data), time.monotonic()))
            original_post(self, data, connection_id)
        finally:
            with api.lock:
                api.in_flight[connection_id] -= 1

    def delete(self: Any, connection_id: str) -> None:
        with api.lock:
            api.deleted.append(connection_id)
        original_delete(self, connection_id)

    monkeypatch.setattr(ApiGatewayManagementApiBackend, "post_to_connection", post)
    monkeypatch.setattr(ApiGatewayManagementApiBackend, "delete_connection", delete)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield api


@pytest.fixture
def moto_settings(settings: Settings) -> Settings:
    """The test's settings, posting to moto's @connections."""
    return settings.model_copy(update={"ws_callback_url": MOTO_CALLBACK_URL})


@pytest.fixture
def ws_app(moto_settings: Settings, redis: redis_lib.Redis, moto_api: MotoApi) -> Iterator[Any]:
    from opex_ws import handler as ws_handler

    app = ws_handler.configure(moto_settings)
    yield app
    app.close()
    ws_handler.reset()


@pytest.fixture
def token(settings: Settings) -> Callable[[str], str]:
    from opex_api.security import issue_token

    def make(user_id: str, email: str | None = None) -> str:
        return issue_token(user_id, email or f"{user_id}@example.com", settings)[0]

    return make


# ---------------------------------------------------------------------- live processes
@pytest.fixture
def live_factory(settings: Settings, redis: redis_lib.Redis, tmp_path: Path) -> Iterator[Callable[..., Live]]:
    started: list[Live] = []

    def make(with_pusher: bool = True, **env: str) -> Live:
        port = free_port()
        gateway = gateway_process(settings, port, tmp_path, **env).start()
        live = Live(settings, port, gateway, None, tmp_path)
        started.append(live)
        gateway.wait_port(port)
        if with_pusher:
            live.pusher = pusher_process(settings, port, tmp_path, **env).start()
            live.pusher.wait_subscribed(redis, settings.keys.prices_channel())
        return live

    yield make
    for live in started:
        if live.pusher is not None:
            live.pusher.stop()
        live.gateway.stop()


@pytest.fixture
def live(live_factory: Callable[..., Live]) -> Live:
    return live_factory()


@pytest.fixture
def server_factory() -> Iterator[Callable[[Callable[[bytes, int], bytes | None]], HttpServer]]:
    servers: list[HttpServer] = []

    def make(respond: Callable[[bytes, int], bytes | None]) -> HttpServer:
        servers.append(HttpServer(respond))
        return servers[-1]

    yield make
    for s in servers:
        s.close()
