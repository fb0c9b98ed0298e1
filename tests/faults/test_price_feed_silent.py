"""Fault: the price feed goes silent.

The real poller (``python -m opex_engine poller``) reads a fake Backpack on
127.0.0.1; the API runs in-process; the engine is a subprocess. Two silences:

1. Backpack stops sending (the poller is alive and sends a "stale" notice);
2. the poller itself dies (nobody tells the engine anything): the engine's
   own clock (PRICE_STALE_MS, from the input entries' times) must refuse.

While silent, market opens get 409 with "stale". Nothing is filled at an old
price: every trade's entry is the ask/bid of a tick at most PRICE_STALE_MS
older than the trade, and an order sent at the old price after the market
moved is refused on slippage or filled at the new price. When prices resume,
opens are accepted again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import redis as redis_lib

from opex_api.app import create_app
from opex_api.config import ApiSettings
from tests.fakes.backpack import FakeBackpack
from tests.faults.support import Figures, Proc, record_figures, run_checker

API = "/api/v1"
STALE_MS = 1500
BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
QTY = {BTC: 0.001, ETH: 0.01, SOL: 0.1}
# price levels (bid, ask) as Backpack sends them; each phase moves the market up 1%
LEVELS = [
    {BTC: ("97000.0", "97000.1"), ETH: ("3500.00", "3500.01"), SOL: ("200.00", "200.01")},
    {BTC: ("97970.0", "97970.1"), ETH: ("3535.00", "3535.01"), SOL: ("202.00", "202.01")},
    {BTC: ("98940.0", "98940.1"), ETH: ("3570.00", "3570.01"), SOL: ("204.00", "204.01")},
]


def units(text: str) -> int:
    return int(Decimal(text) * 10_000)


class Feed:
    """Plays Backpack: every 100 ms, book and mark frames of the current level."""

    def __init__(self, fake: FakeBackpack) -> None:
        self.fake = fake
        self.level = 0
        self.on = False
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            if self.on:
                for sym, (bid, ask) in LEVELS[self.level].items():
                    mid = str((Decimal(bid) + Decimal(ask)) / 2)
                    await self.fake.emit_book(sym, bid, ask)
                    await self.fake.emit_mark(sym, mid, mid, "0")
            await asyncio.sleep(0.1)

    def start(self) -> Feed:
        self.task = asyncio.get_running_loop().create_task(self._run())
        return self


class Trader:
    """One signed-in user sending market opens through the API and recording every answer."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.results: list[dict[str, Any]] = []

    async def signup(self) -> None:
        body = {"email": f"f{uuid.uuid4().hex[:10]}@example.com", "password": "correct horse battery"}
        assert (await self.client.post(f"{API}/user/signup", json=body)).status_code == 201
        assert (await self.client.post(f"{API}/user/signin", json=body)).status_code == 200

    async def open(self, market: str, level: int, slippage: int = 50, phase: str = "") -> dict[str, Any]:
        bid, ask = LEVELS[level][market]
        body = {"asset": market, "type": "long", "quantity": QTY[market], "leverage": 10, "slippage": slippage,
                "openPrice": units(ask)}
        r = await self.client.post(f"{API}/trade/open", json=body)
        res = {"phase": phase, "market": market, "seen": units(ask), "status": r.status_code, "t": time.monotonic(),
               "message": r.json().get("message", ""),
               "order": r.json().get("order") if r.status_code == 200 else None}
        self.results.append(res)
        return res


async def _until_accepted(trader: Trader, level: int, phase: str, timeout: float = 20.0,
                          market: str = BTC) -> float:
    """Seconds until an open at ``level`` is accepted."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        res = await trader.open(market, level, phase=phase)
        if res["status"] == 200:
            return time.monotonic() - t0
        await asyncio.sleep(0.05)
    raise AssertionError(f"no open accepted within {timeout}s after prices resumed ({phase})")


async def _silence(trader: Trader, level: int, phase: str, seconds: float) -> None:
    """Keep trying to open at the last price seen while the feed is silent."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        await trader.open([BTC, ETH, SOL][i % 3], level, slippage=100, phase=phase)
        i += 1
        await asyncio.sleep(0.1)


def _poller(s: Any, fake: FakeBackpack, log_dir: Any) -> Proc:
    return Proc("poller", [sys.executable, "-m", "opex_engine", "poller"], s, log_dir,
                PRICE_SOURCE="backpack", BACKPACK_WS_URL=fake.ws_url, BACKPACK_REST_URL=fake.rest_url,
                TICK_INTERVAL_MS="50", POLLER_STALE_MS="1000", POLLER_BACKFILL_MINUTES="0",
                POLLER_CONNECT_TIMEOUT_S="1", POLLER_RECONNECT_MIN_S="0.05", POLLER_RECONNECT_MAX_S="0.5",
                POLLER_STATUS_INTERVAL_MS="200", POLLER_CANDLE_FLUSH_MS="500")


