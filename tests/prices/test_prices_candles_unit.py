"""CandleAggregator: OHLC per minute by source time, idempotent replay, retention."""

from __future__ import annotations

import random

import pytest

from opex_engine.prices.candles import CandleAggregator, CandleRow

pytestmark = pytest.mark.unit

M = "BTC_USDC_PERP"
T0 = 1_767_225_600_000  # ms, a minute boundary


def test_ohlc_per_minute() -> None:
    agg = CandleAggregator()
    for offset, price in [(1_000, 100), (20_000, 130), (40_000, 90), (59_999, 110), (60_000, 111), (61_000, 95)]:
        assert agg.add(M, T0 + offset, price, "live")
    assert agg.drain() == [
        CandleRow(M, T0 // 1000, 100, 130, 90, 110, 4, "live"),
        CandleRow(M, T0 // 1000 + 60, 111, 111, 95, 95, 2, "live"),
    ]
    assert agg.drain() == []


def test_replay_gives_the_same_rows_and_any_order_the_same_ohlc() -> None:
    ticks = [(T0 + i * 997, 1000 + (i * 37) % 101) for i in range(180)]  # three minutes
    agg = CandleAggregator()
    for ts, p in ticks:
        agg.add(M, ts, p, "live")
    first = agg.drain()
    for ts, p in ticks:  # the same ticks again, same aggregator
        agg.add(M, ts, p, "live")
    assert agg.drain() == first
    shuffled = ticks[:]
    random.Random(4).shuffle(shuffled)
    fresh = CandleAggregator()
    for ts, p in shuffled:  # out of order, a fresh aggregator: the same OHLC
        fresh.add(M, ts, p, "live")
    assert [r[:6] for r in fresh.drain()] == [r[:6] for r in first]
    # ``ticks`` counts in-order updates (a late tick cannot be told from a repeat without
    # remembering every timestamp), so it is exact for an in-order feed
    assert [r.ticks for r in first] == [61, 60, 59]


def test_a_new_source_restarts_the_minute() -> None:
    agg = CandleAggregator()
    agg.add(M, T0 + 1_000, 100, "simulated")
    agg.add(M, T0 + 2_000, 200, "simulated")
    agg.add(M, T0 + 3_000, 150, "live")
    assert agg.drain() == [CandleRow(M, T0 // 1000, 150, 150, 150, 150, 1, "live")]


def test_retention_late_ticks_and_eviction() -> None:
    agg = CandleAggregator(retention_minutes=2)
    agg.add(M, T0, 100, "live")
    agg.add(M, T0 + 5 * 60_000, 105, "live")  # evicts minute 0 (still unwritten: kept as pending)
    assert agg.current(M, T0 // 1000) is None
    assert not agg.add(M, T0 + 1_000, 99, "live")  # older than retention: refused
    assert agg.late == 1
    assert [r.start_s for r in agg.drain()] == [T0 // 1000, T0 // 1000 + 300]
    assert agg.add(M, T0 + 3 * 60_000, 101, "live")  # within retention of the newest minute


def test_requeue_keeps_the_newest_state() -> None:
    agg = CandleAggregator()
    agg.add(M, T0, 100, "live")
    failed = agg.drain()
    agg.add(M, T0 + 1_000, 120, "live")  # newer state of the same minute
    agg.requeue(failed)
    assert agg.drain() == [CandleRow(M, T0 // 1000, 100, 120, 100, 120, 2, "live")]
    agg.requeue(failed)
    assert agg.pending == 1 and agg.drain() == failed
