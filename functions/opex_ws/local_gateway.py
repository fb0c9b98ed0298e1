"""A local stand-in for an API Gateway WebSocket API, for the local stack and tests.

    python -m opex_ws.local_gateway --host 127.0.0.1 --port 8001

What it does, as API Gateway does:

- accepts WebSocket clients; for each upgrade it calls the handler with a
  ``$connect`` event (headers incl. Cookie, ``queryStringParameters``,
  ``requestContext`` with ``connectionId``, ``requestId``, ``connectedAt``...)
  and refuses the upgrade with the handler's status code unless it is 2xx;
- calls the handler for each client frame, with the route chosen by the
  route selection expression ``$request.body.type`` (falling back to
  ``$default``; only ``$default`` is configured, as in infra/api_stack.py),
  and with ``$disconnect`` when the socket closes, whoever closed it;
- closes idle connections (10 minutes) and old ones (2 hours) like API Gateway;
- serves the @connections management API on the same port:
  ``POST /@connections/{id}`` (send the body to the client),
  ``GET`` (connection info), ``DELETE`` (close it); an unknown id answers
  410 with ``x-amzn-ErrorType: GoneException``, which boto3 raises as
  ``GoneException``. SigV4 signatures are not checked.

So the pusher and the handlers use boto3's ``apigatewaymanagementapi`` client
unchanged, with ``WS_CALLBACK_URL=http://127.0.0.1:8001``.

Why aiohttp and not the ``websockets`` server: websockets' HTTP parser only
accepts GET (the upgrade), so it cannot also serve the POST/DELETE of the
management API on the same port; aiohttp serves both on one event loop.
The handler runs in a thread pool (it is synchronous, like a Lambda), so a
slow invocation never stalls the other connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import logging
import os
import re
import signal
import struct
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from typing import Any
from urllib.parse import unquote

import httptools
import orjson
from aiohttp import WSMsgType, web

log = logging.getLogger("opex.ws.gateway")

Handler = Callable[[dict[str, Any], Any], Any]
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's WebSocket message limit
CONNECT, DISCONNECT, DEFAULT = "$connect", "$disconnect", "$default"


def new_id() -> str:
    """An id shaped like API Gateway's (``BFHPhfCWIAMCKlQ=``), safe in a URL path."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _ms() -> int:
    return int(time.time() * 1000)


def _request_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalLambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name = "opex-ws-local"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:local:000000000000:function:opex-ws-local"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/opex-ws-local"
    log_stream_name = "local"

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalConnection:
    connection_id: str
    ws: web.WebSocketResponse
    connected_at: int
    source_ip: str
    user_agent: str | None
    last_active_at: int = field(default_factory=_ms)
    transport: asyncio.Transport | None = None  # the client's socket, for @connections frames


