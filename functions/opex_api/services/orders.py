"""Limit orders, take-profit / stop-loss changes and margin top-ups: commands to
the engine (``place_order``, ``cancel_order``, ``set_tpsl``, ``add_margin``),
sent and answered like opens and closes (services.trading: one round trip,
503 on timeout, engine refusals keep their status)."""

from __future__ import annotations

from typing import Any

from opex_common import messages, views
from opex_common.engine_client import new_command_id

from ..config import ApiSettings
from ..errors import Invalid
from ..resources import PipelinedEngineClient
from ..schemas import AddMarginBody, PlaceOrderBody, TpslBody
from ..security import Claims
from .trading import _submit, quantity_units


def _liquidation_price(data: dict[str, Any], prices: dict[str, dict[str, Any]], settings: ApiSettings,
                       trade_id: str) -> int | None:
    """The trade's liquidation price in the account after the command, at the live marks."""
    health = views.account_health(data["account"], prices, settings.market_specs)
    return next((t["liquidation_price"] for t in health["trades"] if t["id"] == trade_id), None)


def _filled_at_once(body: PlaceOrderBody, placed_ms: int | None) -> dict[str, Any]:
    """The order of a command that crossed the book and filled as a taker: it never rested."""
    return {
        "id": None, "type": body.type, "asset": body.asset, "quantity": body.quantity,
        "limitPrice": body.limitPrice, "leverage": None if body.reduce_only_trade_id else body.leverage,
        "margin_mode": body.margin_mode, "reserved_margin": 0, "reserved_fee": 0, "decimal": views.DECIMAL,
        "placed_ms": placed_ms, "createdAt": views.iso_ms(placed_ms) if placed_ms is not None else None,
        "expires_at": body.expires_at, "reduce_only": body.reduce_only_trade_id is not None,
        "reduce_only_trade_id": body.reduce_only_trade_id, "status": "filled",
    }


async def place_order(engine: PipelinedEngineClient, settings: ApiSettings, user: Claims, body: PlaceOrderBody,
                      command_id: str | None) -> dict[str, Any]:
    """Place a limit order. Returns the reply data with ``account`` and the
    API's view: ``order`` (resting, or ``status: filled`` when it crossed the
    book and filled at once as a taker), ``trade`` (the trade such a fill
    opened) or ``closed`` (what a reduce-only fill closed), ``message``."""
    spec = settings.market_specs[body.asset]
    if body.limitPrice % spec.tick_size:
        raise Invalid(f"limitPrice must be a multiple of the tick size {spec.tick_size} (4 decimals) "
                      f"for {spec.symbol}")
    command: dict[str, Any] = {
        "id": command_id or new_command_id(),
        "type": messages.PLACE_ORDER,
        "user_id": user.user_id,
        "market": spec.symbol,
        "side": body.type,
        "qty": quantity_units(body.quantity, spec),
        "limit_price": body.limitPrice,
        "post_only": body.post_only,
    }
    if body.reduce_only_trade_id is not None:
        command["reduce_trade_id"] = body.reduce_only_trade_id
    else:
        if body.leverage is None or body.leverage > spec.max_leverage:
            raise Invalid(f"leverage must be from 1 to {spec.max_leverage} for {spec.symbol} "
                          f"(it may be left out only for a reduce-only order)")
        command["leverage"] = body.leverage
        command["margin_mode"] = body.margin_mode
    if body.expires_at is not None:
        command["expires_ms"] = body.expires_at
    data, prices = await _submit(engine, command, user, with_prices=True)
    if isinstance(data.get("order"), dict):
        order = views.resting_order_view(data["order"])
        data["view"] = {"message": "Order placed", "order": order}
    elif "close_price" in data:  # reduce-only, marketable: closed at once at the touch
        data["view"] = {
            "message": "Reduce-only order filled at once",
            "order": _filled_at_once(body, data["account"].get("updated_ms")),
            "closed": {"closePrice": data["close_price"], "quantity": views.qty_number(data["closed_qty"]),
                       "pnl": data["pnl"], "fee": data["fee"],
                       "remaining_quantity": views.qty_number(data["remaining_qty"]), "decimal": views.DECIMAL},
        }
    else:  # marketable: opened at once as a taker at the touch
        trade = data["trade"]
        opened = views.order_view(trade)
        opened["fee"] = data.get("fee", trade.get("fees", 0))
        opened["liquidation_price"] = _liquidation_price(data, prices, settings, trade["id"])
        data["view"] = {"message": "Order filled at once", "order": _filled_at_once(body, trade.get("opened_ms")),
                        "trade": opened}
    return data


async def cancel_order(engine: PipelinedEngineClient, user: Claims, order_id: str,
                       command_id: str | None) -> dict[str, Any]:
    command = {"id": command_id or new_command_id(), "type": messages.CANCEL_ORDER, "user_id": user.user_id,
               "order_id": order_id}
    data, _ = await _submit(engine, command, user)
    return data


async def set_tpsl(engine: PipelinedEngineClient, user: Claims, trade_id: str, body: TpslBody,
                   command_id: str | None) -> dict[str, Any]:
    """Set, change or remove (null) the take-profit and stop-loss; a key the
    body leaves out keeps its value."""
    given = body.model_fields_set & {"take_profit", "stop_loss"}
    if not given:
        raise Invalid("give take_profit and/or stop_loss (a price, or null to remove it)")
    command: dict[str, Any] = {"id": command_id or new_command_id(), "type": messages.SET_TPSL,
                               "user_id": user.user_id, "trade_id": trade_id}
    for name in sorted(given):
        command[name] = getattr(body, name)
    data, _ = await _submit(engine, command, user)
    return data


async def add_margin(engine: PipelinedEngineClient, settings: ApiSettings, user: Claims, trade_id: str,
                     body: AddMarginBody, command_id: str | None) -> dict[str, Any]:
    """Move ``amount`` from the balance into an isolated trade's margin."""
    command = {"id": command_id or new_command_id(), "type": messages.ADD_MARGIN, "user_id": user.user_id,
               "trade_id": trade_id, "amount": body.amount}
    data, prices = await _submit(engine, command, user, with_prices=True)
    trade = data["trade"]
    order = views.order_view(trade)
    order["liquidation_price"] = _liquidation_price(data, prices, settings, trade["id"])
    data["order"] = order
    return data
