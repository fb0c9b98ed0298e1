"""Who is opening this WebSocket: the ``jwt`` cookie of the upgrade request, or a
single-use ticket from ``POST /api/v1/ws/ticket`` (``?ticket=...``) for clients
whose cookie does not reach the socket's origin.

Tokens are checked by the API's own code (``opex_api.security.verify_token``:
signature, expiry, revocation), so a signed-out session cannot open a socket.
A ticket is taken with GETDEL: it works once, within its 30 s TTL, and only
while the session it was issued for is still valid.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from opex_api.security import TokenError, verify_token
from opex_common.settings import Settings

COOKIE_NAME = "jwt"
_TICKET = re.compile(r"^[A-Za-z0-9_\-]{16,128}$")


class Refused(Exception):
    """The upgrade is refused with ``status`` (401: no valid credentials, 403: not allowed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    email: str
    via: str  # "cookie" | "ticket"


def cookie_value(headers: Mapping[str, str], multi: Mapping[str, list[str]], name: str) -> str | None:
    """The value of cookie ``name`` from the Cookie header(s), whatever their case."""
    lines: list[str] = []
    for key, values in multi.items():
        if key.lower() == "cookie":
            lines.extend(v for v in values if isinstance(v, str))
    if not lines:
        lines = [v for k, v in headers.items() if k.lower() == "cookie" and isinstance(v, str)]
    for line in lines:
        for part in line.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                return value or None
    return None


async def _from_ticket(ticket: str, settings: Settings, redis: Redis) -> Identity:
    if not _TICKET.match(ticket):
        raise Refused(401, "invalid ticket")
    raw = await redis.getdel(settings.keys.ws_ticket(ticket))
    if raw is None:
        raise Refused(401, "the ticket is unknown, used or expired; request a new one")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Refused(401, "invalid ticket") from None
    if not isinstance(data, dict):
        raise Refused(401, "invalid ticket")
    user_id, email = data.get("user_id"), data.get("email")
    if not (isinstance(user_id, str) and user_id and isinstance(email, str)):
        raise Refused(401, "invalid ticket")
    # the session the ticket was issued for must still be valid
    exp, jti = data.get("exp"), data.get("jti")
    if isinstance(exp, int) and exp <= time.time():
        raise Refused(401, "the session has expired; please sign in again")
    if isinstance(jti, str) and jti and await redis.exists(settings.keys.revoked_token(jti)):
        raise Refused(401, "this session has been signed out; please sign in again")
    return Identity(user_id, email, "ticket")


async def _from_cookie(token: str, settings: Settings, redis: Redis) -> Identity:
    try:
        claims = await verify_token(token, settings, redis)
    except TokenError as exc:
        raise Refused(401, str(exc)) from None
    return Identity(claims.user_id, claims.email, "cookie")


async def authenticate(
    headers: Mapping[str, str], multi_headers: Mapping[str, list[str]], query: Mapping[str, str],
    settings: Settings, redis: Redis,
) -> Identity:
    """The user opening the socket, or Refused. Redis errors propagate (the
    caller answers 503: an outage must not let anyone in)."""
    ticket = query.get("ticket")
    token = cookie_value(headers, multi_headers, COOKIE_NAME)
    if ticket:
        try:
            return await _from_ticket(ticket, settings, redis)
        except Refused:
            if not token:
                raise
    if token:
        return await _from_cookie(token, settings, redis)
    raise Refused(401, "sign in first: no session cookie and no ticket")
