"""Engine read models turned into the shapes traders see (REST and WebSocket).

Pure functions, no I/O: the API and the WS pusher format the same account the
same way. Every figure is computed with ``margin.py``, the code the engine
liquidates with, in integer fixed point (USD and prices in 1e-4, quantities in
1e-8 base units). Quantities leave as JSON numbers of base units.

Account figures (docs/api.md explains the choices):

- ``balance``: free cash (the engine's balance).
- ``margin_used``: the initial margin locked in every open trade.
- ``unrealized_pnl``: the sum of each trade's ``s x q x (mark - entry)``.
- ``equity``: ``balance + sum over trades of (margin + uPnL)``, an isolated trade
  counted at no less than 0 (it is liquidated before it can owe more).
- ``maintenance``: the sum of ``q x mark x mmr`` over every open trade.
- ``available``: what a new trade may use, as the engine checks it:
  ``balance + sum over cross trades of min(0, uPnL)``, at least 0.
- ``margin_ratio_bps``: cross maintenance / cross equity in basis points
  (10000 = the account is at its liquidation point); 0 without cross trades.
- ``reserved``: margin + maker fee held by resting limit orders. The engine
  moved it out of the balance when the order was placed (ledger
  ``order_reserve``), so it is in none of the figures above: it backs no
  position and cannot be used to open one until the order is cancelled or
  expires (``order_release``) or fills (it becomes the trade's margin and fee).
- ``margin_warning``: the engine's flag, set when the cross margin ratio
  reached 80% and cleared when it fell below 70% (events ``margin_warning`` /
  ``margin_ok``).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from . import margin
from .markets import MarketSpec
from .messages import CROSS, ISOLATED, SIDE_NAMES
from .units import BPS_SCALE, FUNDING_DECIMALS, QTY_SCALE, ceil_div, qty_to_decimal

DECIMAL = 4


def qty_number(qty: int) -> float | int:
    """A quantity of 1e-8 units as a JSON number of base units (0.1, not 0.10000000).

    ``qty / 1e8`` is the double nearest to the exact decimal (both operands are
    exact below 2**53 and IEEE division rounds correctly), and a decimal of at
    most 8 places and 15 significant digits is the shortest text of its nearest
    double: the JSON spelling is the exact quantity."""
    if qty % QTY_SCALE == 0:
        return qty // QTY_SCALE
    if -(2**53) < qty < 2**53:
        return qty / QTY_SCALE
    return float(qty_to_decimal(qty))


def funding_rate_text(rate_e9: int | None) -> str | None:
    """A funding rate in 1e-9 units as decimal text: 12500 -> '0.0000125'."""
    if rate_e9 is None:
        return None
    d = Decimal(rate_e9).scaleb(-FUNDING_DECIMALS)
    return "0" if d == 0 else format(d.normalize(), "f")


def ppm_to_bps(rate_ppm: int) -> float | int:
    """A rate in ppm as basis points (500 ppm -> 5)."""
    bps = Decimal(rate_ppm) / 100
    return int(bps) if bps == bps.to_integral_value() else float(bps)


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC text with milliseconds: 2026-11-25T09:17:51.792Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def order_view(trade: dict[str, Any]) -> dict[str, Any]:
    """An engine trade as api-v1's ``order`` (+ the additions, which need no price)."""
    return {
        "id": trade["id"],
        "type": SIDE_NAMES[trade["side"]],
        "leverage": trade["leverage"],
        "asset": trade["market"],
        "margin": trade["margin"],
        "quantity": qty_number(trade["qty"]),
        "openPrice": trade["entry"],
        "decimal": DECIMAL,
        "margin_mode": trade["margin_mode"],
        "fees": trade.get("fees", 0),
        "funding": trade.get("funding", 0),
        "take_profit": trade.get("take_profit"),
        "stop_loss": trade.get("stop_loss"),
        "opened_ms": trade.get("opened_ms"),
        "createdAt": iso_ms(trade["opened_ms"]) if trade.get("opened_ms") is not None else None,
    }


