"""FastAPI dependencies, as ``Annotated`` aliases routes can declare.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in
a worker thread, a thread hop per dependency per request on the hot path."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
from fastapi import Depends, Header, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import AsyncConnectionPool

from .config import ApiSettings
from .errors import ApiError, RateLimited, Unauthorized
from .resources import PipelinedEngineClient, Resources, as_mapping, round_trip
from .security import REVOKED_MESSAGE, Claims, TokenError, decode_token, verify_token
from .services.trading import decode_prices
from .services.users import open_engine_account

COOKIE_NAME = "jwt"


async def _resources(request: Request) -> Resources:
    return request.app.state.resources  # type: ignore[no-any-return]


async def _settings(request: Request) -> ApiSettings:
    return request.app.state.settings  # type: ignore[no-any-return]


# Each reads app.state directly rather than depending on _resources: every
# node of the dependency tree costs FastAPI work on every request.
async def _redis(request: Request) -> aioredis.Redis:
    return request.app.state.resources.redis  # type: ignore[no-any-return]


async def _engine(request: Request) -> PipelinedEngineClient:
    return request.app.state.resources.engine  # type: ignore[no-any-return]


async def _db(request: Request) -> AsyncConnectionPool:
    return await request.app.state.resources.db()  # type: ignore[no-any-return]


SettingsDep = Annotated[ApiSettings, Depends(_settings)]
ResourcesDep = Annotated[Resources, Depends(_resources)]
RedisDep = Annotated[aioredis.Redis, Depends(_redis)]
EngineDep = Annotated[PipelinedEngineClient, Depends(_engine)]
DbDep = Annotated[AsyncConnectionPool, Depends(_db)]

# Documented in OpenAPI as the two ways to present the token; the cookie is what
# the SPA and old clients use, the header is for scripts and the load generator.
_cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="the session JWT set by signin")
_bearer_scheme = HTTPBearer(auto_error=False, description="the same JWT as a bearer token")


async def _token(
    cookie: Annotated[str | None, Depends(_cookie_scheme)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
) -> str:
    token = cookie or (bearer.credentials if bearer else None)
    if not token:
        raise Unauthorized()
    return token


Token = Annotated[str, Depends(_token)]


async def _current_user(request: Request, token: Token) -> Claims:
    state = request.app.state
    try:
        return await verify_token(token, state.settings, state.resources.redis)
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None


CurrentUser = Annotated[Claims, Depends(_current_user)]


# The hot routes (trade open / close, the other engine commands, the account
# reads) take their session through one flat dependency that reads the cookie
# or bearer token itself: FastAPI resolves every node of a dependency tree on
# every request, and the cookie-scheme / bearer-scheme / token / session chain
# above cost more CPU than the rest of the request's Python. The token rules
# are exactly those of ``_token`` (cookie first, then ``Authorization: Bearer``);
# the OpenAPI security requirement the schemes would have added is declared
# with ``SESSION_OPENAPI`` on those routes.
SESSION_OPENAPI: dict[str, Any] = {
    "security": [{_cookie_scheme.scheme_name: []}, {_bearer_scheme.scheme_name: []}],
}


def request_token(request: Request) -> str:
    """The session token: the ``jwt`` cookie, else an ``Authorization: Bearer``
    header (what ``_token`` accepts, through ``APIKeyCookie`` and ``HTTPBearer``)."""
    token = request.cookies.get(COOKIE_NAME)
    if token:
        return token
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        credentials = credentials.strip()
        if scheme and credentials and scheme.lower() == "bearer":
            return credentials
    raise Unauthorized()


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a route that sends an engine command needs: the session (signature,
    expiry and claims checked here; revocation is checked by the submission
    itself, atomically with it and in the same Redis round trip:
    ``PipelinedEngineClient.submit`` with the session's revoked key, so a
    revoked session never reaches the engine), the engine client, the settings."""

    user: Claims
    engine: PipelinedEngineClient
    settings: ApiSettings


async def _command_context(request: Request) -> CommandContext:
    state = request.app.state
    token = request_token(request)
    try:
        user = decode_token(token, state.settings)
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    # the Idempotency-Key's printable-ASCII rule is checked here, after the
    # session and before the body, where its own dependency checked it; its
    # length (<= 256) is the header parameter's, validated with the body
    check_idempotency_key(request.headers.get("idempotency-key"))
    return CommandContext(user, state.resources.engine, state.settings)


# Declare with an ``IdempotencyHeader`` parameter on the route.
Command = Annotated[CommandContext, Depends(_command_context)]
command_context = _command_context  # also called directly by ``hotpath``


