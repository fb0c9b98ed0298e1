"""OHLC candles from the price poller's one-minute candles, rolled up."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import DbDep
from ..schemas import ERRORS, CandlesOut, Interval, Symbol
from ..services import market_data

router = APIRouter(tags=["markets"])


@router.get("/candles", response_model=CandlesOut, responses={
    422: {"description": "unknown symbol or interval, or limit out of range"}, **ERRORS})
async def candles(
    db: DbDep,
    symbol: Annotated[Symbol, Query()],
    interval: Annotated[Interval, Query()] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """The latest ``limit`` candles, oldest first; ``time`` is the candle's
    start in unix seconds (UTC-aligned buckets)."""
    rows = await market_data.candles(db, symbol, interval, limit)
    return {"symbol": symbol, "interval": interval, "decimal": 4, "candles": rows}