def usd_balance(account: dict[str, Any]) -> dict[str, int]:
    return {"balance": account["balance"], "decimal": DECIMAL}


def open_orders(account: dict[str, Any]) -> list[dict[str, Any]]:
    return [order_view(t) for t in account.get("trades", ())]


def resting_order_view(order: Any) -> dict[str, Any] | None:
    """An engine resting order as the API shows it (api-v1 names: ``asset``,
    ``type``, ``quantity`` in base units); None for what is not an order (the
    pusher passes read models through as they came)."""
    if not isinstance(order, dict):
        return None
    oid, market, side, qty, limit = (order.get(k) for k in ("id", "market", "side", "qty", "limit_price"))
    if not (isinstance(oid, str) and isinstance(market, str) and side in (1, -1) and type(qty) is int
            and type(limit) is int):
        return None

    def num(key: str) -> int:
        v = order.get(key)
        return v if type(v) is int else 0

    placed = order.get("placed_ms")
    placed = placed if type(placed) is int else None
    expires = order.get("expires_ms")
    trade_id = order.get("trade_id")
    reduce_only = bool(order.get("reduce_only")) or isinstance(trade_id, str)
    leverage = order.get("leverage")
    return {
        "id": oid,
        "type": SIDE_NAMES[side],
        "asset": market,
        "quantity": qty_number(qty),
        "limitPrice": limit,
        "leverage": leverage if type(leverage) is int and leverage > 0 else None,
        "margin_mode": order.get("margin_mode") if order.get("margin_mode") in (CROSS, ISOLATED) else CROSS,
        "reserved_margin": num("reserved_margin"),
        "reserved_fee": num("reserved_fee"),
        "decimal": DECIMAL,
        "placed_ms": placed,
        "createdAt": iso_ms(placed) if placed is not None and 0 <= placed < 253_402_300_800_000 else None,
        "expires_at": expires if type(expires) is int else None,
        "reduce_only": reduce_only,
        "reduce_only_trade_id": trade_id if isinstance(trade_id, str) else None,
        "status": "open",
    }


def resting_orders(account: dict[str, Any]) -> list[dict[str, Any]]:
    """The account's resting limit orders, oldest first."""
    orders = account.get("orders")
    if not isinstance(orders, list):
        return []
    return [v for v in map(resting_order_view, orders) if v is not None]


def margin_by_asset(account: dict[str, Any], markets: dict[str, MarketSpec]) -> dict[str, dict[str, int]]:
    """api-v1 /balance/asset: margin locked per market, long positive, short negative."""
    locked = {symbol: 0 for symbol in markets}
    for t in account.get("trades", ()):
        locked[t["market"]] = locked.get(t["market"], 0) + t["side"] * t["margin"]
    return {symbol: {"balance": amount, "decimal": DECIMAL} for symbol, amount in locked.items()}


def _mark(prices: dict[str, dict[str, Any]], market: str) -> int | None:
    px = prices.get(market)
    mark = px.get("mark") if px else None
    return mark if isinstance(mark, int) and mark > 0 else None


