"""The Lambda entry point of the WebSocket API: ``opex_ws.handler.handler``.

One function serves the three routes, dispatching on ``requestContext.routeKey``
(Powertools has no WebSocket resolver):

- ``$connect``: authenticate (jwt cookie or ``?ticket=``), register the
  connection; a non-2xx status refuses the upgrade (401 no valid credentials,
  403 too many connections, 503 Redis unavailable).
- ``$disconnect``: forget the connection.
- ``$default`` (and any other route key): one client message; the replies are
  posted to the connection through @connections (see management.py).

The local gateway (``local_gateway.py``) calls this same function, from a
thread pool, with events shaped like API Gateway's. Redis is used through
``redis.asyncio`` (the API's ``verify_token`` is async) on one event loop per
thread, created once and reused by every invocation of a warm Lambda.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import APIGatewayWebSocketEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from . import protocol
from .auth import Refused, authenticate
from .config import WsSettings, ws_settings
from .management import Replier, management_client
from .registry import Registry

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "opex-ws")
logger = Logger(service=SERVICE, level=os.environ.get("POWERTOOLS_LOG_LEVEL", os.environ.get("LOG_LEVEL", "INFO")))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Opex"), service=SERVICE)
tracer = Tracer(service=SERVICE)
# EMF metrics only where something reads them (CloudWatch); locally they would be noise
_METRICS_ON = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
# most invocations add no metric; Powertools would warn on every one of them
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

T = TypeVar("T")
OK = {"statusCode": 200}


def _count(name: str) -> None:
    if _METRICS_ON:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


@dataclass(slots=True)
class _PerThread:
    loop: asyncio.AbstractEventLoop
    redis: aioredis.Redis
    registry: Registry


class WsApp:
    """The handlers' logic and connections, for one Settings."""

    def __init__(self, settings: WsSettings) -> None:
        self.settings = settings
        self.markets = frozenset(settings.markets)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._replier: Replier | None = None

    # ------------------------------------------------------------------ resources
    def _thread(self) -> _PerThread:
        state: _PerThread | None = getattr(self._local, "state", None)
        if state is None:
            s = self.settings
            loop = asyncio.new_event_loop()
            redis = aioredis.Redis.from_url(s.redis_url, socket_connect_timeout=s.ws_redis_timeout_s,
                                            socket_timeout=s.ws_redis_timeout_s, health_check_interval=30)
            state = self._local.state = _PerThread(loop, redis, Registry(redis, s.keys, s.ws_connection_ttl_s))
        return state

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._thread().loop.run_until_complete(coro)

    @property
    def replier(self) -> Replier:
        if self._replier is None:
            with self._lock:
                if self._replier is None:
                    self._replier = Replier(management_client(self.settings, timeout_s=self.settings.ws_post_timeout_s))
        return self._replier

    def close(self) -> None:
        """Close this thread's Redis connections (tests, gateway shutdown)."""
        state: _PerThread | None = getattr(self._local, "state", None)
        if state is not None:
            state.loop.run_until_complete(state.redis.aclose())
            state.loop.close()
            self._local.state = None

    # ------------------------------------------------------------------ routes
    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        ctx = event.get("requestContext")
        connection_id = ctx.get("connectionId") if isinstance(ctx, dict) else None
        if not isinstance(connection_id, str) or not connection_id:
            logger.warning("not an API Gateway WebSocket event")
            return {"statusCode": 400}
        route = ctx.get("routeKey")  # type: ignore[union-attr]
        logger.thread_safe_append_keys(correlation_id=ctx.get("requestId"), connection_id=connection_id,  # type: ignore[union-attr]
                                       route=route)
        ev = APIGatewayWebSocketEvent(event)
        try:
            if route == "$connect":
                return self.connect(ev, connection_id)
            if route == "$disconnect":
                return self.disconnect(connection_id)
            return self.message(ev, connection_id)
        except Exception:
            # a bug, not bad input: log it with the event's ids, never crash the runtime
            logger.exception("unhandled error")
            if route not in ("$connect", "$disconnect"):
                self._reply(connection_id, [protocol.error("internal", "internal error")], False)
            return {"statusCode": 500}

    def connect(self, ev: APIGatewayWebSocketEvent, connection_id: str) -> dict[str, Any]:
        try:
            self._run(self._connect(ev, connection_id))
        except Refused as exc:
            logger.info("connection refused", extra={"status": exc.status, "reason": str(exc)})
            _count("WsConnectRefused")
            return {"statusCode": exc.status, "body": str(exc)}
        except (RedisError, OSError) as exc:
            logger.warning("cannot check the connection: Redis unavailable", extra={"error": repr(exc)[:300]})
            return {"statusCode": 503, "body": "temporarily unavailable; retry shortly"}
        _count("WsConnected")
        return OK

    async def _connect(self, ev: APIGatewayWebSocketEvent, connection_id: str) -> None:
        s = self.settings
        registry = self._thread().registry
        identity = await authenticate(ev.headers or {}, ev.multi_value_headers or {},
                                      ev.query_string_parameters or {}, s, self._thread().redis)
        if await registry.live_connections(identity.user_id) >= s.ws_max_connections_per_user:
            raise Refused(403, f"too many open connections (at most {s.ws_max_connections_per_user} per user)")
        connected_at = ev.raw_event["requestContext"].get("connectedAt")
        if not isinstance(connected_at, int):
            connected_at = int(time.time() * 1000)
        await registry.register(connection_id, identity.user_id, connected_at)
        logger.debug("connected", extra={"user_id": identity.user_id, "via": identity.via})

    def disconnect(self, connection_id: str) -> dict[str, Any]:
        try:
            self._run(self._thread().registry.remove(connection_id))
        except (RedisError, OSError) as exc:
            # the entries expire by themselves (WS_CONNECTION_TTL_S)
            logger.warning("could not remove the connection", extra={"error": repr(exc)[:300]})
        return OK

    def message(self, ev: APIGatewayWebSocketEvent, connection_id: str) -> dict[str, Any]:
        try:
            outcome = self._run(self._message(ev, connection_id))
        except (RedisError, OSError) as exc:
            logger.warning("message not handled: Redis unavailable", extra={"error": repr(exc)[:300]})
            outcome = _Outcome([protocol.error("unavailable", "temporarily unavailable; retry shortly")])
        delivered = self._reply(connection_id, outcome.replies, outcome.close)
        if outcome.changed and delivered:
            # after the reply, so the client sees "subscribed" before the first prices
            try:
                self._run(self._thread().registry.notify_changed(connection_id))
            except (RedisError, OSError) as exc:
                # the pusher's periodic full read (WS_REGISTRY_REFRESH_S) catches up
                logger.warning("could not notify the pusher", extra={"error": repr(exc)[:300]})
        return OK

    async def _message(self, ev: APIGatewayWebSocketEvent, connection_id: str) -> _Outcome:
        registry = self._thread().registry
        allowed, send_error = await registry.take_message_token(
            connection_id, self.settings.ws_message_rate_per_s, self.settings.ws_message_burst)
        if not allowed:
            _count("WsRateLimited")
            if send_error:
                return _Outcome([protocol.error(
                    "rate_limited", f"too many messages: at most {self.settings.ws_message_rate_per_s:g} a second "
                                    f"(bursts of {self.settings.ws_message_burst}); this one was ignored")])
            return _Outcome([])
        try:
            raw = protocol.decode_body(ev.body, bool(ev.get("isBase64Encoded")), self.settings.ws_max_message_bytes)
            msg = protocol.parse(raw, self.markets)
        except protocol.ProtocolError as exc:
            _count("WsBadMessage")
            return _Outcome([protocol.error(exc.code, str(exc))])
        if isinstance(msg, protocol.Ping):
            if not await registry.touch(connection_id):
                return _NOT_REGISTERED
            return _Outcome([protocol.pong()])
        op = "add" if isinstance(msg, protocol.Subscribe) else "remove"
        markets = await registry.change_markets(connection_id, op, sorted(set(msg.markets)))
        if markets is None:
            return _NOT_REGISTERED
        return _Outcome([protocol.subscribed(markets)], changed=True)

    def _reply(self, connection_id: str, replies: list[dict[str, Any]], close: bool) -> bool:
        """Post the replies; False if the connection is gone or posting failed."""
        try:
            for reply in replies:
                if not self.replier.post(connection_id, reply):
                    return False  # gone: $disconnect cleans up
            if close:
                self.replier.close(connection_id)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("could not reply to the connection", extra={"error": repr(exc)[:300]})
            return False
        return True


@dataclass(frozen=True, slots=True)
class _Outcome:
    replies: list[dict[str, Any]]
    close: bool = False  # close the connection after the replies
    changed: bool = False  # the subscription changed: tell the pusher


# The registry entry expired or was never written: the pusher cannot reach
# this connection, so close it and let the client reconnect.
_NOT_REGISTERED = _Outcome([protocol.error("not_registered", "this connection is not registered; reconnect")],
                           close=True)


_app: WsApp | None = None
_app_lock = threading.Lock()


def configure(settings: Any = None) -> WsApp:
    """(Re)build the app the handler uses: from the environment, or ``settings`` (tests)."""
    global _app
    with _app_lock:
        _app = WsApp(ws_settings(settings))
    return _app


def reset() -> None:
    """Forget the configured app (the next invocation reads the environment again)."""
    global _app
    with _app_lock:
        _app = None


def app() -> WsApp:
    if _app is None:
        return configure()
    return _app


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app().handle(event)


# the Lambda entry point; EMF metrics are flushed only in Lambda
handler = metrics.log_metrics(_handle) if _METRICS_ON else _handle
