"""Request and response bodies, with the examples shown at /docs.

Requests refuse unknown fields and wrong types (strict numbers: ``"5"`` is not
5). Prices and USD amounts are integers with 4 implied decimals (``decimal: 4``);
quantities are JSON numbers of base units.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from opex_common.markets import DEFAULT_MARKETS

Symbol = Literal["BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"]
assert set(get_args(Symbol)) == set(DEFAULT_MARKETS), "schemas.Symbol must list the markets"
Side = Literal["long", "short"]
MarginMode = Literal["cross", "isolated"]
Interval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]

MAX_PRICE = 10**13  # $1e9 with 4 decimals, the engine's bound
MAX_QTY = 10_000_000  # base units (15 significant digits at 1e-8: exact as a JSON number)
# no spaces or control characters (Postgres text cannot hold NUL)
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"

Price = Annotated[int, Field(strict=True, ge=1, le=MAX_PRICE, description="price, 4-decimal integer")]
Quantity = Annotated[float, Field(strict=True, gt=0, le=MAX_QTY,
                                  description="base units, a whole multiple of the market's qty_step")]
TradeId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
Amount = Annotated[int, Field(strict=True, ge=1, le=10**15, description="USD, 4-decimal integer")]
Leverage = Annotated[int, Field(strict=True, ge=1, le=100)]
EpochMs = Annotated[int, Field(strict=True, ge=1, le=2**53, description="ms since the epoch")]
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- requests
class SignupBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"email": "trader@example.com", "password": "correct horse battery"}]})
    email: Email
    password: Annotated[str, Field(min_length=8, max_length=128)]


class SigninBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"email": "trader@example.com", "password": "correct horse battery"}]})
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=128)]


class OpenTradeBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "asset": "BTC_USDC_PERP", "type": "long", "quantity": 0.01, "leverage": 10,
        "slippage": 50, "openPrice": 971234567, "decimal": 4, "margin_mode": "cross"}]})
    asset: Symbol
    type: Side
    quantity: Quantity
    leverage: Annotated[int, Field(strict=True, ge=1, le=100)]
    slippage: Annotated[int, Field(strict=True, ge=0, le=10_000, description="basis points")]
    openPrice: Price
    decimal: Literal[4] = 4
    margin_mode: MarginMode = "cross"
    take_profit: Price | None = None
    stop_loss: Price | None = None


class CloseTradeBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"orderId": "5b0c8a52-3f7e-4d0e-9a55-2f1c7e1a9b10"},
        {"orderId": "5b0c8a52-3f7e-4d0e-9a55-2f1c7e1a9b10", "quantity": 0.005}]})
    orderId: TradeId
    quantity: Quantity | None = None


_EXAMPLE_TRADE_ID = "5b0c8a52-3f7e-4d0e-9a55-2f1c7e1a9b10"


class PlaceOrderBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"asset": "BTC_USDC_PERP", "type": "long", "quantity": 0.01, "leverage": 10, "limitPrice": 960000000,
         "decimal": 4, "margin_mode": "cross", "post_only": True, "expires_at": 1798761600000},
        {"asset": "BTC_USDC_PERP", "type": "short", "quantity": 0.005, "limitPrice": 990000000, "decimal": 4,
         "reduce_only_trade_id": _EXAMPLE_TRADE_ID}]})
    asset: Symbol
    type: Side = Field(description="long = buy (fills when the ask drops to the limit), "
                                   "short = sell (fills when the bid rises to it)")
    quantity: Quantity
    leverage: Leverage | None = Field(default=None, description="required unless reduce-only")
    limitPrice: Price = Field(description="4-decimal integer, a multiple of the market's tick_size")
    decimal: Literal[4] = 4
    margin_mode: MarginMode = "cross"
    post_only: bool = Field(default=False, strict=True,
                            description="refuse (409) instead of filling at once as a taker")
    expires_at: EpochMs | None = Field(default=None, description="good-till-time: cancelled at this time (ms)")
    reduce_only_trade_id: TradeId | None = Field(
        default=None, description="reduce-only: closes up to `quantity` of this open trade at the limit "
                                  "(opposite side, same market); reserves nothing")


class TpslBody(Body):
    # (examples with null are dropped from the OpenAPI document: `{"stop_loss": null}` removes the stop-loss)
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1, "examples": [
        {"take_profit": 1000000000, "stop_loss": 950000000},
        {"take_profit": 1010000000}]})
    take_profit: Price | None = Field(default=None, description="null removes it; left out, it is kept")
    stop_loss: Price | None = Field(default=None, description="null removes it; left out, it is kept")


class AddMarginBody(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": 1000000, "decimal": 4}]})
    amount: Amount
    decimal: Literal[4] = 4


# ---------------------------------------------------------------------- responses
class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    message: str = Field(examples=["insufficient balance"])


class UserOut(Out):
    id: str = Field(examples=["3f2b9c1e5d7a4e6f8a0b1c2d3e4f5a6b"])
    email: str = Field(examples=["trader@example.com"])


class UserEnvelope(Out):
    message: str = Field(examples=["Signed in"])
    user: UserOut


class WhoAmIOut(Out):
    user: UserOut


class MessageOut(Out):
    message: str


class UsdBalance(Out):
    balance: int = Field(examples=[50000000])
    decimal: int = 4


class BalanceOut(Out):
    message: str
    data: UsdBalance
    userId: str


class AssetBalanceOut(Out):
    message: str
    data: dict[str, UsdBalance] = Field(examples=[{
        "BTC_USDC_PERP": {"balance": 971234, "decimal": 4},
        "ETH_USDC_PERP": {"balance": -250000, "decimal": 4},
        "SOL_USDC_PERP": {"balance": 0, "decimal": 4}}])


class Order(Out):
    id: str
    type: Side
    leverage: int
    asset: str
    margin: int
    quantity: int | float
    openPrice: int
    decimal: int = 4
    margin_mode: MarginMode
    fees: int = 0
    funding: int = 0
    take_profit: int | None = None
    stop_loss: int | None = None
    opened_ms: int | None = None
    createdAt: str | None = None


class OpenedOrder(Order):
    fee: int = Field(description="the taker fee paid to open")
    liquidation_price: int | None = Field(
        description="the mark at which this trade is liquidated (cross: other marks held fixed); "
                    "null when no positive price liquidates it")


class AccountTrade(Order):
    mark: int | None
    unrealized_pnl: int | None
    maintenance: int | None
    notional: int | None
    liquidation_price: int | None


class OpenTradeOut(Out):
    message: str = Field(examples=["Order placed"])
    order: OpenedOrder
    orderId: str
    openOrders: list[Order]
    usdBalance: UsdBalance


class OpenTradesOut(Out):
    message: str
    trades: list[Order]


class ClosedPart(Out):
    closePrice: int
    quantity: int | float
    pnl: int
    fee: int
    remaining_quantity: int | float
    decimal: int = 4


class CloseTradeOut(Out):
    message: str = Field(examples=["Trade closed"])
    openOrders: list[Order]
    usdBalance: UsdBalance
    closed: ClosedPart | None = None


_EXAMPLE_ORDER: dict[str, Any] = {
    "id": "0f1e2d3c-4b5a-4968-8776-655443322110", "type": "long", "asset": "BTC_USDC_PERP", "quantity": 0.01,
    "limitPrice": 960000000, "leverage": 10, "margin_mode": "cross", "reserved_margin": 960000,
    "reserved_fee": 1920, "decimal": 4, "placed_ms": 1764062271792, "createdAt": "2025-11-25T09:17:51.792Z",
    "expires_at": 1798761600000, "reduce_only": False, "reduce_only_trade_id": None, "status": "open"}
_EXAMPLE_TRADE: dict[str, Any] = {
    "id": _EXAMPLE_TRADE_ID, "type": "long", "leverage": 20, "asset": "BTC_USDC_PERP", "margin": 4850050,
    "quantity": 0.1, "openPrice": 970010000, "decimal": 4, "margin_mode": "isolated", "fees": 48501,
    "funding": 0, "take_profit": 1000000000, "stop_loss": 950000000, "opened_ms": 1764062271792,
    "createdAt": "2025-11-25T09:17:51.792Z"}


class TradeOut(Order):
    liquidation_price: int | None = Field(
        default=None, description="the mark at which this trade is liquidated (cross: other marks held fixed)")


class RestingOrder(Out):
    id: str | None = Field(description="the order id; null when the order filled at once and did not rest")
    type: Side
    asset: str
    quantity: int | float
    limitPrice: int
    leverage: int | None = Field(description="null for a reduce-only order")
    margin_mode: MarginMode
    reserved_margin: int = Field(description="initial margin held out of the balance until it fills or is cancelled")
    reserved_fee: int = Field(description="maker fee held out of the balance")
    decimal: int = 4
    placed_ms: int | None
    createdAt: str | None
    expires_at: int | None = Field(description="good-till-time (ms); null: until cancelled")
    reduce_only: bool
    reduce_only_trade_id: str | None
    status: Literal["open", "filled", "cancelled"] = Field(
        description="open: resting; filled: it crossed the book when placed and filled at once as a taker; "
                    "cancelled: the order a cancel removed")


class PlaceOrderOut(Out):
    message: str = Field(examples=["Order placed"])
    order: RestingOrder
    usdBalance: UsdBalance
    trade: OpenedOrder | None = Field(default=None, description="the trade a marketable order opened at once")
    closed: ClosedPart | None = Field(default=None, description="what a marketable reduce-only order closed at once")


class OrdersOut(Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"orders": [_EXAMPLE_ORDER]}]})
    orders: list[RestingOrder]


class CancelOrderOut(Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "message": "Order cancelled", "usdBalance": {"balance": 50000000, "decimal": 4},
        "order": {**_EXAMPLE_ORDER, "reserved_margin": 0, "reserved_fee": 0, "status": "cancelled"}}]})
    message: str = Field(examples=["Order cancelled"])
    usdBalance: UsdBalance
    order: RestingOrder | None = None


class TpslOut(Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "message": "Take-profit / stop-loss updated", "order": _EXAMPLE_TRADE}]})
    message: str = Field(examples=["Take-profit / stop-loss updated"])
    order: Order


class AddMarginOut(Out):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "message": "Margin added", "order": {**_EXAMPLE_TRADE, "margin": 5850050, "liquidation_price": 932701250},
        "usdBalance": {"balance": 43101449, "decimal": 4}}]})
    message: str = Field(examples=["Margin added"])
    order: TradeOut
    usdBalance: UsdBalance


class ClosedTrade(Out):
    id: str = Field(description="the trade (order) id")
    closeId: str = Field(description="unique id of this close (a trade closed in parts has several)")
    openPrice: int
    closePrice: int
    leverage: int
    asset: str
    margin: int
    quantity: int | float
    type: Side
    pnl: int = Field(description="realized PnL of the closed quantity, before the fee")
    fee: int
    net_pnl: int
    funding: int
    decimal: int = 4
    liquidated: bool
    reason: str
    margin_mode: str
    remaining_quantity: int | float
    userId: str
    createdAt: str = Field(description="when the trade was closed (ISO 8601)")
    closed_at: int = Field(description="ms since the epoch")
    opened_at: int | None = None


class ClosedTradesOut(Out):
    trades: list[ClosedTrade]
    next: int | None = Field(default=None, description="pass as `before` for the next (older) page")


class Asset(Out):
    symbol: str
    name: str


class SupportedAssetsOut(Out):
    assets: list[Asset]


class MarketOut(Out):
    symbol: str
    name: str
    base: str
    bid: int | None
    ask: int | None
    mark: int | None
    index: int | None
    decimal: int = 4
    funding_rate: str | None = Field(description="per funding interval, decimal text", examples=["0.0000125"])
    next_funding_time: int | None = Field(description="ms since the epoch")
    max_leverage: int
    taker_fee_bps: int | float
    maker_fee_bps: int | float
    maintenance_margin_bps: int | float
    tick_size: int = Field(description="price step, 4-decimal integer (1000 = 0.1)")
    qty_step: int | float = Field(description="quantity step in base units")
    min_qty: int | float
    stale: bool
    updated_at: int | None
    source: str | None
    change_24h_bps: int | None


class MarketsOut(Out):
    markets: list[MarketOut]


class AccountOut(Out):
    balance: int
    equity: int
    margin_used: int
    maintenance: int
    available: int
    margin_ratio_bps: int
    unrealized_pnl: int
    realized_pnl: int
    fees_paid: int
    funding_paid: int
    decimal: int = 4
    reserved: int = Field(description="margin + fee held by resting orders: out of the balance, not in equity")
    margin_warning: bool = Field(description="the cross margin ratio reached 80% (cleared below 70%)")
    version: int
    trades: list[AccountTrade]
    orders: list[RestingOrder]


class AccountEnvelope(Out):
    account: AccountOut


class Candle(Out):
    time: int = Field(description="unix seconds at the start of the candle")
    open: int
    high: int
    low: int
    close: int


class CandlesOut(Out):
    symbol: str
    interval: str
    decimal: int = 4
    candles: list[Candle]


class LedgerEntry(Out):
    id: str
    kind: str
    amount: int
    balance_after: int
    trade_id: str | None
    asset: str | None
    created_at: str
    ts: int


class LedgerOut(Out):
    entries: list[LedgerEntry]
    decimal: int = 4
    next: int | None = Field(description="pass as `before` for the next (older) page")


class ConfigOut(Out):
    ws_url: str
    markets: list[str]
    decimal: int = 4


class WsTicketOut(Out):
    ticket: str
    expires_in: int = 30


# Error responses every route documents.
ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "description": "the engine, Redis or Postgres did not answer in time"},
}
AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "not signed in, or the token is expired, revoked or invalid"},
    **ERRORS,
}
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not valid JSON"},
    413: {"model": ErrorOut, "description": "the body is larger than the limit"},
    422: {"model": ErrorOut, "description": "the body is invalid"},
}
