"""Candles in Postgres: correct OHLC for a scripted path, idempotent under replay,
merge rules between sources, and the backfill from REST klines."""

from __future__ import annotations

import time

import psycopg
import pytest

from opex_engine.prices.candles import CandleRow, CandleStore
from tests.fakes.backpack import FakeBackpack, Step, kline
from tests.prices.harness import fast_config, poller_settings, run, running_poller, wait_until

pytestmark = pytest.mark.integration

T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC, a minute boundary
BTC, ETH = "BTC_USDC_PERP", "ETH_USDC_PERP"


def _mark(symbol: str, offset_s: float, price: str) -> Step:
    return Step(symbol, mark=price, index=price, ts_us=int((T0 + offset_s) * 1_000_000))


PATH = [
    _mark(BTC, 1, "65000.0"),
    _mark(ETH, 5, "3200.00"),
    _mark(BTC, 20, "65100.5"),
    _mark(ETH, 30, "3210.55"),
    _mark(BTC, 40, "64900.25"),
    _mark(BTC, 59.999, "65050.0"),
    _mark(BTC, 61, "65060.0"),
    _mark(ETH, 70, "3190.01"),
    _mark(BTC, 90, "65300.0"),
    _mark(BTC, 100, "64990.0"),
    _mark(BTC, 119, "65200.0"),
    _mark(BTC, 125, "65210.0"),
]

# worked out by hand from PATH (prices in 1e-4 USD)
EXPECTED = [
    (BTC, T0, 650000000, 651005000, 649002500, 650500000, 4, "live"),
    (BTC, T0 + 60, 650600000, 653000000, 649900000, 652000000, 4, "live"),
    (BTC, T0 + 120, 652100000, 652100000, 652100000, 652100000, 1, "live"),
    (ETH, T0, 32000000, 32105500, 32000000, 32105500, 2, "live"),
    (ETH, T0 + 60, 31900100, 31900100, 31900100, 31900100, 1, "live"),
]


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT market, start_s, open, high, low, close, ticks, source FROM candles_1m ORDER BY market, start_s"
        ).fetchall()


def test_candles_for_a_scripted_path_and_idempotent_replay(settings, redis, fresh_pg_dsn) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, database_url=fresh_pg_dsn)
            async with running_poller(s, fast_config()) as poller:
                await fake.wait_subscribed(6)
                await fake.play(PATH)
                await wait_until(lambda: _rows(fresh_pg_dsn) == EXPECTED, what="the expected candles")
                # replay over a new connection: the same ticks again
                await fake.drop_clients()
                await wait_until(lambda: fake.total_connections == 2, what="reconnect")
                await fake.wait_subscribed(6)
                await fake.play(PATH)
                await wait_until(lambda: poller.accepted == 2 * len(PATH), what="the replay applied")
            assert _rows(fresh_pg_dsn) == EXPECTED
            # a restarted poller (empty memory) replays the whole path: same rows
            async with running_poller(s, fast_config()) as poller:
                await fake.wait_subscribed(6)
                await fake.play(PATH)
                await wait_until(lambda: poller.accepted == len(PATH), what="the path applied")
            assert _rows(fresh_pg_dsn) == EXPECTED

    run(scenario())