class LocalGateway:
    def __init__(
        self,
        handler: Handler,
        *,
        stage: str = "local",
        api_id: str = "local",
        workers: int = 32,
        idle_timeout_s: float = 600.0,
        max_lifetime_s: float = 7200.0,
        send_timeout_s: float = 5.0,
        route_keys: tuple[str, ...] = (CONNECT, DISCONNECT, DEFAULT),
        route_responses: bool = False,
    ) -> None:
        self.handler = handler
        self.stage = stage
        self.api_id = api_id
        self.idle_timeout_s = idle_timeout_s
        self.max_lifetime_s = max_lifetime_s
        self.send_timeout_s = send_timeout_s
        self.route_keys = frozenset(route_keys)
        self.route_responses = route_responses
        self.connections: dict[str, LocalConnection] = {}
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ws-lambda")
        self.management: set[ConnectionsProtocol] = set()  # open @connections HTTP connections
        self.background: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------ app
    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_MESSAGE_BYTES + 1024)
        for prefix in ("", "/{stage}"):
            path = prefix + "/@connections/{connection_id}"
            app.router.add_post(path, self.post_to_connection)
            app.router.add_get(path, self.get_connection)
            app.router.add_delete(path, self.delete_connection)
        app.router.add_get("/{tail:.*}", self.websocket)
        app.on_shutdown.append(self._close_all)
        return app

    async def _close_all(self, _app: web.Application) -> None:
        await asyncio.gather(*(c.ws.close(code=1001, message=b"Going away")
                               for c in list(self.connections.values())), return_exceptions=True)

    # ------------------------------------------------------------------ events
    def _context(self, request: web.Request, route: str, event_type: str, connection_id: str,
                 connected_at: int, source_ip: str, user_agent: str | None) -> dict[str, Any]:
        now = _ms()
        request_id = new_id()
        identity: dict[str, Any] = {"sourceIp": source_ip}
        if user_agent:
            identity["userAgent"] = user_agent
        return {
            "routeKey": route,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": _request_time(now),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": connected_at,
            "requestTimeEpoch": now,
            "identity": identity,
            "requestId": request_id,
            "domainName": request.host.split(":", 1)[0],
            "connectionId": connection_id,
            "apiId": self.api_id,
        }

    def connect_event(self, request: web.Request, connection_id: str, connected_at: int) -> dict[str, Any]:
        headers: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for key, value in request.headers.items():
            headers[key] = value
            multi.setdefault(key, []).append(value)
        event: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": multi,
            "requestContext": self._context(request, CONNECT, "CONNECT", connection_id, connected_at,
                                            _source_ip(request), request.headers.get("User-Agent")),
            "isBase64Encoded": False,
        }
        if request.query:
            event["queryStringParameters"] = {k: v for k, v in request.query.items()}
            event["multiValueQueryStringParameters"] = {k: request.query.getall(k) for k in request.query}
        return event

    def message_event(self, request: web.Request, conn: LocalConnection, body: str,
                      is_base64: bool) -> dict[str, Any]:
        ctx = self._context(request, self.select_route(body, is_base64), "MESSAGE", conn.connection_id,
                            conn.connected_at, conn.source_ip, conn.user_agent)
        ctx["messageId"] = new_id()
        return {"requestContext": ctx, "body": body, "isBase64Encoded": is_base64}

    def disconnect_event(self, request: web.Request, conn: LocalConnection, code: int,
                         reason: str) -> dict[str, Any]:
        host = request.host.split(":", 1)[0]
        headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
        ctx = self._context(request, DISCONNECT, "DISCONNECT", conn.connection_id, conn.connected_at,
                            conn.source_ip, conn.user_agent)
        ctx["disconnectStatusCode"] = code
        ctx["disconnectReason"] = reason
        return {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()},
                "requestContext": ctx, "isBase64Encoded": False}

    def select_route(self, body: str, is_base64: bool) -> str:
        """``$request.body.type``: a configured route of that name, else $default."""
        if is_base64 or not self.route_keys - {CONNECT, DISCONNECT, DEFAULT}:
            return DEFAULT
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return DEFAULT
        kind = data.get("type") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in self.route_keys and kind not in (CONNECT, DISCONNECT):
            return kind
        return DEFAULT

    async def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        """Call the handler in the pool; an exception is a 500, as from a failed Lambda."""
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.pool, self.handler, event, LocalLambdaContext())
        except Exception:
            log.exception("handler failed", extra={"route": event["requestContext"]["routeKey"]})
            return {"statusCode": 500, "body": "Internal server error", "failed": True}
        return result if isinstance(result, dict) else {"statusCode": 200}

    # ------------------------------------------------------------------ the socket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=426, text="this is a WebSocket endpoint", headers={"Upgrade": "websocket"})
        connection_id, connected_at = new_id(), _ms()
        result = await self.invoke(self.connect_event(request, connection_id, connected_at))
        status = result.get("statusCode", 200)
        if not isinstance(status, int) or not 200 <= status < 300:
            status = status if isinstance(status, int) and 400 <= status < 600 else 500
            body = result.get("body")
            return web.Response(status=status, text=body if isinstance(body, str) else None)
        protocols: tuple[str, ...] = ()
        headers = result.get("headers")
        if isinstance(headers, dict):
            chosen = {k.lower(): v for k, v in headers.items()}.get("sec-websocket-protocol")
            protocols = (chosen,) if isinstance(chosen, str) else ()
        ws = web.WebSocketResponse(protocols=protocols, autoping=True, max_msg_size=MAX_MESSAGE_BYTES,
                                   compress=False)
        await ws.prepare(request)
        conn = LocalConnection(connection_id, ws, connected_at, _source_ip(request),
                               request.headers.get("User-Agent"), transport=request.transport)
        self.connections[connection_id] = conn
        lifetime = asyncio.get_running_loop().call_later(
            self.max_lifetime_s, lambda: asyncio.ensure_future(ws.close(code=1001, message=b"Going away")))
        reason = "Client disconnected"
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=self.idle_timeout_s or None)
                except TimeoutError:
                    reason = "Idle timeout"
                    await ws.close(code=1001, message=b"Going away")
                    break
                if msg.type == WSMsgType.TEXT:
                    body, is_base64 = msg.data, False
                elif msg.type == WSMsgType.BINARY:
                    body, is_base64 = base64.b64encode(msg.data).decode(), True
                else:  # CLOSE, CLOSING, CLOSED, ERROR (e.g. a frame over the size limit)
                    if msg.type == WSMsgType.ERROR:
                        reason = f"Error: {msg.data}"
                    break
                conn.last_active_at = _ms()
                await self._message(request, conn, body, is_base64)
        finally:
            lifetime.cancel()
            self.connections.pop(connection_id, None)
            if not ws.closed:
                await ws.close()
            code = ws.close_code if ws.close_code is not None else 1006
            await self.invoke(self.disconnect_event(request, conn, code, reason))
        return ws

    async def _message(self, request: web.Request, conn: LocalConnection, body: str, is_base64: bool) -> None:
        event = self.message_event(request, conn, body, is_base64)
        result = await self.invoke(event)
        if result.get("failed"):
            # what API Gateway sends when the integration fails
            payload = {"message": "Internal server error", "connectionId": conn.connection_id,
                       "requestId": event["requestContext"]["requestId"]}
            with contextlib.suppress(Exception):
                await conn.ws.send_str(orjson.dumps(payload).decode())
        elif self.route_responses and isinstance(result.get("body"), str):
            with contextlib.suppress(Exception):
                await conn.ws.send_str(result["body"])

    # ------------------------------------------------------------------ @connections
    def _live(self, request: web.Request) -> LocalConnection | None:
        stage = request.match_info.get("stage")
        if stage is not None and stage != self.stage:
            return None
        conn = self.connections.get(request.match_info["connection_id"])
        if conn is None or conn.ws.closed:
            return None
        return conn

    @staticmethod
    def _error(status: int, error_type: str, message: str | None = None) -> web.Response:
        return web.json_response({"message": message}, status=status,
                                 headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": str(uuid.uuid4())})

    async def post_to_connection(self, request: web.Request) -> web.Response:
        conn = self._live(request)
        if conn is None:
            return self._error(410, "GoneException")
        data = await request.read()
        if len(data) > MAX_MESSAGE_BYTES:
            return self._error(413, "PayloadTooLargeException", "Message too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        try:
            send = conn.ws.send_str(text) if text is not None else conn.ws.send_bytes(data)
            await asyncio.wait_for(send, self.send_timeout_s)
        except TimeoutError:
            # a client that does not read: API Gateway would drop it too
            await conn.ws.close(code=1008, message=b"Slow consumer")
            return self._error(410, "GoneException")
        except (ConnectionError, RuntimeError):
            return self._error(410, "GoneException")
        return web.Response(status=200)

    async def get_connection(self, request: web.Request) -> web.Response:
        conn = self._live(request)
        if conn is None:
            return self._error(410, "GoneException")
        identity: dict[str, Any] = {"sourceIp": conn.source_ip}
        if conn.user_agent:
            identity["userAgent"] = conn.user_agent
        return web.json_response({"connectedAt": _iso(conn.connected_at), "identity": identity,
                                  "lastActiveAt": _iso(conn.last_active_at)})

    async def delete_connection(self, request: web.Request) -> web.Response:
        conn = self._live(request)
        if conn is None:
            return self._error(410, "GoneException")
        await conn.ws.close(code=1000, message=b"")
        return web.Response(status=204)

# ---------------------------------------------------------------------- @connections, the fast path
_CONNECTIONS_PATH = re.compile(r"^(?:/([^/?#]+))?/@connections/([^/?#]+)/?$")
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            410: "Gone", 413: "Payload Too Large", 500: "Internal Server Error"}
_PACK2 = struct.Struct("!BBH").pack
_PACK8 = struct.Struct("!BBQ").pack
# a client whose socket holds this much unsent data is not reading: the post
# waits (up to send_timeout_s) for it to drain, as aiohttp's writer would
SLOW_CONSUMER_BYTES = 64 * 1024
_MAX_BODY = 1024 * 1024  # larger bodies are refused (413) without being buffered further


def ws_frame(data: bytes, text: bool) -> bytes:
    """One unmasked (server to client) WebSocket frame, FIN set (RFC 6455 5.2)."""
    first = 0x81 if text else 0x82
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return _PACK2(first, 126, n) + data
    return _PACK8(first, 127, n) + data


def is_connections_target(target: bytes) -> bool:
    path = target.split(b"?", 1)[0]
    return b"/@connections/" in path and _CONNECTIONS_PATH.match(path.decode("latin-1")) is not None


class ConnectionsProtocol(asyncio.Protocol):
    """The management API (``/@connections/{id}``, optionally under ``/{stage}``),
    served straight from the socket with httptools' parser.

    Every HTTP connection starts here. If its first request line is not for
    ``@connections`` (a WebSocket upgrade, anything else) the connection is
    handed, with the bytes read so far, to aiohttp's protocol, which serves
    it as before. A pusher's keep-alive connection therefore costs one parse
    and one write per post instead of aiohttp's request/response machinery
    (about 3x less CPU per post; see docs/websocket.md). A post writes one
    WebSocket frame to the client's socket; a client that is not reading
    (over ``SLOW_CONSUMER_BYTES`` unsent) makes the post wait for it up to the
    gateway's ``send_timeout_s``, then the client is closed (1008) and the
    post answers 410, as before.
    """

    def __init__(self, gateway: LocalGateway, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.gateway = gateway
        self.fallback = fallback
        self.transport: asyncio.Transport | None = None
        self.head = b""  # bytes before the first request line was complete
        self.parser: httptools.HttpRequestParser | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.body_size = 0
        self.queue: list[tuple[bytes, bytes, bytes, bool]] = []  # method, url, body, keep-alive
        self.busy = False
        self.closing = False

    # ------------------------------------------------------------------ asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        self.gateway.management.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gateway.management.discard(self)
        self.closing = True

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            self.head += data
            end = self.head.find(b"\r\n")
            if end < 0 and len(self.head) < 8192:
                return
            line = self.head[:end].split(b" ") if end >= 0 else []
            if len(line) != 3 or not is_connections_target(line[1]):
                self._hand_over()
                return
            self.parser = httptools.HttpRequestParser(self)
            data, self.head = self.head, b""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "BadRequestException", "Upgrade is not supported here")
        except httptools.HttpParserError:
            self._fail(400, "BadRequestException", "Malformed HTTP request")

    def _hand_over(self) -> None:
        """Not @connections: aiohttp serves this connection from here on."""
        assert self.transport is not None
        self.gateway.management.discard(self)
        protocol = self.fallback()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        data, self.head = self.head, b""
        if data:
            protocol.data_received(data)

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size <= _MAX_BODY:
            self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        if self.body_size > _MAX_BODY:  # refused without buffering it; the connection then closes
            self.queue.append((b"TOOBIG", self.url, b"", False))
        else:
            self.queue.append((self.parser.get_method(), self.url, b"".join(self.body),
                               self.parser.should_keep_alive()))
        self._process()

    # ------------------------------------------------------------------ requests
    def _process(self) -> None:
        while self.queue and not self.busy and not self.closing:
            method, url, body, keep = self.queue.pop(0)
            result = self._handle(method, url, body)
            if isinstance(result, tuple):
                self._respond(*result, keep=keep)
            else:  # a coroutine: wait for it, reading nothing more meanwhile
                self.busy = True
                assert self.transport is not None
                self.transport.pause_reading()
                task = asyncio.ensure_future(result)
                task.add_done_callback(lambda t, k=keep: self._resume(t, k))

    def _resume(self, task: asyncio.Future[tuple[int, bytes, dict[str, str]]], keep: bool) -> None:
        self.busy = False
        try:
            self._respond(*task.result(), keep=keep)
        except Exception:
            log.exception("@connections request failed")
            self._respond(*_error(500, "InternalServerErrorException", "Internal server error"), keep=False)
        if self.transport is not None and not self.closing:
            self.transport.resume_reading()
            self._process()

    def _handle(self, method: bytes, url: bytes, body: bytes) -> Any:
        if method == b"TOOBIG":
            return _error(413, "PayloadTooLargeException", "Message too long")
        target = _parse_target(url)
        if target is None:
            return _error(404, "NotFoundException", "Not Found")
        stage, connection_id = target
        gw = self.gateway
        conn = gw.connections.get(connection_id) if stage is None or stage == gw.stage else None
        if conn is None or conn.ws.closed or conn.transport is None or conn.transport.is_closing():
            return _error(410, "GoneException")
        if method == b"POST":
            if len(body) > MAX_MESSAGE_BYTES:
                return _error(413, "PayloadTooLargeException", "Message too long")
            text = body.isascii()  # JSON from the pusher: no decoding needed to know it is text
            if not text:
                try:
                    body.decode("utf-8")
                    text = True
                except UnicodeDecodeError:
                    pass
            frame = ws_frame(body, text)
            if conn.transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                return self._post_when_drained(conn, frame)
            conn.transport.write(frame)
            return 200, b"", {}
        if method == b"GET":
            identity: dict[str, Any] = {"sourceIp": conn.source_ip}
            if conn.user_agent:
                identity["userAgent"] = conn.user_agent
            return 200, orjson.dumps({"connectedAt": _iso(conn.connected_at), "identity": identity,
                                      "lastActiveAt": _iso(conn.last_active_at)}), {}
        if method == b"DELETE":
            return self._delete(conn)
        return _error(404, "NotFoundException", "Not Found")

    async def _post_when_drained(self, conn: LocalConnection, frame: bytes) -> tuple[int, bytes, dict[str, str]]:
        assert conn.transport is not None
        deadline = time.monotonic() + self.gateway.send_timeout_s
        while conn.transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
            if conn.ws.closed or conn.transport.is_closing():
                return _error(410, "GoneException")
            if time.monotonic() >= deadline:
                # a client that does not read: API Gateway would drop it too
                # (closing waits for the client's close frame: not this post's business)
                task = asyncio.ensure_future(conn.ws.close(code=1008, message=b"Slow consumer"))
                self.gateway.background.add(task)
                task.add_done_callback(self.gateway.background.discard)
                return _error(410, "GoneException")
            await asyncio.sleep(0.02)
        if conn.ws.closed or conn.transport.is_closing():
            return _error(410, "GoneException")
        conn.transport.write(frame)
        return 200, b"", {}

    @staticmethod
    async def _delete(conn: LocalConnection) -> tuple[int, bytes, dict[str, str]]:
        await conn.ws.close(code=1000, message=b"")
        return 204, b"", {}

    # ------------------------------------------------------------------ responses
    def _respond(self, status: int, body: bytes, headers: dict[str, str], *, keep: bool) -> None:
        if self.transport is None or self.closing:
            return
        if status == 200 and keep and not body and not headers:  # a delivered post: the common case
            self.transport.write(b"%s%s\r\n\r\n" % (_OK_HEAD, _request_id().encode()))
            return
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                 f"Content-Length: {len(body)}", f"x-amzn-RequestId: {_request_id()}"]
        if body:
            lines.append("Content-Type: application/json")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        if not keep:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if not keep:
            self.closing = True
            self.transport.close()

    def _fail(self, status: int, error_type: str, message: str) -> None:
        self.queue.clear()
        self._respond(*_error(status, error_type, message), keep=False)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


_OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nx-amzn-RequestId: "
# request ids shaped like API Gateway's (a UUID): a random prefix per process and a counter
_REQUEST_ID_PREFIX = str(uuid.uuid4())[:24]
_request_counter = itertools.count(1)


def _request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter) & 0xFFFFFFFFFFFF:012x}"


_TARGETS: dict[bytes, tuple[str | None, str] | None] = {}  # request target -> (stage, connection id)
_MAX_TARGETS = 100_000


def _parse_target(url: bytes) -> tuple[str | None, str] | None:
    """``(stage or None, connection id)`` of an @connections request target, or None.
    Cached: the pusher posts to the same few thousand URLs over and over."""
    try:
        return _TARGETS[url]
    except KeyError:
        pass
    m = _CONNECTIONS_PATH.match(url.split(b"?", 1)[0].decode("latin-1"))
    target = (m.group(1), unquote(m.group(2))) if m is not None else None
    if len(_TARGETS) >= _MAX_TARGETS:
        _TARGETS.clear()
    _TARGETS[url] = target
    return target


def _error(status: int, error_type: str, message: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    return status, orjson.dumps({"message": message}), {"x-amzn-ErrorType": error_type}


def _source_ip(request: web.Request) -> str:
    return request.remote or "127.0.0.1"


def load_handler(path: str) -> Handler:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name or "handler")  # type: ignore[no-any-return]


