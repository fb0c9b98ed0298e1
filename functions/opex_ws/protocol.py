"""The WebSocket messages a client may send, validated, and the control replies.

Client -> server (JSON objects with a ``type``):
``{"type": "subscribe", "markets": [...]}``, ``{"type": "unsubscribe", "markets": [...]}``,
``{"type": "ping"}``.

Server -> client, from the handlers: ``{"type": "subscribed", "markets": [...]}``
(the connection's whole subscription after a subscribe or unsubscribe),
``{"type": "pong", "ts"}``, ``{"type": "error", "code", "message"}``. Prices and
account updates come from the pusher (engine_container/opex_engine/pusher).
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Collection
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_MARKETS_PER_MESSAGE = 32
MESSAGE_TYPES = ("subscribe", "unsubscribe", "ping")


class ProtocolError(Exception):
    """A client message we cannot act on; ``code`` and ``str(self)`` go back to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


Symbol = Annotated[str, Field(min_length=1, max_length=64)]


class Subscribe(_Message):
    type: Literal["subscribe"]
    markets: list[Symbol] = Field(min_length=1, max_length=MAX_MARKETS_PER_MESSAGE)


class Unsubscribe(_Message):
    type: Literal["unsubscribe"]
    markets: list[Symbol] = Field(min_length=1, max_length=MAX_MARKETS_PER_MESSAGE)


class Ping(_Message):
    type: Literal["ping"]


ClientMessage = Annotated[Subscribe | Unsubscribe | Ping, Field(discriminator="type")]
_adapter: TypeAdapter[Subscribe | Unsubscribe | Ping] = TypeAdapter(ClientMessage)


def decode_body(body: str | None, is_base64: bool, max_bytes: int) -> bytes:
    """The raw bytes of a frame as API Gateway hands them over."""
    if not isinstance(body, str) or body == "":
        raise ProtocolError("bad_request", "empty message: send a JSON object with a \"type\"")
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("bad_request", "the message is not valid base64") from None
    else:
        raw = body.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"the message is larger than {max_bytes} bytes")
    return raw


def parse(raw: bytes, known_markets: Collection[str]) -> Subscribe | Unsubscribe | Ping:
    """Validate one client message; raises ProtocolError with a message fit for the client."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError("bad_request", "the message is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError("bad_request", "the message must be a JSON object with a \"type\"")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad_request", "the message has no \"type\" (expected one of "
                            + ", ".join(MESSAGE_TYPES) + ")")
    if kind not in MESSAGE_TYPES:
        shown = kind if len(kind) <= 40 else kind[:40] + "..."
        raise ProtocolError("unknown_type", f"unknown message type {shown!r} (expected one of "
                            + ", ".join(MESSAGE_TYPES) + ")")
    try:
        msg = _adapter.validate_python(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or kind
        raise ProtocolError("bad_request", f"{kind}: {where}: {err['msg']}") from None
    if isinstance(msg, Subscribe | Unsubscribe):
        unknown = sorted({m for m in msg.markets if m not in known_markets})
        if unknown:
            raise ProtocolError("unknown_market", "unknown market(s): " + ", ".join(unknown[:5])
                                + "; available: " + ", ".join(sorted(known_markets)))
    return msg


# ---------------------------------------------------------------------- replies
def subscribed(markets: list[str]) -> dict[str, Any]:
    return {"type": "subscribed", "markets": markets}


def pong() -> dict[str, Any]:
    return {"type": "pong", "ts": int(time.time() * 1000)}


def error(code: str, message: str) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message}
