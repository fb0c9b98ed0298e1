"""API errors and the exception handlers that turn them into responses.

Every failure answers ``{"message": "...human readable..."}`` with the right
status (api-v1.md; the old platform answered 411 for everything). Handlers are
registered per exception type, so routes just raise.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from opex_common.engine_client import EngineUnavailable
from opex_common.units import UnitError

from .observability import count, logger
from .resources import SessionRevoked
from .security import REVOKED_MESSAGE


class ApiError(Exception):
    """An error with an HTTP status and a message for the client."""

    status = 400

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers
        self.extra = extra or {}


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str = "not signed in, or the session has expired") -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Cookie realm="opex", cookie-name="jwt"'})


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422


class TooLarge(ApiError):
    status = 413


class RateLimited(ApiError):
    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many attempts; retry in {retry_after_s} s",
                         headers={"Retry-After": str(retry_after_s)})


class Unavailable(ApiError):
    status = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


def _body(message: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.status >= 500:
        logger.warning("request failed", extra={"status": exc.status, "reason": exc.message})
    return JSONResponse(_body(exc.message, **exc.extra), status_code=exc.status, headers=exc.headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "body"


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse(_body("the request body is not valid JSON"), status_code=400)
    details = []
    for e in errors:
        where = _loc(e.get("loc", ()))
        msg = str(e.get("msg", "is invalid"))
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        elif e.get("type") == "missing":
            msg = "is required"
        details.append({"field": where, "message": msg})
    text = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "the request is invalid"
    return JSONResponse(_body(text, errors=details), status_code=422)


async def _unit_error(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(_body(str(exc)), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint"
    elif exc.status_code == 405:
        detail = "method not allowed on this endpoint"
    return JSONResponse(_body(detail), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _engine_unavailable(_: Request, exc: Exception) -> JSONResponse:
    count("EngineUnavailable")
    logger.warning("engine unavailable", extra={"reason": str(exc)})
    return JSONResponse(_body(f"trading is temporarily unavailable: {exc}"), status_code=503,
                        headers={"Retry-After": "1"})


async def _redis_down(_: Request, exc: Exception) -> JSONResponse:
    count("RedisUnavailable")
    logger.warning("redis unavailable", extra={"reason": exc.__class__.__name__})
    return JSONResponse(_body("the service is temporarily unavailable (Redis did not answer); please retry"),
                        status_code=503, headers={"Retry-After": "1"})


async def _postgres_down(_: Request, exc: Exception) -> JSONResponse:
    count("DatabaseUnavailable")
    logger.warning("postgres unavailable", extra={"reason": exc.__class__.__name__})
    return JSONResponse(_body("the database is temporarily unavailable; please retry"), status_code=503,
                        headers={"Retry-After": "1"})


async def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # a value the schema let through but Postgres cannot store (defence in depth)
    return JSONResponse(_body("the request contains a value that cannot be stored"), status_code=422)


async def _session_revoked(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(_body(REVOKED_MESSAGE), status_code=401, headers=Unauthorized().headers)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    count("UnhandledError")
    logger.exception("unhandled error")
    return JSONResponse(_body("internal error"), status_code=500)


def register(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(UnitError, _unit_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(EngineUnavailable, _engine_unavailable)
    app.add_exception_handler(SessionRevoked, _session_revoked)
    app.add_exception_handler(RedisError, _redis_down)
    app.add_exception_handler(psycopg.OperationalError, _postgres_down)
    app.add_exception_handler(psycopg.InterfaceError, _postgres_down)
    app.add_exception_handler(psycopg_pool.PoolTimeout, _postgres_down)
    app.add_exception_handler(psycopg.DataError, _unstorable)
    app.add_exception_handler(Exception, _unexpected)