def account_health(
    account: dict[str, Any], prices: dict[str, dict[str, Any]], markets: dict[str, MarketSpec]
) -> dict[str, Any]:
    """GET /account's ``account``: balance, equity, margins, ratio, and each
    trade with its mark, unrealized PnL and liquidation price.

    ``prices`` maps market -> the poller's latest price object (``mark`` in
    1e-4 USD). A trade whose market has no price yet is shown with ``mark``,
    ``unrealized_pnl`` and ``liquidation_price`` null and counts at its margin.
    """
    balance = account["balance"]
    trades = account.get("trades", ())
    rows: list[tuple[dict[str, Any], MarketSpec, int | None, int, int]] = []
    cross_im = cross_upnl = cross_mm = 0
    equity = balance
    margin_used = maintenance_total = upnl_total = 0
    available = balance
    for t in trades:
        spec = markets[t["market"]]
        mark = _mark(prices, t["market"])
        u = margin.pnl(t["side"], t["qty"], t["entry"], mark) if mark is not None else 0
        mm = margin.maintenance(t["qty"], mark, spec.maintenance_rate) if mark is not None else 0
        rows.append((t, spec, mark, u, mm))
        margin_used += t["margin"]
        maintenance_total += mm
        upnl_total += u
        if t["margin_mode"] == ISOLATED:
            equity += max(0, t["margin"] + u)
        else:
            equity += t["margin"] + u
            cross_im += t["margin"]
            cross_upnl += u
            cross_mm += mm
            available += min(0, u)
    cross_equity = balance + cross_im + cross_upnl
    has_cross = any(t["margin_mode"] == CROSS for t in trades)
    if not has_cross or cross_mm == 0:
        ratio_bps = 0
    elif cross_equity <= 0:
        ratio_bps = BPS_SCALE
    else:
        ratio_bps = ceil_div(cross_mm * BPS_SCALE, cross_equity)

    wallet = balance + cross_im
    out_trades = []
    for t, spec, mark, u, mm in rows:
        view = order_view(t)
        liq: int | None
        if t["margin_mode"] == ISOLATED:
            liq = margin.isolated_trigger_price(t["side"], t["qty"], t["entry"], t["margin"],
                                                spec.maintenance_rate) if t["qty"] > 0 else None
        elif mark is None:
            liq = None
        else:
            liq = margin.cross_liquidation_price(
                t["side"], t["qty"], t["entry"], spec.maintenance_rate, wallet,
                cross_upnl - u, cross_mm - mm,
            )
        view.update(
            mark=mark,
            unrealized_pnl=u if mark is not None else None,
            maintenance=mm if mark is not None else None,
            liquidation_price=liq,
            notional=margin.notional(t["qty"], mark) if mark is not None else None,
        )
        out_trades.append(view)
    orders = resting_orders(account)
    return {
        "balance": balance,
        "equity": equity,
        "margin_used": margin_used,
        "maintenance": maintenance_total,
        "available": max(0, available),
        "margin_ratio_bps": ratio_bps,
        "unrealized_pnl": upnl_total,
        "realized_pnl": account.get("realized_pnl", 0),
        "fees_paid": account.get("fees_paid", 0),
        "funding_paid": account.get("funding_paid", 0),
        "decimal": DECIMAL,
        "reserved": sum(o["reserved_margin"] + o["reserved_fee"] for o in orders),
        "margin_warning": account.get("margin_warning") is True,
        "version": account.get("version", 0),
        "trades": out_trades,
        "orders": orders,
    }


def market_view(
    spec: MarketSpec, price: dict[str, Any] | None, now_ms: int, stale_after_ms: int,
    change_24h_bps: int | None = None,
) -> dict[str, Any]:
    """GET /markets: one market's constants and live prices."""
    px = price or {}
    ts = px.get("ts")
    stale = not px or not isinstance(ts, int) or now_ms - ts > stale_after_ms or bool(px.get("stale"))
    return {
        "symbol": spec.symbol,
        "name": spec.name,
        "base": spec.base,
        "bid": px.get("bid"),
        "ask": px.get("ask"),
        "mark": px.get("mark"),
        "index": px.get("index"),
        "decimal": DECIMAL,
        "funding_rate": funding_rate_text(px.get("funding_rate")),
        "next_funding_time": px.get("next_funding_ms"),
        "max_leverage": spec.max_leverage,
        "taker_fee_bps": ppm_to_bps(spec.taker_fee),
        "maker_fee_bps": ppm_to_bps(spec.maker_fee),
        "maintenance_margin_bps": ppm_to_bps(spec.maintenance_rate),
        "tick_size": spec.tick_size,
        "qty_step": qty_number(spec.qty_step),
        "min_qty": qty_number(spec.min_qty),
        "stale": stale,
        "updated_at": ts if isinstance(ts, int) else None,
        "source": px.get("source"),
        "change_24h_bps": change_24h_bps,
    }

