"""The history writer: consumes every shard's event stream and keeps the
trading history in Postgres (closed trades, ledger, funding, insurance fund).

- Consumer group ``history`` (keys.HISTORY_GROUP) on each ``{p}:events:{shard}``,
  created at id 0 so the first writer also records what happened before it ran.
- Batches: one XREADGROUP of up to ``HISTORY_BATCH`` entries (each entry holds
  the events of one engine batch), one Postgres transaction, then XACK. A crash
  between commit and XACK re-delivers the batch; the inserts are idempotent
  (event id primary keys, ON CONFLICT DO NOTHING), so nothing is doubled.
- Restart: first the entries still pending for this consumer (id "0"), then
  anything abandoned by another consumer (XAUTOCLAIM), then new entries (">").
- Postgres down: the batch is retried with backoff; nothing is acknowledged, so
  events wait in the stream. Trading is not involved: the engine only XADDs.
- Trimming: after commits, at most once per second per stream, entries below
  what *every* consumer group on the stream has been delivered and acknowledged
  (and older than ``HISTORY_KEEP_S``) are removed with XTRIM MINID.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import psycopg
import redis.asyncio as aioredis
from pydantic import Field
from redis.exceptions import RedisError, ResponseError

from opex_common.keys import Keys
from opex_common.logs import RateLimitedLog, setup_logging
from opex_common.migrations import migrate
from opex_common.settings import Settings

from . import store
from .rows import RowBuilder, Rows, decode_entry

log = logging.getLogger("opex.history")

GROUP = Keys.HISTORY_GROUP
FIELD = b"d"
Entry = tuple[bytes, dict[bytes, bytes]]


class HistorySettings(Settings):
    history_batch: int = Field(default=500, ge=1, le=100_000)  # stream entries per transaction
    history_block_ms: int = Field(default=1000, ge=1, le=60_000)
    history_consumer: str = Field(default="history-writer", pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    history_keep_s: int = Field(default=300, ge=0)  # keep this much of the stream for readers without a group
    history_claim_idle_ms: int = Field(default=60_000, ge=1000)  # claim another consumer's entries after this
    history_max_backoff_s: float = Field(default=5.0, gt=0)


def _sid(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class HistoryWriter:
    def __init__(self, settings: HistorySettings, redis: aioredis.Redis) -> None:
        self.settings = settings
        self.redis = redis
        keys = settings.keys
        self.streams = [keys.event_stream(shard) for shard in range(settings.engine_shards)]
        self.builders = {stream: RowBuilder(shard) for shard, stream in enumerate(self.streams)}
        self.dead_letter = {stream: f"{stream}:dead" for stream in self.streams}
        # "0": this consumer's pending entries first (after a restart); ">" once they are done
        self.cursor: dict[str, str] = {stream: "0" for stream in self.streams}
        self.consumer = settings.history_consumer
        self._conn: psycopg.AsyncConnection | None = None
        self._migrated = False
        self._last_trim: dict[str, float] = {}
        self._last_claim = 0.0
        self._warn = RateLimitedLog(log)
        self.stats = {"entries": 0, "events": 0, "rows": 0, "batches": 0, "skipped": 0, "db_errors": 0}

    # ------------------------------------------------------------------ redis side
    async def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def claim_abandoned(self) -> None:
        """Take over entries another consumer read but never acknowledged (a
        writer that died under another name: containers get new host names)."""
        self._last_claim = time.monotonic()
        for stream in self.streams:
            start = "0-0"
            while True:
                # (redis-py drops the cursor from a JUSTID reply: fetch the entries)
                res = await self.redis.xautoclaim(stream, GROUP, self.consumer, self.settings.history_claim_idle_ms,
                                                  start_id=start, count=500)
                start = res[0].decode() if isinstance(res[0], bytes) else res[0]
                if res[1]:
                    self.cursor[stream] = "0"  # re-read our pending list, which now holds them
                if start == "0-0":
                    break

    async def read(self) -> list[tuple[str, list[Entry]]]:
        count = self.settings.history_batch
        backlog: dict[Any, Any] = {s: c for s, c in self.cursor.items() if c != ">"}
        if backlog:
            got: Any = await self.redis.xreadgroup(GROUP, self.consumer, backlog, count=count)
            out = []
            for stream_b, entries in got or []:
                stream = stream_b.decode() if isinstance(stream_b, bytes) else stream_b
                if entries:
                    self.cursor[stream] = entries[-1][0].decode()
                    out.append((stream, entries))
            for stream in backlog:
                if not any(s == stream for s, _ in out):
                    self.cursor[stream] = ">"
            if out:
                return out
        fresh: dict[Any, Any] = {s: ">" for s in self.streams}
        got = await self.redis.xreadgroup(GROUP, self.consumer, fresh, count=count,
                                          block=self.settings.history_block_ms)
        return [(s.decode() if isinstance(s, bytes) else s, entries) for s, entries in got or [] if entries]

    async def ack(self, stream: str, ids: list[bytes]) -> None:
        await self.redis.xack(stream, GROUP, *ids)

    async def trim(self, stream: str) -> None:
        """XTRIM MINID below the lowest entry some consumer group still needs."""
        now = time.monotonic()
        if now - self._last_trim.get(stream, 0.0) < 1.0:
            return
        self._last_trim[stream] = now
        floor: tuple[int, int] | None = None
        for group in await self.redis.xinfo_groups(stream):
            low = group["last-delivered-id"]
            if group["pending"]:
                summary = await self.redis.xpending(stream, group["name"])
                if summary.get("min"):
                    low = summary["min"]
            sid = _sid(low)
            floor = sid if floor is None or sid < floor else floor
        if floor is None or floor == (0, 0):
            return
        keep = (int(time.time() * 1000) - self.settings.history_keep_s * 1000, 0)
        minid = min(floor, keep)
        if minid > (0, 0):
            await self.redis.xtrim(stream, minid=f"{minid[0]}-{minid[1]}", approximate=False)

    # ------------------------------------------------------------------ postgres side
    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            if not self._migrated:
                await asyncio.to_thread(migrate, self.settings.database_url)
                self._migrated = True
            self._conn = await psycopg.AsyncConnection.connect(self.settings.database_url, connect_timeout=5,
                                                               autocommit=True)
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                await self._conn.close()
            self._conn = None

    async def write(self, rows: Rows, stop: asyncio.Event) -> bool:
        """Commit ``rows``; retry with backoff while Postgres is unavailable.
        False if asked to stop first (nothing acknowledged: the events wait)."""
        delay = 0.1
        while True:
            try:
                conn = await self._connection()
                await store.write(conn, rows)
                return True
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                self.stats["db_errors"] += 1
                self._warn.warning("db", "Postgres unavailable; events wait in the stream",
                                   reason=f"{exc.__class__.__name__}: {exc}".strip()[:300], retry_in_s=delay)
                await self._drop_connection()
            if await _wait(stop, delay):
                return False
            delay = min(delay * 2, self.settings.history_max_backoff_s)

    async def _write_one_by_one(self, batch: list[tuple[str, list[Entry]]], stop: asyncio.Event) -> bool:
        """A batch Postgres refused as data (not as an outage): write entry by
        entry and set aside the entries it refuses, so one bad event cannot
        stall the history of everyone."""
        for stream, entries in batch:
            for entry_id, fields in entries:
                rows = Rows()
                self.builders[stream].add(rows, decode_entry(fields.get(FIELD)))
                try:
                    if not await self.write(rows, stop):
                        return False
                except psycopg.Error as exc:
                    log.error("history rows refused by Postgres; entry moved to the dead-letter stream",
                              extra={"stream": stream, "entry_id": entry_id.decode(), "reason": str(exc)[:300]})
                    await self.redis.xadd(self.dead_letter[stream], {FIELD: fields.get(FIELD, b""),
                                                                     b"error": str(exc)[:500].encode()})
                    await self._drop_connection()
        return True

    # ------------------------------------------------------------------ loop
    async def step(self, stop: asyncio.Event) -> bool:
        """Read, write, acknowledge one batch. False when stopping mid-way."""
        if time.monotonic() - self._last_claim > self.settings.history_claim_idle_ms / 1000:
            await self.claim_abandoned()
        batch = await self.read()
        if not batch:
            return True
        rows = Rows()
        for stream, entries in batch:
            builder = self.builders[stream]
            for _, fields in entries:
                builder.add(rows, decode_entry(fields.get(FIELD)))
        if rows:
            try:
                if not await self.write(rows, stop):
                    return False
            except psycopg.Error:
                await self._drop_connection()
                if not await self._write_one_by_one(batch, stop):
                    return False
        for stream, entries in batch:
            await self.ack(stream, [entry_id for entry_id, _ in entries])
            self.stats["entries"] += len(entries)
        self.stats["events"] += rows.events
        self.stats["rows"] += len(rows)
        self.stats["skipped"] += rows.skipped
        self.stats["batches"] += 1
        for stream, _ in batch:
            await self.trim(stream)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        ready = False
        last_report = time.monotonic()
        while not stop.is_set():
            try:
                if not ready:
                    await self.ensure_groups()
                    await self.claim_abandoned()
                    ready = True
                    log.info("history writer running", extra={"streams": self.streams, "consumer": self.consumer})
                if not await self.step(stop):
                    break
                delay = 0.1
            except (RedisError, OSError) as exc:
                self._warn.warning("redis", "Redis unavailable; retrying",
                                   reason=f"{exc.__class__.__name__}: {exc}"[:300], retry_in_s=delay)
                ready = False
                # entries delivered on the lost connection are pending for this
                # consumer: re-read its pending list first instead of waiting
                # for them to be claimed as abandoned
                self.cursor = {stream: "0" for stream in self.streams}
                if await _wait(stop, delay):
                    break
                delay = min(delay * 2, self.settings.history_max_backoff_s)
            if time.monotonic() - last_report >= 60:
                last_report = time.monotonic()
                log.info("history writer stats", extra=dict(self.stats))
        await self._drop_connection()
        log.info("history writer stopped", extra=dict(self.stats))


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


def _history_settings(settings: Settings) -> HistorySettings:
    if isinstance(settings, HistorySettings):
        return settings
    return HistorySettings(**settings.model_dump())


async def run_history_writer(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set."""
    hs = _history_settings(settings)
    redis = aioredis.Redis.from_url(hs.redis_url, socket_connect_timeout=2,
                                    socket_timeout=hs.history_block_ms / 1000 + 5, health_check_interval=30,
                                    client_name=f"{hs.key_prefix}:history")
    try:
        await HistoryWriter(hs, redis).run(stop)
    finally:
        await redis.aclose()


def main_history() -> None:
    """``python -m opex_engine history``: run until SIGTERM / SIGINT."""
    setup_logging("opex-history")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_history_writer(HistorySettings(), stop)

    asyncio.run(main())


__all__ = ["HistorySettings", "HistoryWriter", "main_history", "run_history_writer"]
