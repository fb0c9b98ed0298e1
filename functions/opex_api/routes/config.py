"""What the SPA needs before it signs in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ..deps import SettingsDep
from ..schemas import ConfigOut

router = APIRouter(tags=["config"])


@router.get("/config", response_model=ConfigOut)
async def config(settings: SettingsDep) -> dict[str, Any]:
    return {"ws_url": settings.ws_public_url, "markets": list(settings.market_specs), "decimal": 4}
