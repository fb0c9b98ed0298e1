"""Bad frames from the feed are dropped and counted, the last good price stays,
the poller keeps running; silent markets are declared stale to the engine."""

from __future__ import annotations

import json
import logging

import pytest

from tests.fakes.backpack import FakeBackpack, book_ticker_frame, mark_price_frame
from tests.prices.harness import StreamReader, fast_config, poller_settings, run, running_poller, wait_until

pytestmark = pytest.mark.integration

BTC = "BTC_USDC_PERP"


def _book(**data_changes: object) -> str:
    frame = json.loads(book_ticker_frame(BTC, "65000.1", "65000.2", u=10**10))
    for k, v in data_changes.items():
        if v is None:
            frame["data"].pop(k)
        else:
            frame["data"][k] = v
    return json.dumps(frame)


def _mark(**data_changes: object) -> str:
    frame = json.loads(mark_price_frame(BTC, "65000.15", "65000.15"))  # E = now: newer than the last
    frame["data"].update(data_changes)
    return json.dumps(frame)


# (name, raw frame (built when sent), stream it is sent on or None for "every client", reason, field)
BAD_FRAMES = [
    ("not JSON", lambda: '{"stream":"bookTicker.BTC_USDC_PERP","data":{', None, "not_json", "frame"),
    ("missing bid", lambda: _book(b=None), f"bookTicker.{BTC}", "missing_field", "b"),
    ("non-numeric ask", lambda: _book(a="65k"), f"bookTicker.{BTC}", "non_numeric", "a"),
    ("negative bid", lambda: _book(b="-65000.1"), f"bookTicker.{BTC}", "non_positive", "b"),
    ("zero ask", lambda: _book(a="0"), f"bookTicker.{BTC}", "non_positive", "a"),
    ("crossed book", lambda: _book(b="65000.3"), f"bookTicker.{BTC}", "crossed_book", "b"),
    ("unknown symbol", lambda: book_ticker_frame("DOGE_USDC_PERP", "0.1", "0.2"), None, "unknown_symbol", "s"),
    ("price jump", lambda: _book(b="91000.1", a="91000.2"), f"bookTicker.{BTC}", "price_jump", "b"),
    ("mark jump", lambda: _mark(p="30000", i="30000"), f"markPrice.{BTC}", "price_jump", "p"),
    ("non-numeric funding", lambda: _mark(f="NaN"), f"markPrice.{BTC}", "non_numeric", "f"),
    ("missing mark", lambda: _mark(p=None), f"markPrice.{BTC}", "missing_field", "p"),
    ("error frame", lambda: '{"id":null,"error":{"code":4000,"message":"Invalid"}}', None, "error_frame",
     "error"),
]


def test_each_bad_frame_is_dropped_counted_and_warned_once(settings, redis, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="opex.prices.poller")

    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake)
            reader = StreamReader(s)
            try:
                # warnings rate-limited to one per (reason, field) per minute
                async with running_poller(s, fast_config(warn_interval_s=60)) as poller:
                    await fake.wait_subscribed(6)
                    await fake.emit_book(BTC, "65000.1", "65000.2")
                    await fake.emit_mark(BTC, "65000.15", "65000.16")
                    await wait_until(lambda: _price_mark(reader, 650001500), what="a good price")
                    good = await reader.price(BTC)
                    ticks_before = len(await reader.messages(0, "tick"))
                    for _name, make, stream, _reason, _field in BAD_FRAMES:
                        raw = make()
                        for _ in range(2):
                            if stream is None:
                                assert await fake.send_raw(raw) == 1
                            else:
                                assert await fake.send(stream, raw) == 1
                    expected: dict[str, int] = {}
                    for *_, reason, _field in BAD_FRAMES:
                        expected[reason] = expected.get(reason, 0) + 2
                    await wait_until(lambda: dict(poller.dropped) == expected, what=f"drops {expected}")
                    # nothing bad reached the engine, the last good price stays
                    assert len(await reader.messages(0, "tick")) == ticks_before
                    assert await reader.price(BTC) == good
                    status = await wait_until(
                        lambda: _status_dropped(reader, expected), what="dropped counts in the feed status")
                    assert status["connected"] is True
                    # still running: the next good frame goes through
                    await fake.emit_book(BTC, "65001.1", "65001.2")
                    await wait_until(lambda: _price_bid(reader, 650011000), what="a good price after the junk")
            finally:
                await reader.close()

    run(scenario())
    warnings = [r for r in caplog.records if r.getMessage().startswith("price frame dropped")]
    by_key = {(r.reason, r.field) for r in warnings}  # type: ignore[attr-defined]
    assert by_key == {(reason, field) for *_, reason, field in BAD_FRAMES}
    assert len(warnings) == len(BAD_FRAMES)  # the second of each pair was rate-limited
    for r in warnings:
        assert repr(r.field) in r.getMessage()  # type: ignore[attr-defined]  # the message names the field


