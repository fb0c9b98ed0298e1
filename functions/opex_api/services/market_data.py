"""Market data: live prices (Redis, from the poller) and candles (Postgres)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import psycopg_pool
from psycopg_pool import AsyncConnectionPool

from ..observability import logger

INTERVAL_S = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14_400, "1d": 86_400}

_ONE_MINUTE = """
SELECT start_s, open, high, low, close FROM candles_1m
WHERE market = %(market)s ORDER BY start_s DESC LIMIT %(limit)s
"""

# Roll one-minute candles up into the last `limit` buckets that have data.
_ROLLED_UP = """
SELECT (start_s / %(iv)s) * %(iv)s AS t,
       (array_agg(open ORDER BY start_s ASC))[1],
       max(high),
       min(low),
       (array_agg(close ORDER BY start_s DESC))[1]
FROM candles_1m
WHERE market = %(market)s
  AND start_s >= (SELECT (max(start_s) / %(iv)s - %(limit)s + 1) * %(iv)s
                  FROM candles_1m WHERE market = %(market)s)
GROUP BY t ORDER BY t DESC LIMIT %(limit)s
"""


async def candles(pool: AsyncConnectionPool, market: str, interval: str, limit: int) -> list[dict[str, int]]:
    """Oldest first."""
    iv = INTERVAL_S[interval]
    sql = _ONE_MINUTE if iv == 60 else _ROLLED_UP
    async with pool.connection() as conn:
        cur = await conn.execute(sql, {"market": market, "limit": limit, "iv": iv})
        rows = await cur.fetchall()
    return [{"time": t, "open": o, "high": h, "low": lo, "close": c} for t, o, h, lo, c in reversed(rows)]


class DayOpenCache:
    """Each market's price 24 hours ago (the open of the first minute candle in
    the last day), for the 24 h change on /markets. Cached for a minute; when
    Postgres is slow or down /markets answers without it rather than failing."""

    TTL_S = 60.0
    FAILURE_TTL_S = 10.0
    TIMEOUT_S = 0.5

    def __init__(self) -> None:
        self._opens: dict[str, int] = {}
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def get(self, pool_getter: Any) -> dict[str, int]:
        if time.monotonic() < self._until:
            return self._opens
        async with self._lock:
            if time.monotonic() < self._until:
                return self._opens
            try:
                pool: AsyncConnectionPool = await pool_getter()
                async with pool.connection(timeout=self.TIMEOUT_S) as conn:
                    cur = await conn.execute(
                        "SELECT DISTINCT ON (market) market, open FROM candles_1m"
                        " WHERE start_s >= %s ORDER BY market, start_s",
                        (int(time.time()) - 86_400,))
                    self._opens = {m: o for m, o in await cur.fetchall()}
                self._until = time.monotonic() + self.TTL_S
            except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
                logger.info("24h opens unavailable", extra={"reason": exc.__class__.__name__})
                self._until = time.monotonic() + self.FAILURE_TTL_S
        return self._opens


def change_bps(mark: Any, day_open: int | None) -> int | None:
    if not isinstance(mark, int) or not day_open:
        return None
    return (mark - day_open) * 10_000 // day_open
