"""The price poller: Backpack feed or simulator -> engine shards, live push, candles.

Flow of one price update::

    Backpack frame --parse/validate--> MarketBook --(coalesce)--> flush: one Redis pipeline
    simulator step -----------------/       |                       XADD tick to every shard
                                            |                       HSET prices, PUBLISH prices
                                            +--> CandleAggregator --(every second)--> Postgres

- **Coalescing**: updates only mark a market dirty. A flush runs as soon as
  something is dirty but never sooner than ``TICK_INTERVAL_MS`` after the last
  one (leading edge: an isolated update goes out at once), and sends each dirty
  market's *latest* bid/ask/mark/index/funding in one pipeline. So a market
  gets at most one tick per interval, and no tick carries an outdated field.
- **Sources** (``PRICE_SOURCE``): ``backpack`` (only Backpack), ``simulated``
  (only the simulator) or ``auto``: Backpack, falling back to the simulator when
  Backpack gave no good price for ``POLLER_FALLBACK_AFTER_MS``, and back to
  Backpack on its first good frame (the client keeps reconnecting meanwhile).
  Every switch is logged at WARNING and shown in the feed status.
- **Staleness**: a market with no usable price from any source for
  ``POLLER_STALE_MS`` gets one ``{"type":"stale"}`` message on every shard; the
  engine refuses market orders on it until the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
import orjson
import psycopg
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from opex_common import messages
from opex_common.logs import RateLimitedLog, setup_logging
from opex_common.migrations import migrate
from opex_common.settings import Settings, get_settings
from opex_common.units import FUNDING_SCALE

from .backpack import (
    MAX_PRICE,
    BackpackClient,
    BookUpdate,
    FrameError,
    MarkUpdate,
    parse_frame,
    parse_mark_prices_rest,
)
from .book import MarketBook, MarketState
from .candles import (
    SOURCE_LIVE,
    SOURCE_SIMULATED,
    CandleAggregator,
    CandleRow,
    CandleStore,
    KlineError,
    kline_params,
    parse_klines,
)
from .config import PollerConfig
from .simulator import Simulator

log = logging.getLogger("opex.prices.poller")

BACKPACK = "backpack"
SIMULATED = "simulated"
_SIM_MIN_STEP_MS = 50
_BACKFILL_RETRY_S = 300.0


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class PricePoller:
    def __init__(
        self,
        settings: Settings,
        config: PollerConfig,
        redis: aioredis.Redis,
        *,
        store: CandleStore | None = None,
        schema_ready: bool = False,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock_s = clock_s  # wall clock for the backfill window (tests pin it)
        self.config = config
        self.redis = redis
        self.keys = settings.keys
        self.markets = settings.markets
        self.symbols = sorted(self.markets)
        self.shards = settings.engine_shards
        self.streams = [self.keys.input_stream(s) for s in range(self.shards)]
        self.mode = settings.price_source
        self.tick_interval_s = settings.tick_interval_ms / 1000
        self.book = MarketBook(self.symbols, config.sanity_band_bps, config.jump_confirm_ms,
                               config.jump_confirm_frames)
        self.candles = CandleAggregator(config.candle_retention_minutes)
        self.store = store or CandleStore(settings.database_url)
        self.source: str | None = None
        self.switches = 0
        # counters (feed status)
        self.dropped: Counter[str] = Counter()
        self.frames = 0  # Backpack frames received
        self.accepted = 0  # updates applied (Backpack and simulator)
        self.forwarded = 0  # tick messages sent (one per market per flush)
        self.stream_entries = 0  # XADDs (forwarded x shards)
        self.flushes = 0
        self.stale_notices = 0
        self.candle_rows_written = 0
        self.candle_write_errors = 0
        self.backfilled_rows = 0
        self._schema_ready = schema_ready
        self._warn = RateLimitedLog(log, config.warn_interval_s)
        self._flush_needed = asyncio.Event()
        self._last_flush = 0.0
        self._flush_retry_at = 0.0
        self._started = time.monotonic()
        self._last_backpack_good = self._started
        self._seed_prices: dict[str, int] = {}
        self._sim: Simulator | None = None
        self._sim_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._backfill_done = False
        self._backfill_last_try = float("-inf")
        self._backfill_task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.client: BackpackClient | None = None
        if self.mode != SIMULATED:
            self.client = BackpackClient(
                settings.backpack_ws_url, self.symbols, self.on_frame, config,
                on_connect=self._on_connect,
            )

    # ================================================================= Backpack frames (hot path)
    def on_frame(self, raw: str | bytes) -> None:
        self.frames += 1
        try:
            upd = parse_frame(raw, self.markets)
            if upd is None:
                return
            now = time.monotonic()
            if self.source != BACKPACK:
                self._use_backpack()
            if type(upd) is BookUpdate:
                st = self.book.apply_book(upd, BACKPACK, now)
                if not st.has_mark:  # provisional mark = mid: it moves with the book
                    self.candles.add(st.symbol, st.ts_ms, st.mark, SOURCE_LIVE)
            else:
                assert type(upd) is MarkUpdate
                st = self.book.apply_mark(upd, BACKPACK, now)
                self.candles.add(st.symbol, upd.ts_ms, upd.mark, SOURCE_LIVE)
        except FrameError as exc:
            self._drop(exc)
            return
        except Exception:  # never let one frame kill the feed
            self.dropped["internal_error"] += 1
            log.exception("price frame handling failed")
            return
        self.accepted += 1
        self._last_backpack_good = now
        if not self._flush_needed.is_set():
            self._flush_needed.set()

    def _drop(self, exc: FrameError) -> None:
        self.dropped[exc.reason] += 1
        self._warn.warning(
            f"drop:{exc.reason}:{exc.field}",
            f"price frame dropped: {exc.reason} in field {exc.field!r}",
            reason=exc.reason, field=exc.field, detail=exc.detail, dropped_total=self.dropped[exc.reason],
        )

    def _on_connect(self) -> None:
        self.book.new_connection()
        self._spawn(self._prime_marks())
        if (not self._backfill_done and self.config.backfill_minutes > 0
                and (self._backfill_task is None or self._backfill_task.done())
                and time.monotonic() - self._backfill_last_try >= _BACKFILL_RETRY_S):
            self._backfill_last_try = time.monotonic()
            self._backfill_task = self._spawn(self._backfill())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ================================================================= source switching
    def _use_backpack(self) -> None:
        previous = self.source
        self.source = BACKPACK
        self.switches += 1
        self.book.switch_source()
        self._stop_simulator()
        log.warning("PRICE SOURCE: BACKPACK (live exchange prices)",
                    extra={"price_source": BACKPACK, "previous_source": previous, "mode": self.mode})

    def _use_simulator(self, reason: str) -> None:
        previous = self.source
        self.source = SIMULATED
        self.switches += 1
        start = self._current_mids()
        self.book.switch_source()
        step_ms = max(self.settings.tick_interval_ms, _SIM_MIN_STEP_MS)
        if self._sim is None:
            self._sim = Simulator(self.markets, self.settings.simulator_seed, step_ms, start_prices=start)
        else:
            self._sim.reanchor(start)
        self._sim_task = asyncio.get_running_loop().create_task(self._run_simulator(step_ms))
        log.warning("PRICE SOURCE: SIMULATED (prices are NOT real market prices)",
                    extra={"price_source": SIMULATED, "previous_source": previous, "reason": reason,
                           "mode": self.mode, "seed": self.settings.simulator_seed})

    def _stop_simulator(self) -> None:
        if self._sim_task is not None:
            self._sim_task.cancel()
            self._sim_task = None

    def _current_mids(self) -> dict[str, int]:
        out = dict(self._seed_prices)
        for sym, st in self.book.states.items():
            if st.ready:
                out[sym] = (st.bid + st.ask) // 2
        return out

    async def _run_simulator(self, step_ms: int) -> None:
        sim = self._sim
        assert sim is not None
        step = step_ms / 1000
        next_at = time.monotonic()
        while True:
            now = time.monotonic()
            for t in sim.step(_wall_ms()):
                self.book.apply_full(t.market, t.bid, t.ask, t.mark, t.index, t.funding_rate,
                                     t.next_funding_ms, t.ts_ms, SIMULATED, now)
                self.candles.add(t.market, t.ts_ms, t.mark, SOURCE_SIMULATED)
                self.accepted += 1
            self._flush_needed.set()
            next_at += step
            delay = next_at - time.monotonic()
            if delay < -1.0:  # the loop was starved (suspend, debugger): do not catch up
                next_at = time.monotonic()
            await asyncio.sleep(max(0.0, delay))

    # ================================================================= flush to Redis
    async def _flush_loop(self) -> None:
        while True:
            _raise_if_cancelling()  # flush() retries on Redis errors: never on a cancellation turned into one
            await self._flush_needed.wait()
            wait = max(self._last_flush + self.tick_interval_s, self._flush_retry_at) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._flush_needed.clear()
            self._last_flush = time.monotonic()
            await self.flush()

    def _tick_fields_ok(self, st: MarketState) -> bool:
        """Last line of defence: never send the engine a price it must not trade on."""
        tick = self.markets[st.symbol].tick_size
        return (0 < st.bid <= st.ask <= MAX_PRICE and st.bid % tick == 0 and st.ask % tick == 0
                and 0 < st.mark <= MAX_PRICE and 0 < st.index <= MAX_PRICE
                and abs(st.funding_rate) <= FUNDING_SCALE and st.next_funding_ms >= 0)

    async def flush(self) -> int:
        """Send every dirty market's latest prices. Returns the number of ticks sent."""
        dirty, self.book.dirty = self.book.dirty, set()
        if not dirty:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        prices: dict[str, dict[str, Any]] = {}
        hash_fields: dict[str, bytes] = {}
        for sym in sorted(dirty):
            st = self.book.states[sym]
            if not st.ready:
                continue
            if not self._tick_fields_ok(st):
                self.dropped["invalid_tick"] += 1
                self._warn.warning(f"invalid_tick:{sym}", "refusing to send an invalid tick",
                                   market=sym, tick=st.public())
                continue
            data = messages.encode({
                "type": messages.TICK, "market": sym, "bid": st.bid, "ask": st.ask, "mark": st.mark,
                "index": st.index, "funding_rate": st.funding_rate, "next_funding_ms": st.next_funding_ms,
                "ts": st.ts_ms,
            })
            for stream in self.streams:
                pipe.xadd(stream, {messages.FIELD: data})
            pub = st.public()
            prices[sym] = pub
            hash_fields[sym] = messages.encode(pub)
        if not prices:
            return 0
        pipe.hset(self.keys.prices(), mapping=hash_fields)  # type: ignore[arg-type]
        pipe.publish(self.keys.prices_channel(), messages.encode({"type": "prices", "prices": prices}))
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self.book.dirty |= set(prices)  # resend the latest values once Redis is back
            self._flush_retry_at = time.monotonic() + 0.5
            self._flush_needed.set()
            self._warn.warning("redis_flush", "could not send prices to Redis; retrying",
                               error=f"{exc.__class__.__name__}: {exc}"[:300])
            return 0
        self.flushes += 1
        self.forwarded += len(prices)
        self.stream_entries += len(prices) * self.shards
        return len(prices)

    # ================================================================= staleness / fallback
    async def _watch_loop(self) -> None:
        cfg = self.config
        period = min(0.25, cfg.stale_ms / 4000, cfg.fallback_after_ms / 4000)
        while True:
            _raise_if_cancelling()
            await asyncio.sleep(period)
            now = time.monotonic()
            if (self.mode == "auto" and self.source != SIMULATED
                    and (now - self._last_backpack_good) * 1000 >= cfg.fallback_after_ms):
                error = self.client.last_error if self.client else ""
                why = f"no good Backpack price for {cfg.fallback_after_ms} ms ({error})"
                self._use_simulator(why)
            await self.check_stale(now)

    async def check_stale(self, now: float) -> list[str]:
        stale_s = self.config.stale_ms / 1000
        newly = []
        for sym, st in self.book.states.items():
            since = st.last_good_mono if st.last_good_mono is not None else self._started
            if not st.stale_notified and now - since >= stale_s:
                newly.append(sym)
        if not newly:
            return []
        pipe = self.redis.pipeline(transaction=False)
        flagged: dict[str, dict[str, Any]] = {}
        for sym in newly:
            data = messages.encode({"type": messages.STALE, "market": sym})
            for stream in self.streams:
                pipe.xadd(stream, {messages.FIELD: data})
            st = self.book.states[sym]
            if st.ready:  # the API and the pusher show it too (the next tick clears it)
                flagged[sym] = {**st.public(), "stale": True}
        if flagged:
            pipe.hset(self.keys.prices(), mapping={s: messages.encode(p) for s, p in flagged.items()})
            pipe.publish(self.keys.prices_channel(), messages.encode({"type": "prices", "prices": flagged}))
        try:
            await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn.warning("redis_stale", "could not send stale notices to Redis; retrying",
                               error=f"{exc.__class__.__name__}: {exc}"[:300])
            return []
        for sym in newly:
            st = self.book.states[sym]
            st.stale_notified = True
            self.stale_notices += 1
            age = None if st.last_good_mono is None else int((now - st.last_good_mono) * 1000)
            log.warning("price is STALE: engine told to refuse market orders",
                        extra={"market": sym, "last_good_age_ms": age, "source": self.source,
                               "connected": bool(self.client and self.client.connected)})
        return newly

    # ================================================================= feed status
    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        ages = {sym: (None if st.last_good_mono is None else int((now - st.last_good_mono) * 1000))
                for sym, st in self.book.states.items()}
        client = self.client
        return {
            "source": self.source,
            "mode": self.mode,
            "connected": bool(client and client.connected),
            "last_tick_age_ms": ages,
            "dropped": dict(self.dropped),
            "stale": sorted(s for s, st in self.book.states.items() if st.stale_notified),
            "frames": self.frames,
            "accepted": self.accepted,
            "forwarded": self.forwarded,
            "stream_entries": self.stream_entries,
            "reconnects": max(0, client.connects - 1) if client else 0,
            "source_switches": self.switches,
            "jumps_confirmed": self.book.jumps_confirmed,
            "candles": {"written": self.candle_rows_written, "pending": self.candles.pending,
                        "errors": self.candle_write_errors, "late": self.candles.late,
                        "backfilled": self.backfilled_rows},
            "updated_ms": _wall_ms(),
        }

    async def write_status(self) -> None:
        ttl_ms = max(10_000, 10 * self.config.status_interval_ms)
        try:
            await self.redis.set(self.keys.feed_status(), orjson.dumps(self.status()), px=ttl_ms)
        except (RedisError, OSError) as exc:
            self._warn.warning("redis_status", "could not write feed status",
                               error=f"{exc.__class__.__name__}: {exc}"[:300])

    async def _status_loop(self) -> None:
        while True:
            _raise_if_cancelling()
            await self.write_status()
            await asyncio.sleep(self.config.status_interval_ms / 1000)

    # ================================================================= candles
    async def _ensure_schema(self) -> None:
        if not self._schema_ready:
            await asyncio.to_thread(migrate, self.settings.database_url)
            self._schema_ready = True

    async def write_candles(self) -> int:
        rows = self.candles.drain()
        if not rows:
            return 0
        try:
            await self._ensure_schema()
            await self.store.upsert(rows)
        except (psycopg.Error, OSError) as exc:
            self.candles.requeue(rows)
            self.candle_write_errors += 1
            self._warn.warning("candles_write", "could not write candles to Postgres; will retry",
                               error=f"{exc.__class__.__name__}: {exc}"[:300], pending=self.candles.pending)
            raise
        except BaseException:  # cancelled mid-write (shutdown): the final write sends them again
            self.candles.requeue(rows)
            raise
        self.candle_rows_written += len(rows)
        return len(rows)

    async def _candle_loop(self) -> None:
        base = self.config.candle_flush_ms / 1000
        delay = base
        while True:
            _raise_if_cancelling()
            await asyncio.sleep(delay)
            try:
                await self.write_candles()
                delay = base
            except (psycopg.Error, OSError):
                delay = min(max(delay * 2, base), 30.0)

    # ================================================================= REST: backfill, mark priming
    async def _get_json(self, path: str, params: dict[str, str]) -> Any:
        assert self._http is not None
        url = self.settings.backpack_rest_url.rstrip("/") + path
        async with self._http.get(url, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise KlineError(f"HTTP {resp.status} from {path}: {body[:200]!r}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise KlineError(f"{path} did not return JSON") from None

    async def _prime_marks(self) -> None:
        try:
            body = await self._get_json("/api/v1/markPrices", {})
            now = time.monotonic()
            for upd in parse_mark_prices_rest(body, self.markets, _wall_ms()):
                self.book.prime_mark(upd, now)
        except (aiohttp.ClientError, TimeoutError, KlineError, FrameError) as exc:
            self._warn.warning("mark_prime", "could not read Backpack markPrices",
                               error=f"{exc.__class__.__name__}: {exc}"[:300])

    async def backfill(self) -> int:
        """Fill ``candles_1m`` from Backpack's 1m mark-price klines; never overwrites live rows."""
        cfg = self.config
        end = int(self.clock_s()) // 60 * 60
        since = end - cfg.backfill_minutes * 60
        await self._ensure_schema()
        total = 0
        for market in self.symbols:
            latest = await self.store.latest_start(market)
            start = max(since, latest) if latest is not None else since
            rows: dict[int, CandleRow] = {}
            refused = 0
            page = cfg.backfill_page_minutes * 60
            for page_start in range(start, end + 60, page):
                page_end = min(page_start + page, end + 60)
                body = await self._get_json("/api/v1/klines", dict(kline_params(market, page_start, page_end)))
                got, bad = parse_klines(body, market)
                refused += bad
                for row in got:
                    if start <= row.start_s <= end:
                        rows[row.start_s] = row
            await self.store.upsert_backfill(list(rows.values()))
            total += len(rows)
            log.info("candles backfilled from Backpack klines",
                     extra={"market": market, "rows": len(rows), "refused": refused, "from_s": start, "to_s": end})
        self.backfilled_rows += total
        return total

    async def _backfill(self) -> None:
        try:
            await self.backfill()
            self._backfill_done = True
        except (aiohttp.ClientError, TimeoutError, KlineError, psycopg.Error, OSError) as exc:
            self._warn.warning("backfill", "candle backfill from Backpack failed; will retry on a later connect",
                               error=f"{exc.__class__.__name__}: {exc}"[:300])

    # ================================================================= lifecycle
    async def _load_seed_prices(self) -> None:
        """Last published prices, so a (re)started simulator continues where prices were."""
        try:
            raw = await self.redis.hgetall(self.keys.prices())
        except (RedisError, OSError):
            return
        for k, v in raw.items():
            sym = k.decode() if isinstance(k, bytes) else k
            if sym not in self.markets:
                continue
            try:
                d = orjson.loads(v)
                bid, ask = d["bid"], d["ask"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if type(bid) is int and type(ask) is int and 0 < bid <= ask <= MAX_PRICE:
                self._seed_prices[sym] = (bid + ask) // 2

    async def _supervise(self, name: str, loop_fn: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop_fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                _raise_if_cancelling()
                log.exception("poller loop failed; restarting it", extra={"loop": name})
                await asyncio.sleep(1.0)

    async def run(self, stop: asyncio.Event) -> None:
        self._started = time.monotonic()
        self._last_backpack_good = self._started
        await self._load_seed_prices()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.rest_timeout_s))
        loops = [
            asyncio.create_task(self._supervise("flush", self._flush_loop)),
            asyncio.create_task(self._supervise("status", self._status_loop)),
            asyncio.create_task(self._supervise("watch", self._watch_loop)),
            asyncio.create_task(self._supervise("candles", self._candle_loop)),
        ]
        client_task = asyncio.create_task(self.client.run(stop)) if self.client else None
        log.info("price poller started", extra={
            "mode": self.mode, "markets": self.symbols, "shards": self.shards,
            "backpack_ws_url": self.settings.backpack_ws_url if self.client else None,
            "tick_interval_ms": self.settings.tick_interval_ms, "stale_ms": self.config.stale_ms,
        })
        if self.mode == SIMULATED:
            self._use_simulator("PRICE_SOURCE=simulated")
        try:
            await stop.wait()
        finally:
            await self._shutdown(loops, client_task)

    async def _shutdown(self, loops: list[asyncio.Task[None]], client_task: asyncio.Task[None] | None) -> None:
        sim_task = self._sim_task
        self._stop_simulator()
        if sim_task is not None:
            loops = [*loops, sim_task]
        if client_task is not None:
            try:
                await asyncio.wait_for(client_task, 5.0)
            except (TimeoutError, asyncio.CancelledError):
                client_task.cancel()
        for task in [*loops, *self._background]:
            task.cancel()
        await asyncio.gather(*loops, *self._background, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()
        with contextlib.suppress(Exception):
            await self.write_candles()
        await self.write_status()
        await self.store.close()
        if self._http is not None:
            await self._http.close()
        log.info("price poller stopped", extra={"forwarded": self.forwarded, "frames": self.frames,
                                                "dropped": dict(self.dropped)})


def _raise_if_cancelling() -> None:
    """Re-raise a cancellation that a library turned into an error. psycopg,
    cancelled mid-query, cancels it on the server and re-raises, but leaving
    ``conn.transaction()`` then fails its ROLLBACK on the closed connection, and
    that ``psycopg.Error`` replaces the ``CancelledError`` (a Redis client torn
    down mid-command can do the same). The poller's loops retry on such errors:
    without this check, at the top of every iteration, one would swallow the
    shutdown's ``cancel()`` and run on while ``_shutdown`` waits for it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def run_poller(
    settings: Settings,
    stop: asyncio.Event,
    config: PollerConfig | None = None,
    *,
    schema_ready: bool = False,
) -> None:
    """Run the poller until ``stop`` is set (the engine container's entry point)."""
    redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5,
                                    health_check_interval=30)
    try:
        await PricePoller(settings, config or PollerConfig(), redis, schema_ready=schema_ready).run(stop)
    finally:
        await redis.aclose()


async def _main(settings: Settings, config: PollerConfig, schema_ready: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_poller(settings, stop, config, schema_ready=schema_ready)


def main_poller() -> None:
    """``python -m opex_engine poller``: settings from env, JSON logs, migrations, run."""
    setup_logging("opex-poller")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # its per-connection INFO lines
    try:
        settings = get_settings()
        config = PollerConfig()
    except ValidationError as exc:
        log.error("invalid poller settings", extra={"errors": exc.errors(include_url=False)})
        raise SystemExit(2) from None
    schema_ready = False
    try:
        migrate(settings.database_url)
        schema_ready = True
    except (psycopg.Error, OSError) as exc:
        # candles wait for Postgres; prices must not
        log.error("Postgres migrations failed; candles will retry, prices flow regardless",
                  extra={"error": f"{exc.__class__.__name__}: {exc}"[:300]})
    asyncio.run(_main(settings, config, schema_ready))
