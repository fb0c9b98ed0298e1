"""PRICE_SOURCE=auto: fall back to the simulator when Backpack cannot be reached,
switch back when it can, and fall back again when it goes away."""

from __future__ import annotations

import asyncio
import contextlib
import functools

import pytest

from tests.fakes.backpack import FakeBackpack
from tests.prices.harness import StreamReader, fast_config, poller_settings, run, running_poller, wait_until

pytestmark = pytest.mark.integration

BTC = "BTC_USDC_PERP"


async def _source_is(reader: StreamReader, source: str, market: str = BTC) -> dict | None:
    price = await reader.price(market)
    return price if price and price["source"] == source else None


def test_falls_back_to_the_simulator_and_back(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            fake.available = False  # "maintenance": every handshake gets HTTP 503
            s = poller_settings(settings, fake, price_source="auto", tick_interval_ms=20)
            reader = StreamReader(s)
            emitting = asyncio.Event()

            async def exchange() -> None:  # a live exchange: prices for every market, 20 per second
                i = 0
                while True:
                    await emitting.wait()
                    i += 1
                    await fake.emit_book(BTC, f"{61000 + i % 5}.1", f"{61000 + i % 5}.2")
                    await fake.emit_book("ETH_USDC_PERP", "3000.10", "3000.20")
                    await fake.emit_book("SOL_USDC_PERP", "140.10", "140.12")
                    await asyncio.sleep(0.05)

            feeder = asyncio.create_task(exchange())
            try:
                cfg = fast_config(fallback_after_ms=300, stale_ms=5_000)
                async with running_poller(s, cfg) as poller:
                    # 1. Backpack unreachable from the start -> simulator within ~0.3 s
                    sim = await wait_until(lambda: _source_is(reader, "simulated"), what="simulated prices")
                    assert 0 < sim["bid"] < sim["ask"]
                    status = await reader.status()
                    assert status is not None and status["connected"] is False
                    sim_ticks = len(await reader.messages(0, "tick", BTC))
                    await wait_until(lambda: _more_ticks(reader, sim_ticks + 3), what="simulated ticks flowing")
                    assert poller.source == "simulated"
                    # 2. Backpack back -> its prices take over
                    fake.available = True
                    emitting.set()
                    live = await wait_until(lambda: _source_is(reader, "backpack"), timeout=5, what="Backpack again")
                    assert 610000000 <= live["bid"] <= 610050000
                    for m in ("ETH_USDC_PERP", "SOL_USDC_PERP"):
                        await wait_until(functools.partial(_source_is, reader, "backpack", m), what=f"{m} from Backpack")
                    assert poller.switches == 2
                    # 3. Backpack gone again -> simulator continues from Backpack's last prices
                    emitting.clear()
                    await fake.set_available(False)
                    again = await wait_until(lambda: _source_is(reader, "simulated"), timeout=5,
                                             what="simulated again")
                    assert abs(again["mark"] - 610025000) < 610025000 * 0.01  # within 1 % of the last live mid
                    assert poller.switches == 3
                    # never stale meanwhile: some source always had a price
                    assert await reader.messages(0, "stale") == []
            finally:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
                await reader.close()

    run(scenario())


async def _more_ticks(reader: StreamReader, n: int) -> bool:
    return len(await reader.messages(0, "tick", BTC)) >= n


def test_backpack_only_mode_never_simulates(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            fake.available = False
            s = poller_settings(settings, fake, price_source="backpack")
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config(fallback_after_ms=100, stale_ms=300)) as poller:
                    await wait_until(lambda: poller.stale_notices == 3, what="stale notices")
                    assert poller.source is None
                    assert await reader.messages(0, "tick") == []
            finally:
                await reader.close()

    run(scenario())
