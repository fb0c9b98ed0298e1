"""Passwords and session tokens.

Plain functions usable outside FastAPI (the WebSocket handlers in
``functions/opex_ws`` verify the same tokens):

- ``issue_token(user_id, email, settings) -> (token, jti, exp)``
- ``await verify_token(token, settings, redis) -> Claims`` (raises ``TokenError``
  for a tampered, expired, malformed or revoked token)
- ``await revoke_token(claims, settings, redis)``: the token stops working on
  every API and WebSocket instance at once (a Redis key until it expires).

Tokens are HS256 JWTs (pyjwt) with ``sub, email, jti, iat, exp``; the algorithm
is pinned, so ``alg: none`` and key-confusion tricks are refused. The secret is
``JWT_SECRET`` locally and the Secrets Manager secret ``JWT_SECRET_NAME`` in AWS
(read through Powertools Parameters, cached five minutes).
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.asyncio import Redis

from opex_common.settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("sub", "email", "jti", "iat", "exp")
MAX_TOKEN_CHARS = 4096
SECRET_CACHE_S = 300
MIN_SECRET_BYTES = 32
REVOKED_MESSAGE = "this session has been signed out; please sign in again"


class TokenError(Exception):
    """The token is missing, malformed, tampered with, expired or revoked."""


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    email: str
    jti: str
    exp: int


# ---------------------------------------------------------------------- secret
def jwt_secret(settings: Settings) -> str:
    """The signing secret; raises RuntimeError when none is configured."""
    if settings.jwt_secret:
        return settings.jwt_secret
    if settings.jwt_secret_name:
        return _secret_from_secrets_manager(settings.jwt_secret_name)
    raise RuntimeError("the JWT secret is empty: set JWT_SECRET (local) or JWT_SECRET_NAME (AWS)")


def _secret_from_secrets_manager(name: str) -> str:
    from aws_lambda_powertools.utilities import parameters  # only in AWS: keeps cold starts short

    value = parameters.get_secret(name, max_age=SECRET_CACHE_S)
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str) or not value.strip():
        raise RuntimeError(f"the JWT secret {name!r} in Secrets Manager is empty")
    return value


def check_secret(settings: Settings) -> None:
    """Fail at start-up, not at the first sign-in, when the secret is missing."""
    secret = jwt_secret(settings)
    if len(secret.encode()) < MIN_SECRET_BYTES:
        warnings.warn(f"the JWT secret is shorter than {MIN_SECRET_BYTES} bytes", stacklevel=2)


# ---------------------------------------------------------------------- tokens
def issue_token(user_id: str, email: str, settings: Settings) -> tuple[str, str, int]:
    now = int(time.time())
    exp = now + settings.jwt_ttl_s
    jti = uuid.uuid4().hex
    payload = {"sub": user_id, "email": email, "jti": jti, "iat": now, "exp": exp}
    token = jwt.encode(payload, jwt_secret(settings), algorithm=ALGORITHM)
    return token, jti, exp


# Tokens whose signature and claims were checked: (secret, token) -> Claims.
# A token's content cannot change, so only its expiry (checked on every use)
# and its revocation (checked in Redis on every use) can make it invalid later.
_VERIFIED: dict[tuple[str, str], Claims] = {}
_VERIFIED_MAX = 50_000


def decode_token(token: str, settings: Settings) -> Claims:
    """Check signature, expiry and claims (no revocation check: see verify_token)."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("missing or oversized token")
    secret = jwt_secret(settings)
    cached = _VERIFIED.get((secret, token))
    if cached is not None:
        if cached.exp <= time.time():
            del _VERIFIED[(secret, token)]
            raise TokenError("the session has expired; please sign in again")
        return cached
    try:
        data = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": list(REQUIRED_CLAIMS)})
    except jwt.ExpiredSignatureError:
        raise TokenError("the session has expired; please sign in again") from None
    except jwt.InvalidTokenError:
        raise TokenError("invalid session token") from None
    sub, email, jti, exp = data.get("sub"), data.get("email"), data.get("jti"), data.get("exp")
    if not (isinstance(sub, str) and sub and isinstance(email, str) and isinstance(jti, str) and jti
            and isinstance(exp, int)):
        raise TokenError("invalid session token")
    claims = Claims(sub, email, jti, exp)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(secret, token)] = claims
    return claims


async def verify_token(token: str, settings: Settings, redis: Redis) -> Claims:
    """Decode ``token`` and refuse it if it was revoked (logout).

    Redis errors propagate (the caller answers 503: an outage must not make a
    revoked token valid)."""
    claims = decode_token(token, settings)
    if await redis.exists(settings.keys.revoked_token(claims.jti)):
        raise TokenError(REVOKED_MESSAGE)
    return claims


async def revoke_token(claims: Claims, settings: Settings, redis: Redis) -> None:
    ttl = max(1, claims.exp - int(time.time()) + 1)
    await redis.set(settings.keys.revoked_token(claims.jti), b"1", ex=ttl)


# ---------------------------------------------------------------------- passwords
_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(uuid.uuid4().hex)


def burn_password_check(password: str) -> None:
    """Spend the time of a real check when the email is unknown (no user enumeration by timing)."""
    verify_password(_dummy_hash(), password)