@dataclass(frozen=True, slots=True)
class AccountView:
    """The signed-in user and the engine's read model of their account."""

    user: Claims
    account: dict[str, Any]
    prices: dict[str, dict[str, Any]]


async def _load_account(settings: ApiSettings, redis: aioredis.Redis, engine: PipelinedEngineClient, token: str,
                        with_prices: bool) -> AccountView:
    # the session check (signature, expiry, revocation) and the reads in one round trip
    try:
        claims = decode_token(token, settings)
    except TokenError as exc:
        raise Unauthorized(str(exc)) from None
    keys = settings.keys
    commands: list[tuple[Any, ...]] = [("EXISTS", keys.revoked_token(claims.jti)), ("GET", keys.account(claims.user_id))]
    if with_prices:
        commands.append(("HGETALL", keys.prices()))
    results = await round_trip(redis, commands)
    if results[0]:
        raise Unauthorized(REVOKED_MESSAGE)
    raw = results[1]
    # no read model: the engine never opened the account (it was down at signup)
    account = orjson.loads(raw) if raw else await open_engine_account(engine, claims.user_id, fresh=True)
    return AccountView(claims, account, decode_prices(as_mapping(results[2])) if with_prices else {})


# Flat (no Token sub-dependency): declare ``openapi_extra=SESSION_OPENAPI`` on the route.
async def _current_account(request: Request) -> AccountView:
    state = request.app.state
    return await _load_account(state.settings, state.resources.redis, state.resources.engine,
                               request_token(request), False)


async def _current_account_and_prices(request: Request) -> AccountView:
    state = request.app.state
    return await _load_account(state.settings, state.resources.redis, state.resources.engine,
                               request_token(request), True)


CurrentAccount = Annotated[AccountView, Depends(_current_account)]
current_account = _current_account  # also called directly by ``hotpath``
CurrentAccountAndPrices = Annotated[AccountView, Depends(_current_account_and_prices)]


async def client_ip(request: Request) -> str:
    """The caller's address: API Gateway's sourceIp in Lambda (Mangum puts it
    in scope["client"]), the socket peer under uvicorn. X-Forwarded-For is not
    trusted: anyone can write it."""
    client = request.client
    return client.host if client else "unknown"


ClientIp = Annotated[str, Depends(client_ip)]


def rate_limit(scope: str, per_minute: Callable[[ApiSettings], int]) -> Callable[..., Awaitable[None]]:
    """A dependency allowing about ``per_minute(settings)`` calls per client per
    minute, counted in Redis so every instance shares them.

    Sliding-window counter: this minute's count plus last minute's, weighted by
    how much of last minute is still inside the 60 s window (no double burst at
    a minute boundary, two small keys per client). Refused attempts count too."""

    async def check(settings: SettingsDep, redis: RedisDep, ip: ClientIp) -> None:
        now = time.time()
        window = int(now // 60)
        current = settings.keys.rate_limit(scope, f"{ip}:{window}")
        previous = settings.keys.rate_limit(scope, f"{ip}:{window - 1}")
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(current)
            pipe.expire(current, 120)
            pipe.get(previous)
            hits, _, before = await pipe.execute()
        elapsed = (now % 60) / 60
        if hits + int(before or 0) * (1 - elapsed) > per_minute(settings):
            raise RateLimited(retry_after_s=max(1, 60 - int(now % 60)))

    return check


_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")
IDEMPOTENCY_MAX_CHARS = 256
_IDEMPOTENCY_DESCRIPTION = "makes a retried write apply once (any printable text, up to 128 characters)"


def check_idempotency_key(value: str | None) -> None:
    """400 unless the key is 1 to 128 printable ASCII characters. Longer than
    256 is left to the header parameter's validation (422, with the body's errors)."""
    if value is not None and len(value) <= IDEMPOTENCY_MAX_CHARS and not _IDEMPOTENCY_KEY.match(value):
        raise ApiError("Idempotency-Key must be 1 to 128 printable ASCII characters", status=400)


# The header as a route parameter (documented, length-checked by FastAPI); with ``Command``.
IdempotencyHeader = Annotated[str | None, Header(description=_IDEMPOTENCY_DESCRIPTION,
                                                 max_length=IDEMPOTENCY_MAX_CHARS)]


def command_id(user: Claims, kind: str, key: str | None) -> str | None:
    """The engine command id for a client's Idempotency-Key, scoped to the user
    and the kind of command (two users, or an open and a close, sending the same
    key never collide); None: a fresh id."""
    if key is None:
        return None
    digest = hashlib.blake2b(f"{user.user_id}:{kind}:{key}".encode(), digest_size=16).hexdigest()
    return f"ik-{digest}"
