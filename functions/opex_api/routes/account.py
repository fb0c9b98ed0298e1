"""Account health: balance, equity, margins, and each trade's mark, PnL and liquidation price."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from opex_common import views

from ..deps import SESSION_OPENAPI, CurrentAccountAndPrices, SettingsDep
from ..schemas import AUTH_ERRORS, AccountEnvelope

router = APIRouter(tags=["account"])


@router.get("/account", response_model=AccountEnvelope, responses=AUTH_ERRORS,
             openapi_extra=SESSION_OPENAPI)
async def account(current: CurrentAccountAndPrices, settings: SettingsDep) -> dict[str, Any]:
    """Computed with the engine's own formulas (opex_common.margin) at the
    latest marks. ``margin_ratio_bps`` reaching 10000 means cross liquidation."""
    return {"account": views.account_health(current.account, current.prices, settings.market_specs)}
