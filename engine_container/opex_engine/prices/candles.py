"""One-minute OHLC candles of the **mark price**, kept in Postgres (``candles_1m``).

Why the mark: it is the price unrealized PnL and liquidations use, it is smooth
(no bid/ask bounce) and Backpack serves the same series as history
(``/api/v1/klines?priceType=Mark``), so backfilled and live candles join up.

Aggregation (:class:`CandleAggregator`, pure): every accepted price update —
not only the coalesced ticks, so no high or low is lost between flushes — is
folded into the candle of its minute by *source* time. Per minute we remember
the time of the open and of the close: a tick earlier than the open becomes the
open, one at or after the close becomes the close, high/low are max/min, and
``ticks`` counts updates with a strictly newer time. Applying the same ticks
again therefore changes nothing (idempotent replay). A minute's state is kept in
memory for ``retention_minutes`` after the newest minute of its market; ticks
older than that are dropped (counted as ``late``).

Storage (:class:`CandleStore`): every flush upserts the *full* OHLC of each
changed minute, sorted by key, in one transaction. On conflict the row merges
(open kept, high = GREATEST, low = LEAST, close = ours, ticks = GREATEST) when it
is the same series (same source, or live on top of a backfilled minute);
otherwise our source replaces it (a minute belongs to whichever source was live
last). Backfilled rows (``source='backfill'``) only ever replace backfilled rows.
A Postgres outage keeps the pending rows in memory (bounded) and retries; it
never touches the tick path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg

from opex_common.units import UnitError, price_from_text

log = logging.getLogger("opex.prices.candles")

SOURCE_LIVE = "live"
SOURCE_SIMULATED = "simulated"
SOURCE_BACKFILL = "backfill"
MAX_PENDING_ROWS = 200_000


class CandleRow(NamedTuple):
    market: str
    start_s: int
    open: int
    high: int
    low: int
    close: int
    ticks: int
    source: str


@dataclass(slots=True)
class _Minute:
    open: int
    open_ts: int
    high: int
    low: int
    close: int
    close_ts: int
    ticks: int
    source: str

    def row(self, market: str, start_s: int) -> CandleRow:
        return CandleRow(market, start_s, self.open, self.high, self.low, self.close, self.ticks, self.source)


class CandleAggregator:
    def __init__(self, retention_minutes: int = 3) -> None:
        self.retention_s = retention_minutes * 60
        self._minutes: dict[tuple[str, int], _Minute] = {}
        self._latest: dict[str, int] = {}
        self._dirty: set[tuple[str, int]] = set()
        self._pending: dict[tuple[str, int], CandleRow] = {}
        self.late = 0
        self.overflow = 0

    def add(self, market: str, ts_ms: int, price: int, source: str) -> bool:
        """Fold one price at source time ``ts_ms`` into its minute. False if too late."""
        start = ts_ms // 60_000 * 60
        latest = self._latest.get(market)
        if latest is None or start > latest:
            self._latest[market] = start
            if latest is not None:
                self._evict(market, start)
        elif start < latest - self.retention_s:
            self.late += 1
            return False
        key = (market, start)
        m = self._minutes.get(key)
        if m is None or m.source != source:
            self._minutes[key] = _Minute(price, ts_ms, price, price, price, ts_ms, 1, source)
        else:
            if ts_ms < m.open_ts:
                m.open, m.open_ts = price, ts_ms
            if ts_ms >= m.close_ts:
                if ts_ms > m.close_ts:
                    m.ticks += 1
                m.close, m.close_ts = price, ts_ms
            if price > m.high:
                m.high = price
            elif price < m.low:
                m.low = price
        self._dirty.add(key)
        return True

    def _evict(self, market: str, newest: int) -> None:
        horizon = newest - self.retention_s
        for key in [k for k in self._minutes if k[0] == market and k[1] < horizon]:
            m = self._minutes.pop(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._stash(key, m.row(*key))

    def _stash(self, key: tuple[str, int], row: CandleRow) -> None:
        if key not in self._pending and len(self._pending) >= MAX_PENDING_ROWS:
            self.overflow += 1
            return
        self._pending[key] = row

    def drain(self) -> list[CandleRow]:
        """Rows to write: every minute changed since the last drain, sorted by key."""
        for key in self._dirty:
            self._pending[key] = self._minutes[key].row(*key)
        self._dirty.clear()
        rows = sorted(self._pending.values())
        self._pending.clear()
        return rows

    def requeue(self, rows: Iterable[CandleRow]) -> None:
        """Rows whose write failed; a newer state of the same minute wins."""
        for row in rows:
            key = (row.market, row.start_s)
            if key not in self._dirty and key not in self._pending:
                self._stash(key, row)

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._dirty)

    def current(self, market: str, start_s: int) -> CandleRow | None:
        m = self._minutes.get((market, start_s))
        return m.row(market, start_s) if m else None


# ------------------------------------------------------------------------------ SQL
_MERGE = "(c.source = excluded.source OR (c.source = 'backfill' AND excluded.source = 'live'))"
UPSERT_SQL = f"""
INSERT INTO candles_1m AS c (market, start_s, open, high, low, close, ticks, source)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (market, start_s) DO UPDATE SET
    open  = CASE WHEN {_MERGE} THEN c.open ELSE excluded.open END,
    high  = CASE WHEN {_MERGE} THEN GREATEST(c.high, excluded.high) ELSE excluded.high END,
    low   = CASE WHEN {_MERGE} THEN LEAST(c.low, excluded.low) ELSE excluded.low END,
    close = excluded.close,
    ticks = CASE WHEN {_MERGE} THEN GREATEST(c.ticks, excluded.ticks) ELSE excluded.ticks END,
    source = excluded.source
