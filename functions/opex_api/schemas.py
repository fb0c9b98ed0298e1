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
MAX_QTY = 100_000_000  # base units
# no spaces or control characters (Postgres text cannot hold NUL)
EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"

Price = Annotated[int, Field(strict=True, ge=1, le=MAX_PRICE, description="price, 4-decimal integer")]
Quantity = Annotated[float, Field(strict=True, gt=0, le=MAX_QTY,
                                  description="base units, a whole multiple of the market's qty_step")]
TradeId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]
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
    version: int
    trades: list[AccountTrade]
    orders: list[dict[str, Any]]


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