@pytest.mark.slow
@pytest.mark.integration
def test_silent_price_feed_refuses_market_orders_and_fills_nothing_at_an_old_price(  # type: ignore[no-untyped-def]
        engine_factory, settings, redis, tmp_path, procs, start_history) -> None:
    s = settings.model_copy(update={"price_stale_ms": STALE_MS, "snapshot_interval_s": 600.0})
    engine_factory(settings_override=s).start()
    start_history(s)
    recover: dict[str, float] = {}

    async def scenario() -> Trader:
        async with FakeBackpack(ping_interval=None) as fake:
            feed = Feed(fake).start()
            feed.on = True
            poller = _poller(s, fake, tmp_path).start()
            procs.append(poller)
            await fake.wait_subscribed(6)
            app = create_app(ApiSettings(**s.model_dump()))
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=15) as client:
                trader = Trader(client)
                await trader.signup()
                await _until_accepted(trader, 0, "live")
                for m in (BTC, ETH, SOL, BTC, ETH, SOL):
                    assert (await trader.open(m, 0, phase="live"))["status"] == 200

                # 1. Backpack goes quiet; the poller is alive
                feed.on = False
                await _silence(trader, 0, "backpack silent", 3.0)
                markets = {m["symbol"]: m for m in (await client.get(f"{API}/markets")).json()["markets"]}
                assert markets[BTC]["stale"] is True, markets[BTC]
                # prices resume, 1% higher
                feed.level, feed.on = 1, True
                recover["backpack silent"] = await _until_accepted(trader, 1, "resumed")
                # an order at the old price: refused on slippage, or filled at the new price, never the old
                tight = await trader.open(BTC, 0, slippage=50, phase="old price, tight slippage")
                assert tight["status"] == 409 and "slippage" in tight["message"], tight
                wide = await trader.open(BTC, 0, slippage=300, phase="old price, wide slippage")
                assert wide["status"] == 200, wide
                assert wide["order"]["openPrice"] == units(LEVELS[1][BTC][1]), wide

                # 2. the poller dies: no stale notice, only the engine's own clock
                poller.kill()
                feed.level = 2
                await _silence(trader, 1, "poller dead", 3.0)
                poller = _poller(s, fake, tmp_path).start()
                procs.append(poller)
                recover["poller dead"] = await _until_accepted(trader, 2, "poller restarted", timeout=30)
                # the other markets' first prices reach the engine a moment after BTC's
                for m in (ETH, SOL):
                    await _until_accepted(trader, 2, "poller restarted", timeout=5, market=m)
                trades = (await client.get(f"{API}/trade/open")).json()["trades"]
            await app.state.resources.close()
            feed.task.cancel()  # type: ignore[union-attr]
            with contextlib.suppress(asyncio.CancelledError):
                await feed.task  # type: ignore[misc]
        trader.trades = trades  # type: ignore[attr-defined]
        return trader

    trader = asyncio.run(scenario())
    results = trader.results
    ok = [r for r in results if r["status"] == 200]
    for phase in ("backpack silent", "poller dead"):
        refused = [r for r in results if r["phase"] == phase and r["status"] == 409]
        assert refused and all("stale" in r["message"] for r in refused), (phase, refused[:3])
        assert len(refused) >= 5, (phase, [r["status"] for r in results if r["phase"] == phase])
    assert {r["status"] for r in results} <= {200, 409}, sorted({r["status"] for r in results})

    # every fill happened at a live price: each trade's entry is the ask of the latest tick of its
    # market before it (in engine time), and that tick was at most PRICE_STALE_MS older
    client = redis_lib.Redis.from_url(s.redis_url)
    try:
        ticks: dict[str, list[tuple[int, int]]] = {}
        for rid, fields in client.xrange(s.keys.input_stream(0)):
            msg = orjson.loads(fields[b"d"])
            if msg.get("type") == "tick":
                ticks.setdefault(msg["market"], []).append((int(rid.decode().split("-")[0]), msg["ask"]))
    finally:
        client.close()
    old_fills = []
    for t in trader.trades:  # type: ignore[attr-defined]
        before = [(ms, ask) for ms, ask in ticks[t["asset"]] if ms <= t["opened_ms"]]
        ms, ask = before[-1]
        if t["opened_ms"] - ms > STALE_MS or t["openPrice"] != ask:
            old_fills.append((t, ms, ask))
    assert old_fills == []

    fig = Figures("price_feed_silent")
    fig.attempted, fig.acknowledged = len(results), len(ok)
    fig.refused = sum(1 for r in results if r["status"] == 409)
    acked_ids = [r["order"]["id"] for r in ok]
    open_ids = [t["id"] for t in trader.trades]  # type: ignore[attr-defined]
    fig.lost = len(set(acked_ids) - set(open_ids))
    fig.duplicated = len(open_ids) - len(set(open_ids)) + len(set(open_ids) - set(acked_ids))
    fig.recover_s = max(recover.values())
    fig.extra = {"stale_ms": STALE_MS, "recover_each_s": {k: round(v, 2) for k, v in recover.items()},
                 "refused_stale": sum(1 for r in results if "stale" in r["message"]),
                 "filled_at_an_old_price": len(old_fills),
                 "recover_means": "prices resumed -> first open accepted"}
    report = run_checker(s)
    record_figures(fig)
    assert report.ok, report.problems
    assert fig.lost == 0 and fig.duplicated == 0
