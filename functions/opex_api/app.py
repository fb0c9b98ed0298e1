"""The FastAPI application: ``create_app(settings) -> FastAPI``.

Routes are thin (``routes/``); what they do lives in ``services/``; settings
in ``config``, dependencies in ``deps``, tokens and passwords in ``security``,
errors and their handlers in ``errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from opex_common.settings import Settings

from . import errors
from .config import api_settings
from .hotpath import HotPath
from .middleware import RequestGuard
from .resources import Resources
from .routes import API_PREFIX, include_api_routes
from .schemas import MessageOut
from .security import check_secret
from .services.market_data import DayOpenCache
from .serving import tune_gc

DESCRIPTION = """
Paper trading of BTC, ETH and SOL perpetual futures with simulated dollars.

* Prices and USD amounts are **integers with 4 implied decimals** and carry `"decimal": 4`
  (BTC at 97,123.4567 is `971234567`; $5,000.00 is `50000000`).
* Quantities are JSON numbers of base units (`0.01` BTC), a whole multiple of the market's `qty_step`.
* Sign in with `POST /api/v1/user/signin`: the session is a JWT in the httpOnly cookie `jwt`
  (scripts may send it as `Authorization: Bearer ...`).
* Errors answer `{"message": "..."}` with 400, 401, 404, 409, 413, 422, 429 or 503.
  A 503 means the engine, Redis or Postgres did not answer in time: retry (with the same
  `Idempotency-Key` for a write, so it applies once).
"""

TAGS = [
    {"name": "users", "description": "sign-up, sign-in, sessions"},
    {"name": "balance", "description": "api-v1 balances"},
    {"name": "trades", "description": "open, close and list trades; take-profit / stop-loss; add margin"},
    {"name": "orders", "description": "resting limit orders: place, list, cancel"},
    {"name": "account", "description": "account health and ledger"},
    {"name": "markets", "description": "markets, live prices, candles"},
    {"name": "websocket", "description": "WebSocket tickets"},
    {"name": "config", "description": "client configuration"},
]


def create_app(settings: Settings | None = None, *, hot_path: bool = True) -> FastAPI:
    """The app. ``hot_path=False`` leaves every route to FastAPI (``hotpath.HotPath``
    serves the busiest ones otherwise, with the same answers: the tests compare both)."""
    s = api_settings(settings)
    check_secret(s)  # refuse to start without a signing secret
    resources = Resources(s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tune_gc()  # a long-running server (uvicorn): Mangum in Lambda runs with lifespan off
        yield
        await resources.close()

    app = FastAPI(
        title="Opex API",
        version="1.0.0",
        summary="Perpetual-futures paper trading",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry is off: the API traces with Powertools'
        # Tracer (X-Ray) in Lambda. Left on, FastAPI asks the OpenTelemetry
        # globals (and the environment) on every request whether a provider was
        # configured, about 2% of the CPU of a trade request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = s
    app.state.resources = resources
    app.state.day_opens = DayOpenCache()
    errors.register(app)
    include_api_routes(app)

    @app.get(f"{API_PREFIX}/health", response_model=MessageOut, tags=["config"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers (dependencies are checked by the calls that use them)."""
        return {"message": "ok"}

    if s.frontend_dist:
        # the local stack serves the built SPA from the same origin (in AWS: S3 + CloudFront)
        app.mount("/", StaticFiles(directory=s.frontend_dist, html=True, check_dir=False), name="spa")
    if hot_path:
        app.add_middleware(HotPath)  # inside RequestGuard: the request id and the body limit apply to it too
    app.add_middleware(RequestGuard, max_body_bytes=s.max_body_bytes)
    return app


app: FastAPI  # built on first access, below


def __getattr__(name: str) -> FastAPI:
    """``opex_api.app:app`` for uvicorn (the local stack): built from the
    environment on first access, so importing ``create_app`` needs no settings."""
    if name == "app":
        global app
        app = create_app()
        return app
    raise AttributeError(name)
