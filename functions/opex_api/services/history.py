"""Reads of the history the history writer keeps in Postgres."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from opex_common.messages import SIDE_NAMES
from opex_common.views import DECIMAL, iso_ms, qty_number

_CLOSED = """
SELECT seq, event_id, trade_id, market, side, margin_mode, leverage, entry_price, close_price, qty,
       remaining_qty, margin, pnl, fee, funding, reason, liquidated, opened_ms, closed_ms
FROM closed_trades
WHERE user_id = %(user_id)s AND (%(before)s::bigint IS NULL OR seq < %(before)s)
ORDER BY seq DESC LIMIT %(limit)s
"""

_LEDGER = """
SELECT seq, event_id, kind, amount, balance_after, trade_id, market, ts_ms
FROM ledger
WHERE user_id = %(user_id)s AND (%(before)s::bigint IS NULL OR seq < %(before)s)
ORDER BY seq DESC LIMIT %(limit)s
"""


async def closed_trades(pool: AsyncConnectionPool, user_id: str, limit: int,
                        before: int | None) -> tuple[list[dict[str, Any]], int | None]:
    """api-v1 closedTrade objects, newest first, and the cursor of the next page."""
    async with pool.connection() as conn:
        cur = await conn.execute(_CLOSED, {"user_id": user_id, "limit": limit, "before": before})
        rows = await cur.fetchall()
    trades = []
    for (_seq, event_id, trade_id, market, side, mode, leverage, entry, close, qty, remaining, margin, pnl,
         fee, funding, reason, liquidated, opened_ms, closed_ms) in rows:
        trades.append({
            "id": trade_id, "closeId": event_id, "openPrice": entry, "closePrice": close,
            "leverage": leverage, "asset": market, "margin": margin, "quantity": qty_number(qty),
            "type": SIDE_NAMES[side], "pnl": pnl, "fee": fee, "net_pnl": pnl - fee, "funding": funding,
            "decimal": DECIMAL, "liquidated": liquidated, "reason": reason, "margin_mode": mode,
            "remaining_quantity": qty_number(remaining), "userId": user_id,
            "createdAt": iso_ms(closed_ms), "closed_at": closed_ms, "opened_at": opened_ms,
        })
    return trades, (rows[-1][0] if len(rows) == limit else None)


async def ledger(pool: AsyncConnectionPool, user_id: str, limit: int,
                 before: int | None) -> tuple[list[dict[str, Any]], int | None]:
    async with pool.connection() as conn:
        cur = await conn.execute(_LEDGER, {"user_id": user_id, "limit": limit, "before": before})
        rows = await cur.fetchall()
    entries = [
        {"id": event_id, "kind": kind, "amount": amount, "balance_after": balance_after,
         "trade_id": trade_id, "asset": market, "created_at": iso_ms(ts_ms), "ts": ts_ms}
        for _, event_id, kind, amount, balance_after, trade_id, market, ts_ms in rows
    ]
    return entries, (rows[-1][0] if len(rows) == limit else None)