async def _price_mark(reader: StreamReader, mark: int) -> bool:
    p = await reader.price(BTC)
    return bool(p) and p["mark"] == mark  # type: ignore[index]


async def _price_bid(reader: StreamReader, bid: int) -> bool:
    p = await reader.price(BTC)
    return bool(p) and p["bid"] == bid  # type: ignore[index]


async def _status_dropped(reader: StreamReader, expected: dict[str, int]) -> dict | None:
    st = await reader.status()
    return st if st and st["dropped"] == expected else None


def test_a_persistent_jump_is_accepted_after_confirmation(settings, redis) -> None:
    """A real crash beyond the band: dropped at first, accepted once it persists."""

    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake)
            reader = StreamReader(s)
            try:
                cfg = fast_config(jump_confirm_ms=150, jump_confirm_frames=3)
                async with running_poller(s, cfg) as poller:
                    await fake.wait_subscribed(6)
                    await fake.emit_book(BTC, "65000.1", "65000.2")
                    await wait_until(lambda: _price_bid(reader, 650001000), what="first price")
                    await fake.emit_book(BTC, "52000.1", "52000.2")  # -20 %
                    await wait_until(lambda: poller.dropped["price_jump"] == 1, what="the jump dropped")

                    async def confirmed() -> bool:
                        await fake.emit_book(BTC, "52000.1", "52000.2")
                        return await _price_bid(reader, 520001000)

                    await wait_until(confirmed, timeout=10, interval=0.05, what="the new level accepted")
                    assert poller.book.jumps_confirmed == 1
                    assert poller.dropped["price_jump"] >= 2
            finally:
                await reader.close()

    run(scenario())


def test_silent_market_is_declared_stale_once_then_recovers(settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake, engine_shards=2)
            reader = StreamReader(s)
            try:
                async with running_poller(s, fast_config(stale_ms=300)) as poller:
                    await fake.wait_subscribed(6)
                    await fake.emit_book(BTC, "65000.1", "65000.2")
                    await wait_until(lambda: reader.messages(1, "tick", BTC), what="a tick")

                    async def stale_everywhere() -> bool:
                        return all([await reader.messages(sh, "stale", BTC) for sh in (0, 1)])

                    await wait_until(stale_everywhere, timeout=10, what="stale notices in both shards")
                    # once, not repeated while the market stays silent
                    await wait_until(lambda: poller.stale_notices >= 3, what="all three markets stale")
                    status = await wait_until(
                        lambda: _status_stale(reader, [BTC, "ETH_USDC_PERP", "SOL_USDC_PERP"]), what="status")
                    assert status["last_tick_age_ms"][BTC] >= 300
                    for shard in (0, 1):
                        assert await reader.messages(shard, "stale", BTC) == [{"type": "stale", "market": BTC}]
                    # ETH/SOL never had a price: stale too (the engine refuses anyway)
                    assert len(await reader.messages(0, "stale", "ETH_USDC_PERP")) == 1
                    # the API's view of the price says so as well
                    price = await reader.price(BTC)
                    assert price is not None and price["stale"] is True and price["bid"] == 650001000
                    assert await reader.price("ETH_USDC_PERP") is None
                    # a new tick clears it; silence again gives a second notice
                    await fake.emit_book(BTC, "65000.3", "65000.4")
                    await wait_until(lambda: _status_stale(reader, ["ETH_USDC_PERP", "SOL_USDC_PERP"]),
                                     what="BTC no longer stale")
                    async def fresh_again() -> bool:
                        kinds = [m["type"] for _, m in await reader.entries(0) if m.get("market") == BTC]
                        price = await reader.price(BTC)
                        return kinds == ["tick", "stale", "tick"] and price is not None and "stale" not in price

                    await wait_until(fresh_again, what="a tick after the stale notice, and the flag gone")
                    await wait_until(lambda: _count(reader, "stale", BTC, 2), timeout=10, what="second notice")
            finally:
                await reader.close()

    run(scenario())


async def _status_stale(reader: StreamReader, markets: list[str]) -> dict | None:
    st = await reader.status()
    return st if st and st["stale"] == sorted(markets) else None


async def _count(reader: StreamReader, type_: str, market: str, n: int) -> bool:
    return len(await reader.messages(0, type_, market)) == n
