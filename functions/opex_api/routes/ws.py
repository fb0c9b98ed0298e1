"""Tickets for opening the WebSocket where the cookie cannot be sent."""

from __future__ import annotations

import secrets
from typing import Any

import orjson
from fastapi import APIRouter

from ..deps import CurrentUser, RedisDep, SettingsDep
from ..schemas import AUTH_ERRORS, WsTicketOut

router = APIRouter(prefix="/ws", tags=["websocket"])


@router.post("/ticket", response_model=WsTicketOut, responses=AUTH_ERRORS)
async def ticket(user: CurrentUser, redis: RedisDep, settings: SettingsDep) -> dict[str, Any]:
    """A single-use ticket: connect with ``?ticket=...`` within ``expires_in`` seconds."""
    value = secrets.token_urlsafe(32)
    payload = {"user_id": user.user_id, "email": user.email, "jti": user.jti, "exp": user.exp}
    await redis.set(settings.keys.ws_ticket(value), orjson.dumps(payload), ex=settings.ws_ticket_ttl_s)
    return {"ticket": value, "expires_in": settings.ws_ticket_ttl_s}
