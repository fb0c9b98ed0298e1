"""Open and close trades, list open and closed trades (api-v1)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from opex_common import messages, views

from ..deps import (
    SESSION_OPENAPI,
    Command,
    CurrentAccount,
    CurrentUser,
    DbDep,
    IdempotencyHeader,
    SettingsDep,
    command_id,
)
from ..observability import count
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    AddMarginBody,
    AddMarginOut,
    ClosedTradesOut,
    CloseTradeBody,
    CloseTradeOut,
    ErrorOut,
    OpenTradeBody,
    OpenTradeOut,
    OpenTradesOut,
    TpslBody,
    TpslOut,
)
from ..services import history, orders, trading

router = APIRouter(prefix="/trade", tags=["trades"])

_ENGINE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such trade (or not yours)"},
    409: {"model": ErrorOut, "description": "refused: slippage, insufficient balance, stale or missing price"},
}


@router.post("/open", response_model=OpenTradeOut, responses={**_ENGINE_ERRORS, **BODY_ERRORS, **AUTH_ERRORS},
             openapi_extra=SESSION_OPENAPI)
async def open_trade(body: OpenTradeBody, cmd: Command, idempotency_key: IdempotencyHeader = None) -> dict[str, Any]:
    """Open a market trade: fills at the ask (long) or bid (short) if that is
    within ``slippage`` basis points of ``openPrice``; otherwise 409.

    Send an ``Idempotency-Key`` header to make a retry (after a 503) apply once."""
    user = cmd.user
    data = await trading.open_trade(cmd.engine, cmd.settings, user, body,
                                    command_id(user, messages.OPEN, idempotency_key))
    account, order = data["account"], data["order"]
    count("TradeOpened")
    return {"message": "Order placed", "order": order, "orderId": order["id"],
            "openOrders": views.open_orders(account), "usdBalance": views.usd_balance(account)}


@router.get("/open", response_model=OpenTradesOut, responses=AUTH_ERRORS, openapi_extra=SESSION_OPENAPI)
async def open_trades(current: CurrentAccount) -> dict[str, Any]:
    """The user's open trades (GET /account adds marks, PnL and liquidation prices)."""
    return {"message": "Open trades", "trades": views.open_orders(current.account)}


@router.post("/close", response_model=CloseTradeOut, responses={**_ENGINE_ERRORS, **BODY_ERRORS, **AUTH_ERRORS},
             openapi_extra=SESSION_OPENAPI)
async def close_trade(body: CloseTradeBody, cmd: Command, idempotency_key: IdempotencyHeader = None
                      ) -> dict[str, Any]:
    """Close a trade at the bid (long) or ask (short); with ``quantity``, only
    that much of it. Closing a trade that is already closed succeeds with
    ``message: "Trade already closed"``."""
    user = cmd.user
    data = await trading.close_trade(cmd.engine, user, body, command_id(user, messages.CLOSE, idempotency_key))
    account = data["account"]
    closed = None
    if "close_price" in data:
        closed = {"closePrice": data["close_price"], "quantity": views.qty_number(data["closed_qty"]),
                  "pnl": data["pnl"], "fee": data["fee"],
                  "remaining_quantity": views.qty_number(data["remaining_qty"]), "decimal": views.DECIMAL}
        count("TradeClosed")
    message = "Trade already closed" if closed is None else (
        "Trade closed" if data["remaining_qty"] == 0 else "Trade partially closed")
    return {"message": message, "openOrders": views.open_orders(account),
            "usdBalance": views.usd_balance(account), "closed": closed}


TradeIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                                  description="the trade's id (api-v1's orderId)",
                                  examples=["5b0c8a52-3f7e-4d0e-9a55-2f1c7e1a9b10"])]

_TRADE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "no such open trade (or not yours)"},
    409: {"model": ErrorOut, "description": "refused by the engine"},
}


@router.put("/{orderId}/tpsl", response_model=TpslOut, responses={**_TRADE_ERRORS, **BODY_ERRORS, **AUTH_ERRORS},
            openapi_extra=SESSION_OPENAPI)
async def set_tpsl(orderId: TradeIdPath, body: TpslBody, cmd: Command,  # noqa: N803
                   idempotency_key: IdempotencyHeader = None) -> dict[str, Any]:
    """Set, change or remove (``null``) an open trade's take-profit and
    stop-loss; a key left out keeps its value. Both trigger on the mark price
    and close the whole trade at the bid (long) or ask (short). 422 when a
    level is on the wrong side of the entry or of the mark, off the tick, or
    (isolated) a stop-loss beyond the liquidation price."""
    user = cmd.user
    data = await orders.set_tpsl(cmd.engine, user, orderId, body,
                                 command_id(user, messages.SET_TPSL, idempotency_key))
    return {"message": "Take-profit / stop-loss updated", "order": views.order_view(data["trade"])}


@router.post("/{orderId}/margin", response_model=AddMarginOut,
             responses={**_TRADE_ERRORS, **BODY_ERRORS, **AUTH_ERRORS}, openapi_extra=SESSION_OPENAPI)
async def add_margin(orderId: TradeIdPath, body: AddMarginBody, cmd: Command,  # noqa: N803
                     idempotency_key: IdempotencyHeader = None) -> dict[str, Any]:
    """Move ``amount`` (4-decimal USD) from the balance into an isolated
    trade's margin, which moves its liquidation price away. 422 for a cross
    trade (the whole balance already backs it), 409 beyond the free balance."""
    user = cmd.user
    data = await orders.add_margin(cmd.engine, cmd.settings, user, orderId, body,
                                   command_id(user, messages.ADD_MARGIN, idempotency_key))
    return {"message": "Margin added", "order": data["order"], "usdBalance": views.usd_balance(data["account"])}


@router.get("/closed", response_model=ClosedTradesOut, responses=AUTH_ERRORS)
async def closed_trades(
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    limit: Annotated[int | None, Query(ge=1, le=1000, description="page size (default 200)")] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="`next` of the previous page")] = None,
) -> dict[str, Any]:
    """Closed trades (full and partial closes, take-profits, stop-losses,
    liquidations), newest first. History is written a moment after the close."""
    trades, next_cursor = await history.closed_trades(
        db, user.user_id, limit or settings.closed_trades_default_limit, before)
    return {"trades": trades, "next": next_cursor}