async def serve(gateway: LocalGateway, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(gateway.application(), access_log=None, handle_signals=False)
    await runner.setup()
    aiohttp_protocol = runner.server
    assert aiohttp_protocol is not None
    loop = asyncio.get_running_loop()
    # every connection starts on the @connections fast path and is handed to
    # aiohttp unless its first request is for @connections
    server = await loop.create_server(lambda: ConnectionsProtocol(gateway, aiohttp_protocol), host, port,
                                      backlog=2048, reuse_address=True)
    log.info("local WebSocket gateway listening",
             extra={"url": f"ws://{host}:{port}", "callback_url": f"http://{host}:{port}",
                    "WS_CALLBACK_URL": os.environ.get("WS_CALLBACK_URL")})
    try:
        await stop.wait()
    finally:
        server.close()
        for protocol in list(gateway.management):
            protocol.close()
        await runner.cleanup()
        gateway.pool.shutdown(wait=True, cancel_futures=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m opex_ws.local_gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("WS_PORT", "8001")))
    parser.add_argument("--handler", default="opex_ws.handler:handler", help="module:function to call")
    parser.add_argument("--stage", default="local")
    parser.add_argument("--workers", type=int, default=32, help="handler invocations at once")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0, help="0: never")
    parser.add_argument("--max-lifetime-s", type=float, default=7200.0)
    args = parser.parse_args(argv)

    from opex_common import heap
    from opex_common.logs import setup_logging

    setup_logging("opex-ws-gateway")
    gateway = LocalGateway(load_handler(args.handler), stage=args.stage, workers=args.workers,
                           idle_timeout_s=args.idle_timeout_s, max_lifetime_s=args.max_lifetime_s)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # Young collections every 20,000 allocations and full ones rarely: a
        # full collection walks every connection's objects, a pause that every
        # frame in flight waits for (API Gateway has none of this).
        heap.settle(20_000, collect=True, older=(50, 50))
        await serve(gateway, args.host, args.port, stop)

    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
