"""One pure-ASGI middleware for every request: a request id and a body size limit.

Pure ASGI (not BaseHTTPMiddleware) because it sits on the hot path.

- Request id: ``X-Request-Id`` from the client (if sane) or a new one; it is the
  logs' correlation id and is echoed on the response. In Lambda the handler has
  already set the correlation id to API Gateway's request id; it is kept.
- Body limit: a request whose ``Content-Length`` or actual body exceeds
  ``max_body_bytes`` is answered 413 before the app reads it.
"""

from __future__ import annotations

import itertools
import os
import re
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .observability import logger

_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
# request ids: a random per-process prefix and a counter (cheaper than uuid4 per request)
_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count(1)


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                length = value
        event = scope.get("aws.event")
        if event is not None:  # Lambda: the handler set API Gateway's request id as correlation id
            request_id = str(event.get("requestContext", {}).get("requestId") or uuid.uuid4().hex).encode()
        else:
            if request_id is None or not _SANE_ID.match(request_id):
                request_id = f"{_PREFIX}-{next(_COUNTER)}".encode()
            logger.thread_safe_append_keys(correlation_id=request_id.decode())  # per asyncio task

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id)]
            await send(message)

        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _reject(send_with_id, 400, "invalid Content-Length header")
                return
            if declared > self.max_body:
                await _reject(send_with_id, 413, f"the request body is larger than {self.max_body} bytes")
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and length is None:
            await self.app(scope, receive, send_with_id)
            return
        # Read the body up to the limit (a chunked body has no Content-Length),
        # then hand it to the app in one piece.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _reject(send_with_id, 413, f"the request body is larger than {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_id)


async def _reject(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"message": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
