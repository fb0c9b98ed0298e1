"""The history writer against a real engine, Redis and Postgres: rows are
written once however often an event is delivered, a Postgres outage delays
history without losing it or stopping trading, a restart resumes pending
entries, abandoned entries are claimed, and the stream is trimmed safely."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import redis as redis_lib

from opex_common.settings import Settings
from opex_engine.history.writer import HistorySettings, run_history_writer
from tests.api.api_support import BTC, ETH, PRICES, history_writer_process, proxied
from tests.helpers import call, send_tick

pytestmark = [pytest.mark.anyio, pytest.mark.integration]
ROUND = 5  # ledger rows of an open and a close: margin_lock, fee | margin_release, realized_pnl, fee


def _hs(settings: Settings, **over: Any) -> HistorySettings:
    base = {"history_block_ms": 50, "history_keep_s": 300, **over}
    return HistorySettings(**{**settings.model_dump(), **base})


@asynccontextmanager
async def writer(settings: HistorySettings) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(run_history_writer(settings, stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def _trade_round(settings: Settings, user: str, market: str = BTC, qty: int = 1_000_000) -> str:
    """Open and close one trade through the engine; returns the trade id."""
    bid, ask, _ = PRICES[market]
    rep = call(settings, {"type": "open", "user_id": user, "market": market, "side": "long", "qty": qty,
                          "leverage": 10, "slippage_bps": 100, "price": ask, "margin_mode": "cross"})
    assert rep["ok"], rep
    tid = rep["data"]["trade"]["id"]
    rep = call(settings, {"type": "close", "user_id": user, "trade_id": tid})
    assert rep["ok"], rep
    return tid  # type: ignore[no-any-return]


def _user(settings: Settings) -> str:
    uid = uuid.uuid4().hex
    assert call(settings, {"type": "create_account", "user_id": uid})["ok"]
    return uid


def _prices(settings: Settings) -> None:
    for market, (bid, ask, mark) in PRICES.items():
        send_tick(settings, market, bid, ask, mark)


def _counts(dsn: str, user: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        closed = conn.execute("SELECT count(*) FROM closed_trades WHERE user_id = %s", (user,)).fetchone()[0]
        ledger = conn.execute("SELECT count(*) FROM ledger WHERE user_id = %s", (user,)).fetchone()[0]
    return closed, ledger


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_rows_are_written_once_however_often_delivered(settings: Settings, redis: redis_lib.Redis,
                                                             engine: object) -> None:
    hs = _hs(settings)
    _prices(settings)
    user = _user(settings)
    tid = _trade_round(settings, user)
    # deposit, margin_lock, fee | margin_release, realized_pnl, fee
    async with writer(hs):
        await _until(lambda: _counts(settings.database_url, user) == (1, 6))
        # the engine replays (a restart from an older snapshot) or an entry is
        # re-delivered: the same events arrive again in new stream entries
        stream = settings.keys.event_stream(0)
        for _, fields in redis.xrange(stream):
            redis.xadd(stream, fields)
        await _until(lambda: redis.xinfo_groups(stream)[0]["lag"] == 0 and
                     redis.xinfo_groups(stream)[0]["pending"] == 0)
        await asyncio.sleep(0.2)
        assert _counts(settings.database_url, user) == (1, 6)
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT trade_id, market, side, qty, remaining_qty, entry_price, close_price, reason,"
                           " liquidated FROM closed_trades WHERE user_id = %s", (user,)).fetchone()
        kinds = [r[0] for r in conn.execute("SELECT kind FROM ledger WHERE user_id = %s ORDER BY seq", (user,))]
        last = conn.execute("SELECT balance_after FROM ledger WHERE user_id = %s ORDER BY seq DESC LIMIT 1",
                            (user,)).fetchone()[0]
    bid, ask, _ = PRICES[BTC]
    assert row == (tid, BTC, 1, 1_000_000, 0, ask, bid, "close", False)
    assert kinds == ["deposit", "margin_lock", "fee", "margin_release", "realized_pnl", "fee"]
    assert last == call(settings, {"type": "create_account", "user_id": user})["data"]["balance"]


@pytest.mark.slow
async def test_postgres_outage_delays_history_and_loses_nothing(settings: Settings, redis: redis_lib.Redis,
                                                                engine: object) -> None:
    _prices(settings)
    target = urlsplit(settings.database_url)
    with proxied(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn = settings.database_url.replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{proxy.port}")
        hs = _hs(settings, database_url=dsn, history_max_backoff_s=0.3)
        user = _user(settings)
        async with writer(hs):
            await _until(lambda: _counts(settings.database_url, user) == (0, 1))
            proxy.cut()
            t0 = time.monotonic()
            for _ in range(5):  # trading goes on, at full speed
                _trade_round(settings, user, ETH, 100_000_000)
            assert time.monotonic() - t0 < 5
            stream = settings.keys.event_stream(0)
            await asyncio.sleep(0.5)
            group = redis.xinfo_groups(stream)[0]
            assert group["pending"] + group["lag"] > 0  # waiting in the stream, not acknowledged
            assert _counts(settings.database_url, user) == (0, 1)
            proxy.restore()
            await _until(lambda: _counts(settings.database_url, user) == (5, 1 + 5 * ROUND), timeout=15)
    with psycopg.connect(settings.database_url) as conn:
        n = conn.execute("SELECT count(DISTINCT trade_id) FROM closed_trades WHERE user_id = %s", (user,)).fetchone()
    assert n == (5,)


async def test_restart_resumes_pending_and_claims_abandoned_entries(settings: Settings, redis: redis_lib.Redis,
                                                                    engine: object) -> None:
    _prices(settings)
    stream = settings.keys.event_stream(0)
    group = HistorySettings.model_fields["history_consumer"].default
    user = _user(settings)
    _trade_round(settings, user)
    redis.xgroup_create(stream, "history", id="0", mkstream=True)
    # a writer named like ours read everything and died before its commit
    redis.xreadgroup("history", group, {stream: ">"})
    # and one with another name (a container on another host) read newer entries
    _trade_round(settings, user)
    redis.xreadgroup("history", "old-task-7", {stream: ">"})
    assert redis.xinfo_groups(stream)[0]["pending"] > 0 and redis.xinfo_groups(stream)[0]["lag"] == 0
    await asyncio.sleep(1.1)
    async with writer(_hs(settings, history_claim_idle_ms=1000)):
        await _until(lambda: _counts(settings.database_url, user) == (2, 1 + 2 * ROUND))
        await _until(lambda: redis.xinfo_groups(stream)[0]["pending"] == 0)


async def test_stream_is_trimmed_only_below_what_every_group_has(settings: Settings, redis: redis_lib.Redis,
                                                                 engine: object) -> None:
    _prices(settings)
    stream = settings.keys.event_stream(0)
    user = _user(settings)
    for _ in range(3):
        _trade_round(settings, user)
    length = redis.xlen(stream)
    redis.xgroup_create(stream, "history", id="0", mkstream=True)
    redis.xgroup_create(stream, "pusher", id="0")  # another reader that has read nothing yet
    async with writer(_hs(settings, history_keep_s=0)):
        await _until(lambda: _counts(settings.database_url, user) == (3, 1 + 3 * ROUND))
        await asyncio.sleep(1.2)
        _trade_round(settings, user)  # another batch -> another trim attempt
        await _until(lambda: _counts(settings.database_url, user) == (4, 1 + 4 * ROUND))
        assert redis.xlen(stream) >= length  # the pusher still needs everything
        redis.xreadgroup("pusher", "p1", {stream: ">"})
        last = redis.xinfo_groups(stream)[1]["last-delivered-id"]
        redis.xack(stream, "pusher", *[e[0] for e in redis.xrange(stream)])
        await asyncio.sleep(1.2)
        _trade_round(settings, user)
        await _until(lambda: _counts(settings.database_url, user) == (5, 1 + 5 * ROUND))
        await _until(lambda: redis.xlen(stream) < length, timeout=5)
        assert all(e[0] >= last for e in redis.xrange(stream))


def test_the_process_runs_and_stops_cleanly(settings: Settings, redis: redis_lib.Redis, engine: object,
                                            tmp_path: Path) -> None:
    _prices(settings)
    proc = history_writer_process(settings, tmp_path, HISTORY_BLOCK_MS="100").start()
    try:
        user = _user(settings)
        _trade_round(settings, user)
        deadline = time.monotonic() + 15
        while _counts(settings.database_url, user) != (1, 1 + ROUND):
            assert time.monotonic() < deadline and proc.alive(), proc.log_tail()
            time.sleep(0.1)
    finally:
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(15) == 0, proc.log_tail()
    assert '"history writer stopped"' in proc.log_tail()
