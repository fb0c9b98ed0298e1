"""The busiest routes without FastAPI's per-request machinery, same code and same answers.

``POST /trade/open``, ``POST /trade/close``, ``GET /balance`` and ``GET /trade/open``
are most of the traffic. For them, FastAPI's per-request work (walking the
routers, the middleware layers, solving the dependency tree, the ``Request`` and
``Response`` objects, each layer's ``send`` wrapper) cost about as much CPU as
the route's own work. ``HotPath`` (a pure-ASGI middleware, inside
``RequestGuard``) serves these four routes with the very objects FastAPI would
use, in the same order:

* the route's own endpoint function (``routes/trades.py``, ``routes/balance.py``),
  called with what FastAPI would pass it;
* the same dependency functions (``deps._command_context``, ``deps._current_account``);
* the request body parsed as FastAPI parses it (``json.loads``, only for
  ``Content-Type: application/json``) and validated by the route's own body
  field (FastAPI's ``ModelField`` of ``OpenTradeBody`` / ``CloseTradeBody``);
* the result validated and serialised by the route's own response field, as
  FastAPI's ``serialize_response`` does, into the same bytes and headers;
* exceptions raised once the engine or Redis is involved answered by the app's
  registered exception handlers, looked up as Starlette's ``ExceptionMiddleware``
  does (an unhandled one propagates to ``ServerErrorMiddleware``, the 500 handler).

Anything that is not the plain happy path *before* any I/O (no or a bad
session, a malformed ``Idempotency-Key``, a body that is not JSON or does not
validate, another content type, a path with a root path, HEAD, ...) is handed
to FastAPI untouched, body included: those checks have no side effects, so
FastAPI then answers exactly as it would have (same status, same message, the
same order of 400 / 401 / 422). Only the happy path is served here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.exceptions import ResponseValidationError
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import deps
from .routes import API_PREFIX, balance, trades

_JSON = b"application/json"
_HEADERS_JSON = (b"content-type", _JSON)


@dataclass(frozen=True, slots=True)
class HotRoute:
    """One route served here: its FastAPI ``APIRoute`` (endpoint, body and
    response fields) and how its parameters are obtained."""

    route: APIRoute
    kind: str  # "command": body + Command + Idempotency-Key; "account": CurrentAccount only

    @property
    def endpoint(self) -> Callable[..., Awaitable[Any]]:
        return self.route.endpoint  # type: ignore[no-any-return]


def _api_route(router: APIRouter, path: str, method: str) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in (route.methods or ()):
            # what the serialisation below assumes about the route (FastAPI's defaults)
            assert route.response_field is not None and route.status_code is None
            assert route.response_model_include is None and route.response_model_exclude is None
            assert route.response_model_by_alias and not (
                route.response_model_exclude_unset or route.response_model_exclude_defaults
                or route.response_model_exclude_none)
            assert not route.dependencies and not route.dependant.query_params
            return route
    raise LookupError(f"no {method} {path} route")


def hot_routes() -> dict[tuple[str, str], HotRoute]:
    table = {
        ("POST", trades.router.prefix + "/open"): HotRoute(_api_route(trades.router, "/trade/open", "POST"), "command"),
        ("POST", trades.router.prefix + "/close"): HotRoute(_api_route(trades.router, "/trade/close", "POST"),
                                                            "command"),
        ("GET", balance.router.prefix): HotRoute(_api_route(balance.router, "/balance", "GET"), "account"),
        ("GET", trades.router.prefix + "/open"): HotRoute(_api_route(trades.router, "/trade/open", "GET"), "account"),
    }
    for hot in table.values():
        params = {p.name for p in hot.route.dependant.path_params + hot.route.dependant.query_params
                  + hot.route.dependant.cookie_params}
        assert not params, hot.route.path
        # the parameters ``HotPath`` passes, solved by the functions FastAPI would call
        solved = [(d.name, d.call) for d in hot.route.dependant.dependencies]
        if hot.kind == "command":
            assert hot.route.body_field is not None
            assert [(p.name, p.alias) for p in hot.route.dependant.header_params] == [
                ("idempotency_key", "idempotency-key")]
            assert solved == [("cmd", deps.command_context)], solved
        else:
            assert hot.route.body_field is None and not hot.route.dependant.header_params
            assert solved == [("current", deps.current_account)], solved
    return {(method, API_PREFIX + path): hot for (method, path), hot in table.items()}


class _Fallback(Exception):
    """Not the happy path: let FastAPI answer."""


def _lookup_handler(handlers: dict[Any, Any], exc: Exception) -> Callable[..., Awaitable[Any]] | None:
    # as Starlette's ExceptionMiddleware: the first class of the exception's MRO
    # with a handler; ``Exception`` itself is ServerErrorMiddleware's (outside)
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        handler = handlers.get(cls)
        if handler is not None:
            return handler  # type: ignore[no-any-return]
    return None


class HotPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = hot_routes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        if hot is None or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        if hot.kind == "account":
            await self._serve(hot, scope, receive, send, None)
            return
        message = await receive()
        if message["type"] != "http.request" or message.get("more_body", False):
            await self.app(scope, _replay(message, receive), send)
            return
        try:
            kwargs = await self._command_kwargs(hot, scope, message.get("body", b""))
        except Exception:  # _Fallback, or anything the parsing raised (RecursionError...): FastAPI answers
            await self.app(scope, _replay(message, receive), send)
            return
        await self._serve(hot, scope, _replay(message, receive), send, kwargs)

    async def _command_kwargs(self, hot: HotRoute, scope: Scope, body: bytes) -> dict[str, Any]:
        """The endpoint's arguments, as FastAPI would solve them; raises (``_Fallback``
        or whatever failed) for anything but the happy path. No I/O, no side effect."""
        content_type: bytes | None = None
        key: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                if content_type is not None:
                    raise _Fallback
                content_type = value
            elif name == b"idempotency-key":
                if key is not None:
                    raise _Fallback
                key = value
        if content_type is None or content_type.lower() != _JSON or not body:
            raise _Fallback
        idempotency_key = key.decode("latin-1") if key is not None else None
        if idempotency_key is not None and len(idempotency_key) > deps.IDEMPOTENCY_MAX_CHARS:
            raise _Fallback
        data = json.loads(body)  # what Starlette's Request.json() does
        body_field = hot.route.body_field
        assert body_field is not None
        value, errors = body_field.validate(data, {}, loc=("body",))
        if errors:
            raise _Fallback
        cmd = await deps.command_context(Request(scope))  # 401 / 400: raises, and FastAPI answers
        return {body_field.name: value, "cmd": cmd, "idempotency_key": idempotency_key}

    async def _serve(self, hot: HotRoute, scope: Scope, receive: Receive, send: Send,
                     kwargs: dict[str, Any] | None) -> None:
        try:
            if kwargs is None:
                kwargs = {"current": await deps.current_account(Request(scope, receive))}
            result = await hot.endpoint(**kwargs)
            field = hot.route.response_field
            assert field is not None
            value, errors = field.validate(result, {}, loc=("response",))
            if errors:
                raise ResponseValidationError(errors=errors, body=result)
            payload = field.serialize_json(value)
        except Exception as exc:
            handler = _lookup_handler(scope["app"].exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send)
            return
        # the headers of FastAPI's Response(content, media_type="application/json")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), _HEADERS_JSON]})
        await send({"type": "http.response.body", "body": payload})


def _replay(first: Message, receive: Receive) -> Receive:
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return first
        return await receive()

    return replay
