"""Batched, idempotent inserts of history rows into Postgres.

One transaction per batch, one ``INSERT ... SELECT FROM unnest(...)`` per
table: a batch of thousands of events is a handful of statements. Every table
has the event id as primary key and ``ON CONFLICT DO NOTHING``, so writing a
batch twice (a replay, a re-delivered pending entry, a crash between commit
and XACK) adds nothing.
"""

from __future__ import annotations

import psycopg

from .rows import Rows

_CLOSED = """
INSERT INTO closed_trades (event_id, user_id, trade_id, market, side, margin_mode, leverage, entry_price,
    close_price, qty, remaining_qty, margin, pnl, fee, funding, bankruptcy_cover, reason, liquidated,
    opened_ms, closed_ms, closed_at)
SELECT e, u, t, mk, sd, mm, lv, ep, cp, q, rq, mg, p, f, fu, bc, rs, lq, om, cm, to_timestamp(cm / 1000.0)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::smallint[], %s::text[], %s::int[],
            %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[],
            %s::bigint[], %s::bigint[], %s::text[], %s::bool[], %s::bigint[], %s::bigint[])
     WITH ORDINALITY AS r(e, u, t, mk, sd, mm, lv, ep, cp, q, rq, mg, p, f, fu, bc, rs, lq, om, cm, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""

_LEDGER = """
INSERT INTO ledger (event_id, user_id, kind, amount, balance_after, trade_id, market, ts_ms, created_at)
SELECT e, u, k, a, b, t, mk, ts, to_timestamp(ts / 1000.0)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::text[],
            %s::bigint[]) WITH ORDINALITY AS r(e, u, k, a, b, t, mk, ts, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""

_FUNDING = """
INSERT INTO funding_payments (event_id, user_id, trade_id, market, amount, source, ts_ms, created_at)
SELECT e, u, t, mk, a, s, ts, to_timestamp(ts / 1000.0)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::bigint[])
     WITH ORDINALITY AS r(e, u, t, mk, a, s, ts, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""

_INSURANCE = """
INSERT INTO insurance_fund (event_id, shard, user_id, kind, amount, fund_after, ts_ms, created_at)
SELECT e, sh, u, k, a, fa, ts, to_timestamp(ts / 1000.0)
FROM unnest(%s::text[], %s::int[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
     WITH ORDINALITY AS r(e, sh, u, k, a, fa, ts, n)
ORDER BY n
ON CONFLICT (event_id) DO NOTHING
"""


def _columns(rows: list[tuple[object, ...]]) -> list[list[object]]:
    return [list(col) for col in zip(*rows, strict=True)]


async def write(conn: psycopg.AsyncConnection, rows: Rows) -> None:
    """Insert ``rows`` in one transaction (all or nothing)."""
    async with conn.transaction():
        for sql, table in ((_CLOSED, rows.closed_trades), (_LEDGER, rows.ledger), (_FUNDING, rows.funding),
                           (_INSURANCE, rows.insurance)):
            if table:
                await conn.execute(sql, _columns(table))