"""

BACKFILL_SQL = """
INSERT INTO candles_1m AS c (market, start_s, open, high, low, close, ticks, source)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (market, start_s) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    ticks = excluded.ticks
WHERE c.source = 'backfill'
"""


class CandleStore:
    """Writes candle rows to Postgres over one async connection (reopened on error)."""

    def __init__(self, dsn: str, connect_timeout_s: float = 5.0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
                application_name="opex-poller",
            )
        return self._conn

    async def _executemany(self, sql: str, rows: list[CandleRow]) -> None:
        if not rows:
            return
        conn = await self._connection()
        try:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(sql, rows)
        except BaseException:  # error or cancellation: the connection state is unknown
            await self.close()
            raise

    async def upsert(self, rows: list[CandleRow]) -> None:
        await self._executemany(UPSERT_SQL, sorted(rows))

    async def upsert_backfill(self, rows: list[CandleRow]) -> None:
        await self._executemany(BACKFILL_SQL, sorted(rows))

    async def latest_start(self, market: str) -> int | None:
        conn = await self._connection()
        try:
            cur = await conn.execute("SELECT max(start_s) FROM candles_1m WHERE market = %s", (market,))
            row = await cur.fetchone()
        except psycopg.Error:
            await self.close()
            raise
        return int(row[0]) if row and row[0] is not None else None

    async def close(self) -> None:
        if self._conn is not None:
            try:
                await self._conn.close()
            finally:
                self._conn = None


# ------------------------------------------------------------------------------ klines
class KlineError(ValueError):
    pass


def kline_time_s(value: Any) -> int:
    """A kline ``start``: "2026-09-01 17:23:00" (UTC), ISO 8601, or integer seconds/ms."""
    if isinstance(value, bool):
        raise KlineError("start is a boolean")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int):
        return value // 1000 if value >= 10**11 else value
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise KlineError(f"start is not a time: {value[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp())
    raise KlineError("start is missing or not a time")


def parse_kline(item: Any, market: str) -> CandleRow | None:
    """One entry of ``/api/v1/klines`` (1m) -> a backfill row; None for an empty minute."""
    if not isinstance(item, dict):
        raise KlineError("kline is not an object")
    start = kline_time_s(item.get("start"))
    if start % 60:
        raise KlineError(f"start {start} is not on a minute")
    fields = [item.get(k) for k in ("open", "high", "low", "close")]
    if any(v is None for v in fields):
        return None
    try:
        o, h, lo, c = (price_from_text(v, name) for v, name in zip(fields, ("open", "high", "low", "close"), strict=True))
    except (UnitError, ArithmeticError) as exc:
        raise KlineError(str(exc)) from None
    if min(o, h, lo, c) <= 0:
        raise KlineError("non-positive price")
    if not (lo <= min(o, c) and h >= max(o, c)):
        raise KlineError("high/low do not bracket open/close")
    return CandleRow(market, start, o, h, lo, c, 0, SOURCE_BACKFILL)


def parse_klines(body: Any, market: str) -> tuple[list[CandleRow], int]:
    """All valid rows of a klines response, and how many entries were refused."""
    if not isinstance(body, list):
        raise KlineError(f"klines response is not a list: {type(body).__name__}")
    rows: list[CandleRow] = []
    bad = 0
    for item in body:
        try:
            row = parse_kline(item, market)
        except KlineError:
            bad += 1
            continue
        if row is not None:
            rows.append(row)
    return rows, bad


def kline_params(market: str, start_s: int, end_s: int) -> Mapping[str, str]:
    return {"symbol": market, "interval": "1m", "startTime": str(start_s), "endTime": str(end_s),
            "priceType": "Mark"}

