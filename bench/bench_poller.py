#!/usr/bin/env python
"""Benchmark of the price poller against the fake Backpack server.

The poller runs as its real process (``python -m opex_engine poller``); the fake
server and the measuring reader run in this process. Figures:

1. **flood, coalesced** (TICK_INTERVAL_MS=100, the default): the fake writes
   bookTicker/markPrice frames for 3 markets as fast as TCP takes them; rate of
   frames the poller parsed, validated and applied (from its feed status).
2. **flood, uncoalesced** (TICK_INTERVAL_MS=1): the same, plus the rate of ticks
   forwarded to Redis (one XADD per shard each).
3. **tick-to-stream latency** at a realistic pace (50 bookTicker frames/s per
   market, unique prices): fake server timestamp ``E`` (wall clock, µs) -> the
   entry is returned by XREAD BLOCK on the shard stream; p50/p99, with the
   default coalescing interval and with 1 ms.
4. **candle upserts**: rows/s through CandleStore (executemany in a transaction,
   batches of 1000), new rows and conflicting (replayed) rows, and the latency of
   a typical one-second flush (3 markets).

Usage: .venv/bin/python bench/bench_poller.py [--out bench/results/poller.json] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in ("layers/common/python", "engine_container", "."):
    if str(ROOT / _p) not in sys.path:
        sys.path.insert(0, str(ROOT / _p))

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from opex_common.migrations import migrate  # noqa: E402
from opex_engine.prices.candles import CandleRow, CandleStore  # noqa: E402
from tests.fakes.backpack import FakeBackpack, book_ticker_frame, mark_price_frame, now_us, raw_text_frame  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SHARDS = 2
MARKETS = {  # symbol: (base price in 1e-4 units, tick)
    "BTC_USDC_PERP": (650_000_000, 1000),
    "ETH_USDC_PERP": (32_000_000, 100),
    "SOL_USDC_PERP": (1_500_000, 100),
}


def _text(units: int) -> str:
    return f"{units // 10_000}.{units % 10_000:04d}"


class PollerProcess:
    def __init__(self, fake: FakeBackpack, prefix: str, dsn: str, tick_interval_ms: int) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="bench-poller-", suffix=".log", delete=False)  # noqa: SIM115
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "engine_container", ".")),
            "REDIS_URL": REDIS_URL, "DATABASE_URL": dsn, "KEY_PREFIX": prefix, "ENGINE_SHARDS": str(SHARDS),
            "PRICE_SOURCE": "backpack", "BACKPACK_WS_URL": fake.ws_url, "BACKPACK_REST_URL": fake.rest_url,
            "TICK_INTERVAL_MS": str(tick_interval_ms), "POLLER_STATUS_INTERVAL_MS": "100",
            "POLLER_BACKFILL_MINUTES": "0", "POLLER_SILENCE_TIMEOUT_S": "60", "POLLER_STALE_MS": "60000",
            "LOG_LEVEL": "WARNING",
        })
        self.proc = subprocess.Popen([sys.executable, "-m", "opex_engine", "poller"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        os.unlink(self.log.name)


async def _status(r: aioredis.Redis, prefix: str) -> dict[str, Any]:
    raw = await r.get(f"{prefix}:feed:status")
    return orjson.loads(raw) if raw else {}


async def _fresh_status(r: aioredis.Redis, prefix: str, after_ms: int) -> dict[str, Any]:
    while True:
        st = await _status(r, prefix)
        if st and st["updated_ms"] > after_ms:
            return st
        await asyncio.sleep(0.02)


def _flood_frames(seconds: float):  # type: ignore[no-untyped-def]
    """bookTicker (90 %) and markPrice (10 %) frames for 3 markets, valid and in band."""
    end = time.monotonic() + seconds
    symbols = list(MARKETS)
    u = 1
    while time.monotonic() < end:
        e = now_us()
        for _ in range(512):
            u += 1
            sym = symbols[u % 3]
            base, tick = MARKETS[sym]
            bid = base + (u % 200) * tick
            if u % 10:
                frame = book_ticker_frame(sym, _text(bid), _text(bid + tick), ts_us=e, u=u)
            else:
                frame = mark_price_frame(sym, _text(bid), _text(bid), ts_us=e)
            yield raw_text_frame(frame.encode())


async def flood_phase(fake: FakeBackpack, r: aioredis.Redis, dsn: str, tick_ms: int, seconds: float) -> dict[str, Any]:
    prefix = f"opex-bench-{uuid.uuid4().hex[:8]}"
    poller = PollerProcess(fake, prefix, dsn, tick_ms)
    try:
        await fake.wait_subscribed(6, timeout=20)
        flood = asyncio.create_task(fake.flood(_flood_frames(seconds + 1.5)))
        await asyncio.sleep(1.0)  # warm-up
        s1 = await _fresh_status(r, prefix, int(time.time() * 1000))
        await asyncio.sleep(seconds)
        s2 = await _fresh_status(r, prefix, s1["updated_ms"])
        sent = await flood
        dt = (s2["updated_ms"] - s1["updated_ms"]) / 1000
        xlen = [await r.xlen(f"{prefix}:in:{s}") for s in range(SHARDS)]
        return {
            "tick_interval_ms": tick_ms,
            "seconds": round(dt, 3),
            "frames_sent": sent,
            "frames_parsed_per_s": round((s2["frames"] - s1["frames"]) / dt),
            "updates_accepted_per_s": round((s2["accepted"] - s1["accepted"]) / dt),
            "ticks_forwarded_per_s": round((s2["forwarded"] - s1["forwarded"]) / dt),
            "stream_entries_per_s": round((s2["stream_entries"] - s1["stream_entries"]) / dt),
            "dropped": s2["dropped"],
            "stream_lengths": xlen,
        }
    finally:
        poller.stop()
        await _cleanup(r, prefix)


async def latency_phase(fake: FakeBackpack, r: aioredis.Redis, dsn: str, tick_ms: int, seconds: float,
                        per_market_hz: int = 50) -> dict[str, Any]:
    prefix = f"opex-bench-{uuid.uuid4().hex[:8]}"
    poller = PollerProcess(fake, prefix, dsn, tick_ms)
    sent_at: dict[tuple[str, int], int] = {}
    latencies: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        rr = aioredis.Redis.from_url(REDIS_URL)
        ids = {f"{prefix}:in:{s}": "$" for s in range(SHARDS)}
        try:
            while not stop.is_set():
                got: Any = await rr.xread(ids, block=200)  # type: ignore[arg-type]
                t = now_us()
                for stream, entries in got or []:
                    for eid, fields in entries:
                        ids[stream.decode()] = eid.decode()
                        msg = orjson.loads(fields[b"d"])
                        e = sent_at.get((msg["market"], msg["bid"]))
                        if e is not None:
                            latencies.append(t - e)
        finally:
            await rr.aclose()

    try:
        await fake.wait_subscribed(6, timeout=20)
        task = asyncio.create_task(reader())
        await asyncio.sleep(0.3)
        period = 1 / per_market_hz
        n = int(seconds * per_market_hz)
        next_at = time.monotonic()
        for i in range(n):
            for sym, (base, tick) in MARKETS.items():
                bid = base + (i % 400) * tick
                e = now_us()
                sent_at[(sym, bid)] = e
                await fake.emit_book(sym, _text(bid), _text(bid + tick), ts_us=e)
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.sleep(0.5)
        stop.set()
        await task
    finally:
        poller.stop()
        await _cleanup(r, prefix)
    lat = sorted(latencies)
    return {
        "tick_interval_ms": tick_ms,
        "frames_per_s": per_market_hz * len(MARKETS),
        "samples": len(lat),
        "p50_ms": round(_pct(lat, 50) / 1000, 3),
        "p99_ms": round(_pct(lat, 99) / 1000, 3),
        "max_ms": round(lat[-1] / 1000, 3) if lat else None,
    }


def _pct(values: list[int], p: float) -> float:
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return float(values[k])


async def candle_phase(dsn: str, rows_per_market: int = 10_000, batch: int = 1000) -> dict[str, Any]:
    store = CandleStore(dsn)
    t0 = 1_700_000_000 // 60 * 60
    rows = [CandleRow(sym, t0 + i * 60, 1000 + i % 7, 1010 + i % 7, 990, 1000, 5, "live")
            for sym in MARKETS for i in range(rows_per_market)]
    try:
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            await store.upsert(rows[i:i + batch])
        insert_s = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            await store.upsert(rows[i:i + batch])
        conflict_s = time.perf_counter() - start
        flushes = []
        for i in range(200):  # a typical flush: the current minute of 3 markets
            small = [CandleRow(sym, t0 + rows_per_market * 60, 1000, 1000 + i, 990, 1000 + i, i + 1, "live")
                     for sym in MARKETS]
            s = time.perf_counter()
            await store.upsert(small)
            flushes.append(time.perf_counter() - s)
    finally:
        await store.close()
    flushes.sort()
    return {
        "rows": len(rows),
        "batch": batch,
        "new_rows_per_s": round(len(rows) / insert_s),
        "conflict_rows_per_s": round(len(rows) / conflict_s),
        "flush_3_rows_p50_ms": round(statistics.median(flushes) * 1000, 3),
        "flush_3_rows_p99_ms": round(flushes[int(0.99 * (len(flushes) - 1))] * 1000, 3),
    }


async def _cleanup(r: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in r.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await r.delete(*keys)


async def main_async(seconds: float) -> dict[str, Any]:
    db = f"opex_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    dsn = f"{PG_ADMIN.rsplit('/', 1)[0]}/{db}"
    r = aioredis.Redis.from_url(REDIS_URL)
    fake = await FakeBackpack(ping_interval=None).start()
    try:
        migrate(dsn)
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "shards": SHARDS,
        }
        results["flood_coalesced"] = await flood_phase(fake, r, dsn, 100, seconds)
        results["flood_uncoalesced"] = await flood_phase(fake, r, dsn, 1, seconds)
        results["latency_coalesced"] = await latency_phase(fake, r, dsn, 100, seconds)
        results["latency_uncoalesced"] = await latency_phase(fake, r, dsn, 1, seconds)
        results["candles"] = await candle_phase(dsn)
        return results
    finally:
        await fake.stop()
        await r.aclose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def print_table(res: dict[str, Any]) -> None:
    fc, fu = res["flood_coalesced"], res["flood_uncoalesced"]
    lc, lu = res["latency_coalesced"], res["latency_uncoalesced"]
    c = res["candles"]
    rows = [
        ("frames parsed+applied /s (flood, 100 ms coalescing)", f"{fc['frames_parsed_per_s']:,}"),
        ("  ticks forwarded /s (<= 10 per market)", f"{fc['ticks_forwarded_per_s']:,}"),
        ("frames parsed+applied /s (flood, 1 ms interval)", f"{fu['frames_parsed_per_s']:,}"),
        (f"  ticks forwarded /s (x{res['shards']} shards = stream entries)",
         f"{fu['ticks_forwarded_per_s']:,} ({fu['stream_entries_per_s']:,})"),
        (f"tick->stream latency p50 / p99, 100 ms interval ({lc['frames_per_s']} frames/s)",
         f"{lc['p50_ms']} / {lc['p99_ms']} ms"),
        (f"tick->stream latency p50 / p99, 1 ms interval ({lu['frames_per_s']} frames/s)",
         f"{lu['p50_ms']} / {lu['p99_ms']} ms"),
        (f"candle upserts /s, new rows (batches of {c['batch']})", f"{c['new_rows_per_s']:,}"),
        ("candle upserts /s, replayed rows (ON CONFLICT)", f"{c['conflict_rows_per_s']:,}"),
        ("candle flush of 3 rows p50 / p99", f"{c['flush_3_rows_p50_ms']} / {c['flush_3_rows_p99_ms']} ms"),
    ]
    width = max(len(a) for a, _ in rows)
    print(f"price poller benchmark ({res['machine']['cpus']} CPUs, Python {res['machine']['python']})")
    for a, b in rows:
        print(f"  {a:<{width}}  {b:>22}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench/results/poller.json"))
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring window of each phase")
    parser.add_argument("--quick", action="store_true", help="1.5 s phases")
    args = parser.parse_args()
    started = time.monotonic()
    res = asyncio.run(main_async(1.5 if args.quick else args.seconds))
    res["elapsed_s"] = round(time.monotonic() - started, 1)
    fc, lc, lu, c = res["flood_coalesced"], res["latency_coalesced"], res["latency_uncoalesced"], res["candles"]
    res["summary"] = [
        {"figure": "Poller: frames parsed and forwarded per second (fake Backpack flooding)",
         "value": f"{fc['frames_parsed_per_s']:,}", "target": ""},
        {"figure": "Poller: tick to stream latency p50 / p99 (1 ms interval; 100 ms coalescing)",
         "value": f"{lu['p50_ms']} / {lu['p99_ms']} ms ({lc['p50_ms']} / {lc['p99_ms']} ms)", "target": ""},
        {"figure": "Candle upserts per second (new rows / replayed)",
         "value": f"{c['new_rows_per_s']:,} / {c['conflict_rows_per_s']:,}", "target": ""},
    ]
    print_table(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"written to {out} in {res['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
