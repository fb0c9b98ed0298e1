"""USD balance and margin per asset (api-v1), from the engine's read model."""

from __future__ import annotations

from fastapi import APIRouter

from opex_common import views

from ..deps import SESSION_OPENAPI, CurrentAccount, SettingsDep
from ..schemas import AUTH_ERRORS, AssetBalanceOut, BalanceOut

router = APIRouter(prefix="/balance", tags=["balance"])


@router.get("", response_model=BalanceOut, responses=AUTH_ERRORS,
             openapi_extra=SESSION_OPENAPI)
async def balance(current: CurrentAccount) -> dict[str, object]:
    """Free USD balance (margin locked in open trades is not part of it)."""
    return {"message": "Balance", "data": views.usd_balance(current.account), "userId": current.user.user_id}


@router.get("/asset", response_model=AssetBalanceOut, responses=AUTH_ERRORS,
             openapi_extra=SESSION_OPENAPI)
async def asset_balance(current: CurrentAccount, settings: SettingsDep) -> dict[str, object]:
    """Margin locked per market: long positive, short negative."""
    return {"message": "Margin per asset", "data": views.margin_by_asset(current.account, settings.market_specs)}
