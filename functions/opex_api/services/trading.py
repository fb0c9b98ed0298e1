"""Trading: commands to the engine, and the engine's read models.

Writes go on the engine's input stream and wait for its reply (one round trip:
XADD + BLPOP on a per-command reply list, 503 on timeout). Reads never queue
behind the engine: they come from the read models it writes to Redis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from opex_common import messages, views
from opex_common.engine_client import new_command_id
from opex_common.markets import MarketSpec
from opex_common.units import qty_from_text, qty_to_decimal

from ..config import ApiSettings
from ..errors import ApiError, Invalid
from ..resources import PipelinedEngineClient
from ..schemas import CloseTradeBody, OpenTradeBody
from ..security import Claims
from .users import account_after_reply, open_engine_account


class EngineRefused(ApiError):
    """The engine answered with an error: its status (404/409/422) and message."""


def _check(reply: dict[str, Any]) -> dict[str, Any]:
    if reply.get("ok"):
        return reply
    status = reply.get("status")
    raise EngineRefused(str(reply.get("message") or "refused"),
                        status=status if isinstance(status, int) and 400 <= status < 500 else 409)


def _account_missing(reply: dict[str, Any]) -> bool:
    return reply.get("code") == messages.NOT_FOUND and reply.get("message") == "account not found"


def quantity_units(value: float, spec: MarketSpec, what: str = "quantity") -> int:
    """Base units (a JSON number) -> 1e-8 units, refusing what is not a whole
    multiple of the market's quantity step."""
    qty = qty_from_text(value, what)
    if qty <= 0 or qty % spec.qty_step:
        raise Invalid(f"{what} must be a positive multiple of {qty_to_decimal(spec.qty_step)} {spec.base} "
                      f"for {spec.symbol}")
    if qty < spec.min_qty:
        raise Invalid(f"{what} is below the minimum of {qty_to_decimal(spec.min_qty)} {spec.base}")
    return qty


async def _submit(engine: PipelinedEngineClient, command: dict[str, Any], user: Claims, *,
                  with_prices: bool = False) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Send a user command unless the session is revoked (checked atomically
    with the send); return the reply's data with ``account`` (the read model
    after the command) and, if asked, the live prices read just after. If the
    user's engine account was never opened (the engine was down at signup),
    open it and send the command once more."""
    revoked_key = engine.keys.revoked_token(user.jti)
    reply, raw_prices = await engine.submit(command, revoked_key=revoked_key, with_prices=with_prices)
    if _account_missing(reply):
        await open_engine_account(engine, user.user_id)
        reply, raw_prices = await engine.submit({**command, "id": f"{command['id']}:r"}, revoked_key=revoked_key,
                                                with_prices=with_prices)
    data = dict(_check(reply).get("data") or {})
    data["account"] = await account_after_reply(engine, user.user_id, reply)
    return data, decode_prices(raw_prices or {})


async def open_trade(engine: PipelinedEngineClient, settings: ApiSettings, user: Claims, body: OpenTradeBody,
                     command_id: str | None) -> dict[str, Any]:
    """Open a market trade; returns the reply data with ``order`` (api-v1's
    order, with its fee and liquidation price) and ``account``."""
    spec = settings.market_specs[body.asset]
    if body.leverage > spec.max_leverage:
        raise Invalid(f"leverage must be from 1 to {spec.max_leverage} for {spec.symbol}")
    for name in ("take_profit", "stop_loss"):
        value = getattr(body, name)
        if value is not None and value % spec.tick_size:
            raise Invalid(f"{name} must be a multiple of the tick size {spec.tick_size} (4 decimals)")
    command: dict[str, Any] = {
        "id": command_id or new_command_id(),
        "type": messages.OPEN,
        "user_id": user.user_id,
        "market": spec.symbol,
        "side": body.type,
        "qty": quantity_units(body.quantity, spec),
        "leverage": body.leverage,
        "slippage_bps": body.slippage,
        "price": body.openPrice,
        "margin_mode": body.margin_mode,
    }
    if body.take_profit is not None:
        command["take_profit"] = body.take_profit
    if body.stop_loss is not None:
        command["stop_loss"] = body.stop_loss
    data, prices = await _submit(engine, command, user, with_prices=True)
    trade = data["trade"]
    order = views.order_view(trade)
    order["fee"] = data.get("fee", trade.get("fees", 0))
    health = views.account_health(data["account"], prices, settings.market_specs)
    order["liquidation_price"] = next((t["liquidation_price"] for t in health["trades"] if t["id"] == trade["id"]),
                                      None)
    data["order"] = order
    return data


async def close_trade(engine: PipelinedEngineClient, user: Claims, body: CloseTradeBody,
                      command_id: str | None) -> dict[str, Any]:
    command: dict[str, Any] = {
        "id": command_id or new_command_id(),
        "type": messages.CLOSE,
        "user_id": user.user_id,
        "trade_id": body.orderId,
    }
    if body.quantity is not None:
        # the step depends on the trade's market, which only the engine knows
        # for sure: convert exactly here, let the engine check the step
        qty = qty_from_text(body.quantity, "quantity")
        if qty <= 0:
            raise Invalid("quantity must be positive")
        command["qty"] = qty
    data, _ = await _submit(engine, command, user)
    return data


def decode_prices(raw: Mapping[Any, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for market, value in raw.items():
        try:
            px = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(px, dict):
            out[market.decode() if isinstance(market, bytes) else market] = px
    return out
