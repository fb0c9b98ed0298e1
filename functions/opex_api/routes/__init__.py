"""One router per resource, all under /api/v1."""

from __future__ import annotations

from fastapi import APIRouter

from . import account, balance, candles, config, ledger, markets, orders, trades, users, ws

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX)
    for module in (users, balance, trades, orders, markets, account, candles, ledger, config, ws):
        router.include_router(module.router)
    return router
