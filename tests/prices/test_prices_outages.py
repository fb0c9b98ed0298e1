"""Redis and Postgres outages (through a TCP proxy the test cuts): the poller keeps
running, prices resume with the latest values, candles are written once Postgres
is back and nothing is lost."""

from __future__ import annotations

import psycopg
import pytest

from opex_common.settings import Settings
from tests.fakes.backpack import FakeBackpack
from tests.fakes.tcp_proxy import TcpProxy
from tests.prices.harness import StreamReader, fast_config, poller_settings, run, running_poller, wait_until
from tests.prices.test_prices_candles import EXPECTED, PATH

pytestmark = pytest.mark.integration

BTC = "BTC_USDC_PERP"


def test_redis_outage_then_the_latest_prices(settings: Settings, redis) -> None:  # type: ignore[no-untyped-def]
    host, port = "127.0.0.1", redis.connection_pool.connection_kwargs.get("port", 6379)

    async def scenario() -> None:
        proxy = await TcpProxy(host, port).start()
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake)
            via_proxy = s.model_copy(update={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"})
            reader = StreamReader(s)  # the test reads Redis directly
            try:
                async with running_poller(via_proxy, fast_config()) as poller:
                    await fake.wait_subscribed(6)
                    await fake.emit_book(BTC, "65000.1", "65000.2")
                    await wait_until(lambda: reader.messages(0, "tick", BTC), what="a tick")
                    await proxy.cut()
                    frames = poller.frames
                    await fake.emit_book(BTC, "65001.1", "65001.2")
                    await fake.emit_book(BTC, "65002.1", "65002.2")
                    await wait_until(lambda: poller.frames == frames + 2, what="frames still parsed")
                    await wait_until(lambda: poller._flush_retry_at > 0, what="a failed flush")
                    assert len(await reader.messages(0, "tick", BTC)) == 1
                    await proxy.restore()

                    async def latest() -> bool:
                        ticks = await reader.messages(0, "tick", BTC)
                        return ticks[-1]["bid"] == 650021000

                    await wait_until(latest, what="the latest price after the outage")
                    assert [t["bid"] for t in await reader.messages(0, "tick", BTC)] == [650001000, 650021000]
            finally:
                await reader.close()
                await proxy.stop()

    run(scenario())


def test_postgres_outage_delays_candles_not_prices(settings: Settings, redis, fresh_pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    base, db = fresh_pg_dsn.rsplit("/", 1)

    async def scenario() -> None:
        proxy = await TcpProxy("127.0.0.1", 5432).start()
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, database_url=f"postgresql://postgres@127.0.0.1:{proxy.port}/{db}")
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config()) as poller:
                    await fake.wait_subscribed(6)
                    await fake.play(PATH[:4])
                    await wait_until(lambda: poller.candle_rows_written > 0 and poller.candles.pending == 0,
                                     what="first candles written")
                    await proxy.cut()
                    await fake.emit_book(BTC, "65300.1", "65300.2")  # prices go on during the outage
                    await fake.play(PATH[4:])
                    await wait_until(lambda: poller.candle_write_errors > 0, what="a failed candle write")

                    async def tick_sent() -> bool:
                        ticks = await reader.messages(0, "tick", BTC)
                        return bool(ticks) and ticks[-1]["mark"] == 652100000

                    await wait_until(tick_sent, what="ticks flowing while Postgres is down")
                    await proxy.restore()
                    await wait_until(lambda: _rows(fresh_pg_dsn) == EXPECTED, timeout=8, what="all candles")
            finally:
                await reader.close()
                await proxy.stop()

    run(scenario())


def _rows(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT market, start_s, open, high, low, close, ticks, source FROM candles_1m ORDER BY market, start_s"
        ).fetchall()


def test_a_cancellation_turned_into_a_database_error_still_stops_the_loops() -> None:
    """Cancelled mid-write, psycopg cancels the query, then leaving the
    transaction fails on the closed connection and that error replaces the
    CancelledError. The candle loop (and its supervisor) must stop anyway, or
    the poller's shutdown waits for them forever."""
    import asyncio
    from types import SimpleNamespace

    from opex_engine.prices.poller import PollerConfig, PricePoller

    writes = 0

    class RanOn(BaseException):
        """A write after the cancellation: ends the task, so a regression fails here at once."""

    async def write_candles() -> int:
        nonlocal writes
        writes += 1
        if writes > 1:
            raise RanOn
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise psycopg.OperationalError("the connection is closed") from None
        return 0

    poller = SimpleNamespace(config=PollerConfig(candle_flush_ms=10), write_candles=write_candles)

    async def scenario() -> None:
        task = asyncio.create_task(PricePoller._supervise(  # type: ignore[arg-type]
            poller, "candles", lambda: PricePoller._candle_loop(poller)))  # type: ignore[arg-type]
        await asyncio.sleep(0.1)
        assert writes == 1
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        assert done and task.cancelled() and writes == 1

    run(scenario())
