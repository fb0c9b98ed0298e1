"""The real entry point (``python -m opex_engine poller``) and the real engine
consuming the poller's ticks and stale notices."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from opex_common.messages import decode
from tests.fakes.backpack import FakeBackpack
from tests.helpers import call
from tests.prices.harness import StreamReader, fast_config, poller_settings, run, running_poller, wait_until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BTC = "BTC_USDC_PERP"


def _env(settings, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "engine_container", ".")),
        "REDIS_URL": settings.redis_url, "KEY_PREFIX": settings.key_prefix, "ENGINE_SHARDS": "2",
        "PRICE_SOURCE": "simulated", "POLLER_STATUS_INTERVAL_MS": "100", "POLLER_CANDLE_FLUSH_MS": "100",
    })
    env.update(extra)
    return env


def test_main_poller_migrates_runs_and_stops_on_sigterm(settings, redis) -> None:
    db = f"opex_t_{uuid.uuid4().hex[:12]}"  # empty: the poller must apply the migrations itself
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db}"
    proc = subprocess.Popen([sys.executable, "-m", "opex_engine", "poller"], cwd=ROOT,
                            env=_env(settings, DATABASE_URL=dsn), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(redis.xlen(settings.keys.input_stream(s)) > 0 for s in (0, 1)) and _candles(dsn) > 0:
                break
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            time.sleep(0.05)
        else:
            raise AssertionError("no ticks / candles from the poller process")
        status = json.loads(redis.get(settings.keys.feed_status()))
        assert status["source"] == "simulated" and status["mode"] == "simulated"
        tick = decode(redis.xrange(settings.keys.input_stream(1), count=1)[0][1][b"d"])
        assert tick["type"] == "tick" and 0 < tick["bid"] < tick["ask"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        lines = proc.stdout.read().decode().splitlines()  # type: ignore[union-attr]
        logs = [json.loads(line) for line in lines]  # every line is a JSON log record
        assert all({"level", "message", "service", "timestamp"} <= set(r) for r in logs)
        messages = [r["message"] for r in logs]
        assert any("PRICE SOURCE: SIMULATED" in m for m in messages)
        assert messages[-1] == "price poller stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _candles(dsn: str) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            return conn.execute("SELECT count(*) FROM candles_1m").fetchone()[0]  # type: ignore[index]
    except psycopg.errors.UndefinedTable:
        return 0


def test_main_poller_refuses_bad_settings(settings) -> None:
    proc = subprocess.run([sys.executable, "-m", "opex_engine", "poller"], cwd=ROOT, timeout=30,
                          env=_env(settings, POLLER_STALE_MS="soon"), capture_output=True)
    assert proc.returncode == 2
    record = json.loads(proc.stdout.decode().splitlines()[-1])
    assert record["level"] == "ERROR" and "stale_ms" in json.dumps(record["errors"])


def test_engine_refuses_market_orders_while_the_price_is_stale(engine, settings, redis) -> None:
    async def scenario() -> None:
        async with FakeBackpack() as fake:
            s = poller_settings(settings, fake)
            async with running_poller(s, fast_config(stale_ms=400)) as poller:
                await fake.wait_subscribed(6)
                await fake.emit_book(BTC, "65000.1", "65000.2")
                await fake.emit_mark(BTC, "65000.15", "65000.15")
                await wait_until(lambda: poller.forwarded >= 1, what="a tick")
                rep = await asyncio.to_thread(call, settings, {"type": "create_account", "user_id": "u1"})
                assert rep["ok"], rep
                order = {"type": "open", "user_id": "u1", "market": BTC, "side": "long", "qty": 1_000_000,
                         "leverage": 10, "slippage_bps": 50, "price": 650002000}
                rep = await asyncio.to_thread(call, settings, dict(order))
                assert rep["ok"] and rep["data"]["trade"]["entry"] == 650002000, rep
                # the feed goes quiet: a stale notice, then the engine refuses with a clear reason
                await wait_until(lambda: poller.book.states[BTC].stale_notified, timeout=10, what="stale")
                rep = await asyncio.to_thread(call, settings, dict(order))
                assert not rep["ok"] and rep["status"] == 409 and "stale" in rep["message"], rep
                # prices again: trading resumes
                await fake.emit_book(BTC, "65000.1", "65000.2")
                reader = StreamReader(s)
                try:
                    async def tick_after_stale() -> bool:
                        kinds = [m["type"] for m in await reader.messages(0, market=BTC)]
                        return [k for k in kinds if k in ("tick", "stale")][-2:] == ["stale", "tick"]

                    await wait_until(tick_after_stale, what="a tick after the stale notice in the stream")
                finally:
                    await reader.close()
                rep = await asyncio.to_thread(call, settings, dict(order))
                assert rep["ok"], rep

    run(scenario())