def test_store_merge_rules_between_sources(fresh_pg_dsn) -> None:
    def row(start: int, o: int, h: int, lo: int, c: int, ticks: int, source: str, market: str = BTC) -> CandleRow:
        return CandleRow(market, start, o, h, lo, c, ticks, source)

    async def scenario() -> None:
        store = CandleStore(fresh_pg_dsn)
        try:
            live = row(T0, 100, 120, 90, 110, 5, "live")
            await store.upsert([live])
            await store.upsert([live])
            assert _rows(fresh_pg_dsn) == [tuple(live)]
            # later state of the same live minute from a process that restarted mid-minute:
            # open kept, high/low widened, close taken, ticks the larger
            await store.upsert([row(T0, 105, 130, 95, 101, 2, "live")])
            assert _rows(fresh_pg_dsn) == [(BTC, T0, 100, 130, 90, 101, 5, "live")]
            # backfill never overwrites a live (or simulated) minute
            await store.upsert_backfill([row(T0, 1, 999, 1, 2, 0, "backfill")])
            assert _rows(fresh_pg_dsn) == [(BTC, T0, 100, 130, 90, 101, 5, "live")]
            # ... but refreshes its own rows
            await store.upsert_backfill([row(T0 + 60, 200, 210, 190, 205, 0, "backfill")])
            await store.upsert_backfill([row(T0 + 60, 200, 215, 190, 212, 0, "backfill")])
            assert _rows(fresh_pg_dsn)[1] == (BTC, T0 + 60, 200, 215, 190, 212, 0, "backfill")
            # live ticks in a backfilled minute merge into it (same real series)
            await store.upsert([row(T0 + 60, 213, 220, 211, 218, 3, "live")])
            assert _rows(fresh_pg_dsn)[1] == (BTC, T0 + 60, 200, 220, 190, 218, 3, "live")
            # another source taking over a minute replaces it (no mixed candles)
            sim = row(T0 + 60, 300, 310, 290, 305, 7, "simulated")
            await store.upsert([sim])
            assert _rows(fresh_pg_dsn)[1] == tuple(sim)
            assert await store.latest_start(BTC) == T0 + 60
            assert await store.latest_start(ETH) is None
        finally:
            await store.close()

    run(scenario())


def test_backfill_from_klines_on_connect_without_touching_live_candles(settings, redis, fresh_pg_dsn) -> None:
    now_min = int(time.time()) // 60 * 60
    klines = {
        BTC: [
            kline(now_min - 300, "63000", "63000", "63000", "63000"),  # older than our newest candle
            kline(now_min - 240, "1", "1", "1", "1"),  # we have this minute live: must not change
            kline(now_min - 180, None, None, None, None),  # an empty minute: skipped
            kline(now_min - 120, "64005.5", "64100", "64000", "64050"),
            kline(now_min - 60, "64050", "64000", "64040", "64045"),  # high < open: refused
            kline(now_min, "64045", "64060", "64044", "64055"),  # the minute in progress
        ],
        ETH: [kline(now_min - 60, "3100", "3101", "3099", "3100.5")],
    }

    async def scenario() -> None:
        store = CandleStore(fresh_pg_dsn)
        live = CandleRow(BTC, now_min - 240, 640500000, 640600000, 640400000, 640550000, 9, "live")
        await store.upsert([live])
        await store.close()
        async with FakeBackpack(klines=klines) as fake:
            s = poller_settings(settings, fake, database_url=fresh_pg_dsn)
            cfg = fast_config(backfill_minutes=10, backfill_page_minutes=4)
            async with running_poller(s, cfg, clock_s=lambda: now_min + 30) as poller:
                await fake.wait_subscribed(6)
                await wait_until(lambda: poller._backfill_done, what="the backfill")
                assert poller.backfilled_rows == 4  # BTC -240 (refused by the live row), -120, now; ETH -60
            assert _rows(fresh_pg_dsn) == [
                tuple(live),
                (BTC, now_min - 120, 640055000, 641000000, 640000000, 640500000, 0, "backfill"),
                (BTC, now_min, 640450000, 640600000, 640440000, 640550000, 0, "backfill"),
                (ETH, now_min - 60, 31000000, 31010000, 30990000, 31005000, 0, "backfill"),
            ]
            btc = [q for q in fake.kline_requests if q["symbol"] == BTC]
            assert all(q["interval"] == "1m" and q["priceType"] == "Mark" for q in fake.kline_requests)
            # from our newest candle on, in pages of 4 minutes, up to the minute in progress
            assert [(int(q["startTime"]), int(q["endTime"])) for q in btc] == [
                (now_min - 240, now_min), (now_min, now_min + 60)]
            eth = [(int(q["startTime"]), int(q["endTime"])) for q in fake.kline_requests if q["symbol"] == ETH]
            assert eth == [(now_min - 600, now_min - 360), (now_min - 360, now_min - 120),
                           (now_min - 120, now_min + 60)]

    run(scenario())
