"""Resting limit orders: place, list, cancel."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status

from opex_common import messages, views

from ..deps import SESSION_OPENAPI, Command, CurrentAccount, IdempotencyHeader, command_id
from ..observability import count
from ..schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    CancelOrderOut,
    ErrorOut,
    OrdersOut,
    PlaceOrderBody,
    PlaceOrderOut,
)
from ..services import orders

router = APIRouter(prefix="/orders", tags=["orders"])

OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$",
                              description="the order's id", examples=["0f1e2d3c-4b5a-4968-8776-655443322110"])]

_PLACE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "reduce-only: no such trade (or not yours)"},
    409: {"model": ErrorOut, "description": "refused: a post-only order that would fill at once, insufficient "
                                            "balance for the reserve, no price yet, too many resting orders"},
}
_CANCEL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the Idempotency-Key header is invalid"},
    404: {"model": ErrorOut, "description": "no such resting order (or not yours): filled, cancelled or expired"},
    409: {"model": ErrorOut, "description": "refused by the engine"},
    422: {"model": ErrorOut, "description": "the order id is invalid"},
}

_PLACED_EXAMPLE = {
    "message": "Order placed",
    "order": {"id": "0f1e2d3c-4b5a-4968-8776-655443322110", "type": "long", "asset": "BTC_USDC_PERP",
              "quantity": 0.01, "limitPrice": 960000000, "leverage": 10, "margin_mode": "cross",
              "reserved_margin": 960000, "reserved_fee": 1920, "decimal": 4, "placed_ms": 1764062271792,
              "createdAt": "2025-11-25T09:17:51.792Z", "expires_at": None, "reduce_only": False,
              "reduce_only_trade_id": None, "status": "open"},
    "usdBalance": {"balance": 49038080, "decimal": 4},
    "trade": None,
    "closed": None,
}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PlaceOrderOut,
             responses={201: {"content": {"application/json": {"example": _PLACED_EXAMPLE}}},
                        **_PLACE_ERRORS, **BODY_ERRORS, **AUTH_ERRORS},
             openapi_extra=SESSION_OPENAPI)
async def place_order(body: PlaceOrderBody, cmd: Command, idempotency_key: IdempotencyHeader = None
                      ) -> dict[str, Any]:
    """Place a limit order. A buy (``long``) fills when the ask drops to
    ``limitPrice``, a sell (``short``) when the bid rises to it, at the limit
    price with the maker fee. Its initial margin and maker fee are reserved
    (taken out of the balance) until it fills, is cancelled or expires
    (``expires_at``).

    An order that would fill at once fills as a taker at the touch
    (``order.status: "filled"``, with the ``trade`` it opened), unless
    ``post_only``: then it is refused (409). With ``reduce_only_trade_id`` it
    closes up to ``quantity`` of that trade at the limit and reserves nothing.

    Send an ``Idempotency-Key`` header to make a retry (after a 503) apply once."""
    user = cmd.user
    data = await orders.place_order(cmd.engine, cmd.settings, user, body,
                                    command_id(user, messages.PLACE_ORDER, idempotency_key))
    count("OrderPlaced")
    return {**data["view"], "usdBalance": views.usd_balance(data["account"])}


@router.get("", response_model=OrdersOut, responses=AUTH_ERRORS, openapi_extra=SESSION_OPENAPI)
async def list_orders(current: CurrentAccount) -> dict[str, Any]:
    """The user's resting limit orders, oldest first (also in GET /account's ``orders``)."""
    return {"orders": views.resting_orders(current.account)}


@router.delete("/{orderId}", response_model=CancelOrderOut, responses={**_CANCEL_ERRORS, **AUTH_ERRORS},
               openapi_extra=SESSION_OPENAPI)
async def cancel_order(orderId: OrderId, cmd: Command, idempotency_key: IdempotencyHeader = None  # noqa: N803
                       ) -> dict[str, Any]:
    """Cancel a resting order: what it reserved goes back to the balance.
    Another user's order, or one that already filled, was cancelled or
    expired, is "not found" (404)."""
    user = cmd.user
    data = await orders.cancel_order(cmd.engine, user, orderId,
                                     command_id(user, messages.CANCEL_ORDER, idempotency_key))
    order = views.resting_order_view(data.get("order"))
    if order is not None:
        order["status"] = "cancelled"
    return {"message": "Order cancelled", "usdBalance": views.usd_balance(data["account"]), "order": order}
