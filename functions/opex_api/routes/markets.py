"""Markets: constants and live prices; the old platform's supported assets."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from opex_common import views

from ..deps import RedisDep, ResourcesDep, SettingsDep
from ..schemas import ERRORS, MarketsOut, SupportedAssetsOut
from ..services import market_data, trading

router = APIRouter(tags=["markets"])


@router.get("/markets", response_model=MarketsOut, responses=ERRORS)
async def markets(request: Request, redis: RedisDep, resources: ResourcesDep,
                  settings: SettingsDep) -> dict[str, Any]:
    """Every market with its live bid, ask, mark and index (4-decimal
    integers), funding rate and next funding time, leverage, fees and steps."""
    prices = trading.decode_prices(await redis.hgetall(settings.keys.prices()))
    day_opens = await request.app.state.day_opens.get(resources.db)
    now_ms = int(time.time() * 1000)
    out = []
    for symbol, spec in settings.market_specs.items():
        px = prices.get(symbol)
        change = market_data.change_bps(px.get("mark") if px else None, day_opens.get(symbol))
        out.append(views.market_view(spec, px, now_ms, settings.price_stale_ms, change))
    return {"markets": out}


@router.get("/supportedAssets", response_model=SupportedAssetsOut)
async def supported_assets(settings: SettingsDep) -> dict[str, Any]:
    return {"assets": [{"symbol": s.symbol, "name": s.name} for s in settings.market_specs.values()]}
