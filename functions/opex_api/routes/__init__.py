"""One router per resource, all under /api/v1."""

from __future__ import annotations

from fastapi import FastAPI

from . import account, balance, candles, config, ledger, markets, orders, trades, users, ws

API_PREFIX = "/api/v1"

# Routes are matched in order, one by one, on every request: the busiest first
# (trade open / close, then the balance). No two modules share a path.
MODULES = (trades, balance, orders, account, users, markets, candles, ledger, config, ws)


def include_api_routes(app: FastAPI) -> None:
    """Every resource's router under ``API_PREFIX``, each included in the app
    directly: FastAPI walks nested routers level by level on every request, so
    one ``/api/v1`` router holding the others would be one more level per request."""
    for module in MODULES:
        app.include_router(module.router, prefix=API_PREFIX)
