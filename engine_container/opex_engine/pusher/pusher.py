"""The WebSocket pusher: ``python -m opex_engine pusher``.

Subscribes to the poller's prices (``{p}:live:prices``), the engine's account
changes (``{p}:live:accounts``) and the registry's changes (``{p}:ws:changes``),
and posts to API Gateway connections through @connections (poster.py).

Per connection:

- **prices are coalesced**: a tick marks the connection's subscribed markets
  dirty; a frame with every dirty market goes out at most
  ``WS_PRICE_RATE_PER_S`` times a second (API Gateway bills every message, so
  a client gets 2 frames a second, not one per tick per market);
- **one post in flight**: while a post to a connection is outstanding, newer
  prices only update what its next frame will carry, so a slow connection
  skips intermediate frames instead of queueing them, and never holds a
  thread the others need for longer than one post;
- **account changes are data**: balance, equity, margins and every open trade
  at the latest marks (``opex_common.views.account_health``, the code behind
  GET /account) with the engine's events; they are not rate-limited, merged
  if several arrive while a post is in flight, and retried on failure;
- **GoneException** (HTTP 410) drops that connection, from the cache and
  from the registry in Redis.

Posting is boto3 with at most ``WS_PUSH_CONCURRENCY`` posts in flight (in
greenlets on this loop, or in threads: ``WS_PUSH_MODE``, poster.py), with at
most one post per connection queued; finished posts wake the loop once per
batch, not once per post. ``WS_PUSH_PROCESSES`` > 1 runs that many
processes, each owning the connections whose ``crc32(id) % N`` is its index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from opex_common import heap
from opex_common.logs import RateLimitedLog, setup_logging
from opex_common.settings import Settings
from opex_common.signals import StopFlag

from . import frames
from .config import PusherSettings, push_processes, pusher_settings
from .poster import FAILED, GONE, OK, Poster
from .registry import REMOVE, Registration, RegistryReader, parse_change

log = logging.getLogger("opex.pusher")

PRICES, ACCOUNT = "prices", "account"
_MAX_PENDING_EVENTS = 1000
_REMOVED_MEMORY_S = 60.0
GC_GEN0_THRESHOLD = 10_000  # young collections every 10k net allocations, not 700


@dataclass(eq=False, slots=True)
class Conn:
    """What the pusher knows and owes one connection."""

    id: str
    user_id: str
    markets: frozenset[str] = frozenset()
    dirty: set[str] = field(default_factory=set)  # markets with prices not yet sent
    next_price_at: float = 0.0  # loop time the next price frame may go
    in_flight: bool = False
    timer: asyncio.TimerHandle | None = None
    account: dict[str, Any] | None = None  # latest account view not yet sent
    events: list[dict[str, Any]] = field(default_factory=list)
    sending: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
    attempts: int = 0
    retry_at: float = 0.0
    seen_at: float = 0.0  # loop time of the last registry upsert
    gone: bool = False


class Pusher:
    """The fan-out state machine; I/O is the Poster (greenlets or threads) and the callbacks."""

    def __init__(self, settings: PusherSettings, poster: Poster, *, partition: tuple[int, int] = (0, 1),
                 on_gone: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings
        self.markets = settings.markets
        self.interval = 1.0 / settings.ws_price_rate_per_s
        self.poster = poster
        self.partition = partition
        self.on_gone = on_gone
        self.conns: dict[str, Conn] = {}
        self.by_market: dict[str, set[Conn]] = {m: set() for m in self.markets}
        self.by_user: dict[str, set[Conn]] = {}
        self.prices: dict[str, dict[str, Any]] = {}  # validated poller objects (for marks)
        self.wire: dict[str, dict[str, Any]] = {}  # the same, as sent
        self._frames: dict[frozenset[str], bytes] = {}  # serialized once per price update
        self._removed_at: dict[str, float] = {}
        self.stats: Counter[str] = Counter()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warn = RateLimitedLog(log)
        # outcomes of finished posts, appended by the posting threads or greenlets
        self._finished: deque[tuple[Conn, str, float, int, float]] = deque()
        self._wake_pending = False
        # greenlet posts finish on the loop's own thread: no cross-thread wake-up
        self._same_thread = poster.mode == "greenlets"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def owns(self, connection_id: str) -> bool:
        index, count = self.partition
        return count == 1 or zlib.crc32(connection_id.encode()) % count == index

    # ================================================================= registry
    def upsert(self, reg: Registration) -> None:
        cid = reg.connection_id
        if not self.owns(cid):
            return
        conn = self.conns.get(cid)
        if conn is not None and conn.user_id != reg.user_id:
            self.remove(cid)
            conn = None
        if conn is None:
            conn = self.conns[cid] = Conn(cid, reg.user_id)
            self.by_user.setdefault(reg.user_id, set()).add(conn)
            self._removed_at.pop(cid, None)
        conn.seen_at = self.loop.time()
        added, removed = reg.markets - conn.markets, conn.markets - reg.markets
        if not (added or removed):
            return
        for m in removed:
            self.by_market[m].discard(conn)
        for m in added:
            self.by_market[m].add(conn)
        conn.markets = reg.markets
        conn.dirty -= removed
        snapshot = {m for m in added if m in self.wire}  # a new subscriber gets the latest prices at once
        if snapshot:
            conn.dirty |= snapshot
            self._kick(conn)

    def remove(self, connection_id: str) -> None:
        conn = self.conns.pop(connection_id, None)
        if conn is None:
            return
        conn.gone = True
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        for m in conn.markets:
            self.by_market[m].discard(conn)
        users = self.by_user.get(conn.user_id)
        if users is not None:
            users.discard(conn)
            if not users:
                del self.by_user[conn.user_id]
        self._removed_at[connection_id] = self.loop.time()

    def replace_all(self, regs: dict[str, Registration], started_at: float) -> None:
        """Apply a full read of the registry that began at loop time ``started_at``:
        changes notified while it ran win over it."""
        for cid, reg in regs.items():
            if self._removed_at.get(cid, float("-inf")) < started_at:
                self.upsert(reg)
        for cid, conn in list(self.conns.items()):
            if cid not in regs and conn.seen_at < started_at:
                self.remove(cid)
        horizon = self.loop.time() - _REMOVED_MEMORY_S
        self._removed_at = {c: t for c, t in self._removed_at.items() if t >= horizon}

    # ================================================================= input
    def on_prices(self, updates: dict[str, dict[str, Any]]) -> None:
        if not updates:
            return
        for m, p in updates.items():
            self.prices[m] = p
            self.wire[m] = frames.price_wire(p)
        self._frames.clear()
        touched: set[Conn] = set()
        for m in updates:
            for conn in self.by_market[m]:
                conn.dirty.add(m)
                touched.add(conn)
        for conn in touched:
            self._kick(conn)

    def on_accounts(self, updates: list[frames.AccountUpdate]) -> None:
        for u in updates:
            conns = self.by_user.get(u.user_id)
            if not conns:
                continue
            try:
                view = frames.account_view(u, self.prices, self.markets)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                self.stats["bad_accounts"] += 1
                self._warn.warning("account_view", "could not compute an account view; update skipped",
                                   user_id=u.user_id, error=repr(exc)[:200])
                continue
            for conn in list(conns):
                conn.account = view
                conn.events.extend(u.events)
                if len(conn.events) > _MAX_PENDING_EVENTS:
                    self.stats["events_dropped"] += len(conn.events) - _MAX_PENDING_EVENTS
                    del conn.events[:-_MAX_PENDING_EVENTS]
                self._kick(conn)

    # ================================================================= sending
    def _kick(self, conn: Conn) -> None:
        """Send what is due to ``conn`` now, or arrange to be called when it is."""
        if conn.in_flight or conn.gone:
            return
        now = self.loop.time()
        if conn.account is not None and now >= conn.retry_at:
            self._send_account(conn)
            return
        due = float("inf")
        if conn.dirty:
            if now >= conn.next_price_at:
                self._send_prices(conn, now)
                return
            due = conn.next_price_at
        if conn.account is not None:
            due = min(due, conn.retry_at)
        if due != float("inf") and conn.timer is None:
            conn.timer = self.loop.call_at(due, self._on_timer, conn)

    def _on_timer(self, conn: Conn) -> None:
        conn.timer = None
        self._kick(conn)

    def _send_prices(self, conn: Conn, now: float) -> None:
        key = frozenset(conn.dirty)
        conn.dirty.clear()
        data = self._frames.get(key)
        if data is None:
            data = self._frames[key] = frames.prices_frame(self.wire, key)
        conn.next_price_at = now + self.interval
        self._post(conn, data, PRICES)

    def _send_account(self, conn: Conn) -> None:
        assert conn.account is not None
        conn.sending = (conn.account, conn.events)
        conn.account, conn.events = None, []
        self._post(conn, frames.account_frame(*conn.sending), ACCOUNT)

    def _post(self, conn: Conn, data: bytes, kind: str) -> None:
        conn.in_flight = True
        self.in_flight += 1
        self._idle.clear()
        submitted = time.monotonic()
        try:
            self.poster.submit(self._post_job, conn, data, kind, submitted)
        except RuntimeError:  # the pool is shut down: stopping
            conn.in_flight = False
            self._done_one()

    def _post_job(self, conn: Conn, data: bytes, kind: str, submitted: float) -> None:
        """In a posting thread or greenlet: post, then hand the outcome to the
        loop. Outcomes are batched: one wake-up of the loop for however many
        posts finished meanwhile (a tick fans out to every connection at once)."""
        try:
            outcome, started = self.poster.post(conn.id, data)
        except BaseException:  # pragma: no cover - post() never raises
            outcome, started = FAILED, submitted
        self._finished.append((conn, kind, submitted, outcome, started))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                if self._same_thread:
                    self.loop.call_soon(self._take_finished)
                else:
                    self.loop.call_soon_threadsafe(self._take_finished)
            except RuntimeError:  # the loop is closed: stopping
                self._wake_pending = False

    def _take_finished(self) -> None:
        self._wake_pending = False  # before draining: a post finishing meanwhile wakes the loop again
        finished = self._finished
        while finished:
            self._posted(*finished.popleft())

    def _done_one(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def _posted(self, conn: Conn, kind: str, submitted: float, outcome: int, started: float) -> None:
        conn.in_flight = False
        try:
            if kind == PRICES:
                # the rate counts from when the frame really left (it may have
                # waited for a posting slot), so the client never gets two within 1/rate
                conn.next_price_at += max(0.0, started - submitted)
            if outcome == OK:
                self.stats[f"{kind}_frames"] += 1
                if kind == ACCOUNT:
                    conn.sending, conn.attempts = None, 0
            elif outcome == GONE:
                self._gone(conn)
                return
            else:
                self.stats[f"{kind}_failed"] += 1
                self._warn.warning("post_failed", "post to a connection failed",
                                   kind=kind, error=self.poster.last_error)
                if kind == ACCOUNT:
                    self._retry_account(conn)
            self._kick(conn)
        finally:
            # after the follow-up post (if due) is counted: drain() must not see
            # zero in flight between a post and the newer frame that replaces it
            self._done_one()

    def _retry_account(self, conn: Conn) -> None:
        assert conn.sending is not None
        view, events = conn.sending
        conn.sending = None
        conn.attempts += 1
        if conn.attempts > self.settings.ws_account_retries:
            conn.attempts = 0
            self.stats["account_dropped"] += 1
            return
        if conn.account is None:  # a newer view, if any, wins; the events keep their order
            conn.account = view
        conn.events = events + conn.events
        conn.retry_at = self.loop.time() + 0.2 * conn.attempts

    def _gone(self, conn: Conn) -> None:
        if conn.gone:
            return
        self.remove(conn.id)
        self.stats["gone"] += 1
        if self.on_gone is not None:
            self.on_gone(conn.id, conn.user_id)

    async def drain(self, timeout: float) -> bool:
        """Wait for the posts in flight; False if some were still out after ``timeout``."""
        deadline = self.loop.time() + timeout
        while self.in_flight:  # re-checked: a waiter woken by set() may run after a new post began
            remaining = deadline - self.loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._idle.wait(), remaining)
            except TimeoutError:
                return False
        return True


# ===================================================================== the service
class PusherService:
    """The pusher with its Redis inputs: pub/sub, the registry, Gone clean-up, stats."""

    def __init__(self, settings: PusherSettings, *, partition: tuple[int, int] = (0, 1),
                 poster: Poster | None = None) -> None:
        self.settings = s = settings
        self.keys = s.keys
        self.redis = aioredis.Redis.from_url(s.redis_url, socket_connect_timeout=5, socket_keepalive=True,
                                             health_check_interval=30,
                                             client_name=f"{s.key_prefix}:pusher:{partition[0]}")
        self.reader = RegistryReader(self.redis, s.keys, s.markets)
        self.poster = poster or Poster(s)
        self.pusher = Pusher(s, self.poster, partition=partition, on_gone=self._on_gone)
        self._gone: list[tuple[str, str]] = []
        self._gone_ready = asyncio.Event()
        self._warn = RateLimitedLog(log)
        self._channels = {
            s.keys.prices_channel().encode(): self._on_prices,
            s.keys.accounts_channel().encode(): self._on_accounts,
            self.reader.channel.encode(): self._on_change,
        }
        self._upserts: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ pub/sub
    def _on_prices(self, data: bytes) -> None:
        updates, bad = frames.parse_prices(data, self.pusher.markets)
        if bad:
            self.pusher.stats["bad_prices"] += bad
            self._warn.warning("bad_prices", "price entries refused (malformed or unknown market)", count=bad)
        self.pusher.on_prices(updates)

    def _on_accounts(self, data: bytes) -> None:
        updates, bad = frames.parse_accounts(data, self.pusher.markets)
        if bad:
            self.pusher.stats["bad_accounts"] += bad
            self._warn.warning("bad_accounts", "account entries refused (malformed)", count=bad)
        self.pusher.on_accounts(updates)

    def _on_change(self, data: bytes) -> None:
        change = parse_change(data)
        if change is None:
            self.pusher.stats["bad_changes"] += 1
            return
        op, cid = change
        if op == REMOVE:
            self.pusher.remove(cid)
        elif self.pusher.owns(cid):
            task = asyncio.ensure_future(self._upsert(cid))
            self._upserts.add(task)
            task.add_done_callback(self._upserts.discard)

    async def _upsert(self, cid: str) -> None:
        try:
            reg = await self.reader.load(cid)
        except (RedisError, OSError):
            return  # the next full read picks it up
        if reg is not None:
            self.pusher.upsert(reg)
        else:
            self.pusher.remove(cid)

    async def _listen(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._channels)
                # subscribed first, then read the state: nothing falls in between
                await self._resync()
                backoff = 0.5
                while not stop.is_set():
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None and msg.get("type") == "message":
                        handler = self._channels.get(msg["channel"])
                        if handler is not None:
                            handler(msg["data"])
            except (RedisError, OSError) as exc:
                self._warn.warning("redis", "Redis unavailable; reconnecting", error=repr(exc)[:300])
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()

    async def _resync(self) -> None:
        """The latest prices and the whole registry (at start and after a reconnect)."""
        raw = await self.redis.hgetall(self.keys.prices())
        self.pusher.on_prices(frames.parse_price_hash(raw, self.pusher.markets))
        await self._reload()

    async def _reload(self) -> None:
        started = self.pusher.loop.time()
        regs, pruned = await self.reader.load_all(self.pusher.owns)
        self.pusher.replace_all(regs, started)
        if pruned:
            self.pusher.stats["expired_pruned"] += pruned

    async def _refresh_loop(self, stop: asyncio.Event) -> None:
        while not await _sleep_or_stop(stop, self.settings.ws_registry_refresh_s):
            try:
                await self._reload()
            except (RedisError, OSError) as exc:
                self._warn.warning("registry", "could not read the connection registry", error=repr(exc)[:300])

    # ------------------------------------------------------------------ Gone clean-up
    def _on_gone(self, cid: str, uid: str) -> None:
        self._gone.append((cid, uid))
        self._gone_ready.set()

    async def _gone_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self._gone:
            if not self._gone:
                self._gone_ready.clear()
                waiter = asyncio.ensure_future(self._gone_ready.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                continue
            batch, self._gone = self._gone, []
            try:
                await self.reader.drop(batch)
            except (RedisError, OSError) as exc:
                # the entries expire anyway; the full read prunes the id set
                self._warn.warning("drop", "could not remove gone connections", error=repr(exc)[:300])
                if stop.is_set():
                    return
                await _sleep_or_stop(stop, 1.0)

    # ------------------------------------------------------------------ stats
    async def _stats_loop(self, stop: asyncio.Event) -> None:
        last = time.monotonic()
        cpu = time.process_time()
        while not await _sleep_or_stop(stop, self.settings.ws_stats_interval_s):
            self.log_stats(time.monotonic() - last, time.process_time() - cpu)
            last, cpu = time.monotonic(), time.process_time()

    def log_stats(self, elapsed: float, cpu_s: float) -> None:
        p = self.pusher
        stats = dict(p.stats)
        p.stats.clear()
        posts, post_s = self.poster.posts, self.poster.post_seconds
        self.poster.posts, self.poster.post_seconds = 0, 0.0
        log.info("pusher stats", extra={
            "connections": len(p.conns), "users": len(p.by_user), "in_flight": p.in_flight,
            "interval_s": round(elapsed, 1), "cpu_pct": round(100 * cpu_s / max(elapsed, 1e-9), 1),
            "posts": posts, "post_ms_avg": round(1000 * post_s / posts, 2) if posts else None, **stats})

    # ------------------------------------------------------------------ run
    async def run(self, stop: asyncio.Event) -> None:
        log.info("pusher starting", extra={"callback_url": self.settings.ws_callback_url,
                                           "rate_per_s": self.settings.ws_price_rate_per_s,
                                           "mode": self.poster.mode,
                                           "concurrency": self.settings.ws_push_concurrency,
                                           "partition": list(self.pusher.partition)})
        await asyncio.to_thread(self.poster.warm_up)
        # botocore's service model, the client and the connections live as long
        # as the process: out of the collector's sight, so a burst of posts
        # (hundreds of short-lived objects each) triggers no full collection
        # that walks them; and glibc keeps what a burst frees for the next one
        heap.settle(GC_GEN0_THRESHOLD, collect=True)
        heap.hold_freed_memory()
        tasks = [asyncio.ensure_future(coro) for coro in (
            self._listen(stop), self._refresh_loop(stop), self._gone_loop(stop), self._stats_loop(stop))]
        try:
            await stop.wait()
        finally:
            stop.set()
            await self.pusher.drain(self.settings.ws_post_timeout_s + 1)
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in self._upserts:
                t.cancel()
            self.poster.close()
            await self.redis.aclose()
            log.info("pusher stopped")


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; True as soon as ``stop`` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def run_pusher(settings: Settings, stop: asyncio.Event, *, partition: tuple[int, int] = (0, 1)) -> None:
    """Run one pusher (one partition of the connections) until ``stop`` is set."""
    await PusherService(pusher_settings(settings), partition=partition).run(stop)


def _run_process(partition: tuple[int, int]) -> None:
    settings = PusherSettings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_pusher(settings, stop, partition=partition)

    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())


def _child(index: int, count: int) -> None:
    setup_logging(f"opex-pusher-{index}")
    _run_process((index, count))


def main_pusher() -> None:
    setup_logging("opex-pusher")
    count = push_processes(PusherSettings())
    if count == 1:
        _run_process((0, 1))
        return
    # One process per partition; this one forwards signals and stops all of
    # them if one dies (the container restarts the whole pusher).
    ctx = multiprocessing.get_context("spawn")
    children = [ctx.Process(target=_child, args=(i, count), name=f"pusher-{i}") for i in range(count)]
    stopping = StopFlag()
    for child in children:
        child.start()
    code = 0
    while not stopping:
        if any(c.exitcode is not None for c in children):
            log.error("a pusher process exited; stopping the others",
                      extra={"exit_codes": [c.exitcode for c in children]})
            code = 1
            break
        time.sleep(0.5)
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(30)
        if child.is_alive():
            child.kill()
    if code:
        raise SystemExit(code)
