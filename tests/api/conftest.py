"""Fixtures of the API tests: the app over ASGI, the app under uvicorn, a price
feed playing the poller, the history writer process.

Built on tests/conftest.py: ``settings`` (a unique key prefix, a migrated
Postgres database), ``redis``, ``engine`` (a real engine subprocess)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from opex_api.app import create_app
from opex_api.config import ApiSettings
from opex_common.settings import Settings
from tests.api.api_support import LiveServer, PriceFeed, Process, history_writer_process


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def api_settings(settings: Settings, redis: object) -> ApiSettings:
    """The test's settings as the API reads them (``redis`` makes sure the
    test's keys are deleted afterwards)."""
    return ApiSettings(**settings.model_dump())


def asgi_client(app: object, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=15)


@pytest.fixture
async def app_client(api_settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process over ASGI, with no engine running."""
    app = create_app(api_settings)
    async with asgi_client(app) as client:
        yield client
    await app.state.resources.close()


@pytest.fixture
def price_feed(settings: Settings, redis: object) -> Iterator[PriceFeed]:
    feed = PriceFeed(settings).start()
    yield feed
    feed.stop()


@pytest.fixture
async def api_client(app_client: httpx.AsyncClient, engine: object, price_feed: PriceFeed) -> httpx.AsyncClient:
    """The app over ASGI with a running engine and live prices."""
    return app_client


@pytest.fixture
def live_server(api_settings: ApiSettings, engine: object, price_feed: PriceFeed,
                tmp_path: Path) -> Iterator[LiveServer]:
    """The app under uvicorn (as the local stack runs it), over real HTTP."""
    server = LiveServer(api_settings, tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def history_writer(settings: Settings, redis: object, tmp_path: Path) -> Iterator[Process]:
    """The history writer process (python -m opex_engine history)."""
    proc = history_writer_process(settings, tmp_path, HISTORY_BLOCK_MS="100").start()
    yield proc
    proc.stop()
