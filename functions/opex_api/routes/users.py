"""Sign-up, sign-in, who am I, logout (api-v1)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from opex_common.engine_client import EngineUnavailable

from ..deps import COOKIE_NAME, CurrentUser, DbDep, EngineDep, RedisDep, SettingsDep, rate_limit
from ..errors import Conflict, RateLimited, Unauthorized
from ..observability import count, logger
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ERRORS,
    ErrorOut,
    MessageOut,
    SigninBody,
    SignupBody,
    UserEnvelope,
    WhoAmIOut,
)
from ..security import issue_token, needs_rehash, revoke_token
from ..services import users

router = APIRouter(prefix="/user", tags=["users"])

_RATE: dict[int | str, dict[str, Any]] = {429: {"model": ErrorOut, "description": "too many attempts from this client; see Retry-After"}}


@router.post("/signup", status_code=status.HTTP_201_CREATED, response_model=UserEnvelope,
             dependencies=[Depends(rate_limit("signup", lambda s: s.signup_rate_per_min))],
             responses={409: {"model": ErrorOut, "description": "the email is already registered"},
                        **_RATE, **BODY_ERRORS, **ERRORS})
async def signup(body: SignupBody, db: DbDep, engine: EngineDep) -> dict[str, object]:
    """Create a user and its trading account, which starts with $5,000.00.

    Safe to retry: the same email and password again (after a 503, or a lost
    reply) finishes the same signup and answers 201 with the same user; another
    password for a taken email is a 409."""
    email = users.normalize_email(body.email)
    user = await users.insert(db, email, await users.hash_password(body.password))
    if user is None:
        existing = await users.find_by_email(db, email)
        if existing is None or not await users.check_password(existing, body.password):
            raise Conflict("an account with this email already exists")
        user = existing
    await users.open_engine_account(engine, user.id)
    count("Signup")
    return {"message": "User created", "user": {"id": user.id, "email": user.email}}


@router.post("/signin", response_model=UserEnvelope,
             dependencies=[Depends(rate_limit("signin", lambda s: s.signin_rate_per_min))],
             responses={401: {"model": ErrorOut, "description": "wrong email or password"},
                        **_RATE, **BODY_ERRORS, **ERRORS})
async def signin(body: SigninBody, response: Response, db: DbDep, engine: EngineDep, redis: RedisDep,
                 settings: SettingsDep) -> dict[str, object]:
    """Check the password and set the session cookie ``jwt`` (httpOnly, SameSite=Lax)."""
    email = users.normalize_email(body.email)
    # Per-account limit on failed attempts, on top of the per-address one: a
    # guesser spreading over many addresses still gets only a few tries a minute.
    window = int(time.time() // 60)
    fails_key = settings.keys.rate_limit("signin-fail", f"{hashlib.sha256(email.encode()).hexdigest()[:32]}:{window}")
    failures = int(await redis.get(fails_key) or 0)
    if failures >= 2 * settings.signin_rate_per_min:
        raise RateLimited(retry_after_s=max(1, 60 - int(time.time() % 60)))
    user = await users.find_by_email(db, email)
    if not await users.check_password(user, body.password):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(fails_key)
            pipe.expire(fails_key, 120)
            await pipe.execute()
        raise Unauthorized("wrong email or password")
    assert user is not None
    if needs_rehash(user.password_hash):
        await users.update_password_hash(db, user.id, await users.hash_password(body.password))
    if not await redis.exists(settings.keys.account(user.id)):
        try:  # finish a signup whose account the engine never opened
            await users.open_engine_account(engine, user.id, fresh=True)
        except EngineUnavailable:
            logger.warning("engine account not opened at signin; will retry on use", extra={"user_id": user.id})
    token, _, _ = issue_token(user.id, user.email, settings)
    response.set_cookie(COOKIE_NAME, token, max_age=settings.jwt_ttl_s, path="/", httponly=True,
                        samesite="lax", secure=settings.secure_cookies)
    count("Signin")
    return {"message": "Signed in", "user": {"id": user.id, "email": user.email}}


@router.get("/whoami", response_model=WhoAmIOut, responses=AUTH_ERRORS)
async def whoami(user: CurrentUser) -> dict[str, object]:
    return {"user": {"id": user.user_id, "email": user.email}}


@router.post("/logout", response_model=MessageOut, responses=AUTH_ERRORS)
async def logout(user: CurrentUser, response: Response, redis: RedisDep, settings: SettingsDep) -> dict[str, str]:
    """Revoke the session token (everywhere, at once) and clear the cookie."""
    await revoke_token(user, settings, redis)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=settings.secure_cookies)
    return {"message": "Logged out"}
