"""The I/O shell around one engine shard.

Loop: XREADGROUP a batch from the shard's input stream -> apply each entry to
the pure engine -> one MULTI/EXEC that writes read models, replies, events,
live account updates and the XACK. Under load each round trip also reads the
batch after next, and the engine applies the batch it holds while Redis works
(see ``_step``). No database call ever runs inside the loop.

Boot: load the newest valid snapshot from MongoDB, point the consumer group at
the snapshot's last id (XGROUP SETID) and let the loop replay everything after
it; replies and events of replayed entries are re-sent with the same ids, and
their consumers deduplicate by id.

Snapshots: every SNAPSHOT_INTERVAL_S the process forks; the child has a
consistent copy-on-write image of the state, serializes it and writes it to
MongoDB while the parent keeps trading (the stall is the fork itself, short
because the heap is kept on huge pages: ``_start_collapse``). When
the child reports success the stream is trimmed below the oldest snapshot
kept. On SIGTERM the loop finishes its batch and snapshots in-process.

Garbage collection: the state is a large, long-lived heap of objects without
reference cycles (accounts, trades, the replies kept for deduplication). Left
to the defaults, CPython's full collections traverse all of it again and
again: a pause that grows with the state, on the hot path. ``settle_heap``
moves everything alive into the permanent generation (``gc.freeze``) once the
boot replay is done and before every snapshot fork (which also spares the child
copying pages only to update GC headers); collections then only look at what
was allocated since.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis as redis_lib
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from opex_common import heap
from opex_common import messages as m
from opex_common.keys import Keys
from opex_common.logs import RateLimitedLog
from opex_common.settings import Settings

from .core.engine import Engine
from .core.state import EngineState
from .snapshots import SnapshotStore, encode_state, safe_prune

GC_THRESHOLDS = (10_000, 20, 20)  # young collections every 10k net allocations, not 700


def _rss_mb() -> float | None:
    """Resident memory of this process (what a snapshot fork has to map)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None


def settle_heap() -> None:
    """Freeze the live heap out of the collector's sight (see the module
    docstring). No full collection first: on a large heap that is the very
    pause this avoids, and the engine makes almost no garbage cycles
    (acyclic state; reference counting frees the rest at once)."""
    heap.settle(GC_THRESHOLDS[0], older=GC_THRESHOLDS[1:])

log = logging.getLogger("opex.engine")


_FIELD = m.FIELD.encode()


def _data_field(fields: Any) -> bytes | None:
    """The ``d`` field of a stream entry's flat [field, value, ...] list."""
    if type(fields) is not list:
        return None
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == _FIELD:
            value = fields[i + 1]
            return value if type(value) is bytes else None
    return None


def _entries(resp: Any) -> list[Any]:
    """The entries of an XREADGROUP reply of one stream: ``{stream: entries}``
    in RESP3, ``[[stream, entries]]`` in RESP2, None when nothing came."""
    if not resp:
        return []
    if type(resp) is dict:
        return next(iter(resp.values())) or []
    return resp[0][1] or []


def pack_commands(cmds: list[tuple[Any, ...]]) -> bytes:
    """Commands in the Redis protocol (RESP), one buffer."""
    out: list[bytes] = []
    add = out.append
    for cmd in cmds:
        add(b"*%d\r\n" % len(cmd))
        for arg in cmd:
            if type(arg) is str:
                arg = arg.encode()
            elif type(arg) is int:
                arg = b"%d" % arg
            add(b"$%d\r\n" % len(arg))
            add(arg)
            add(b"\r\n")
    return b"".join(out)


def with_account(reply_json: bytes, view_json: bytes) -> bytes:
    """``reply_json`` with ``"account": view_json`` added to its ``data``
    object. A reply is ``{..., "data": {...}}`` with ``data`` last
    (messages.reply), so its last two bytes close ``data`` and the reply."""
    if reply_json.endswith(b'"data":{}}'):
        return b"%b\"account\":%b}}" % (reply_json[:-2], view_json)
    return b"%b,\"account\":%b}}" % (reply_json[:-2], view_json)

REPLY_TTL_S = 60
STATUS_TTL_S = 30
CONSUMER = "engine"
GROUP = Keys.ENGINE_GROUP
# LPUSH each reply onto its own list and let it expire if nobody BLPOPs it
# (a request that timed out, or a reply re-sent during replay).
PUSH_REPLIES_LUA = """
local ttl = ARGV[#KEYS + 1]
for i = 1, #KEYS do
  redis.call('LPUSH', KEYS[i], ARGV[i])
  redis.call('EXPIRE', KEYS[i], ttl)
end
return #KEYS
"""


@dataclass
class _Snapshotting:
    pid: int
    fd: int
    last_id: str
    started: float


@dataclass
class Stats:
    applied: int = 0
    batches: int = 0
    malformed: int = 0
    snapshots: int = 0
    snapshot_failures: int = 0
    last_fork_ms: float = 0.0
    max_fork_ms: float = 0.0
    boot_replayed: int = 0
    boot_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class EngineRuntime:
    def __init__(self, settings: Settings, shard: int, *, snapshots: bool = True) -> None:
        if not 0 <= shard < settings.engine_shards:
            raise ValueError(f"shard {shard} is outside 0..{settings.engine_shards - 1}")
        self.settings = settings
        self.shard = shard
        self.keys = settings.keys
        self.stream = self.keys.input_stream(shard)
        self.events_stream = self.keys.event_stream(shard)
        self.redis = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5,
                                             client_name=f"{settings.key_prefix}:engine:{shard}")
        self.snapshots_enabled = snapshots and bool(settings.mongo_url)
        self.engine: Engine
        self.stats = Stats()
        self._stop = False
        self._ready = False
        self._child: _Snapshotting | None = None
        self._last_snapshot_at = time.monotonic()
        self._last_status_at = 0.0
        self._bad = RateLimitedLog(log)
        # batches' output applied in memory but not yet confirmed by Redis, oldest first
        self._pending: list[list[tuple[Any, ...]]] = []
        self._resync = False
        self._conn: Any = None  # the loop's own connection (see _send)
        self._collapsing: threading.Thread | None = None
        self._huge_pages = settings.engine_huge_pages

    # ------------------------------------------------------------------ boot
    def boot(self) -> None:
        t0 = time.monotonic()
        # Loading and replaying build the state: nothing of it is garbage, so
        # no collection until ready (settle_heap then freezes it all).
        gc.disable()
        heap.hold_freed_memory()  # a batch's output buffers reuse the last batch's pages
        state: EngineState | None = None
        if self.snapshots_enabled:
            store = SnapshotStore(self.settings.mongo_url, self.settings.mongo_db, self.settings.key_prefix)
            try:
                loaded = store.load_latest(self.shard)
            finally:
                store.close()  # never carry a pymongo client across fork()
            if loaded is not None:
                state, info = loaded
                log.info("snapshot loaded", extra={"shard": self.shard, "snapshot": info.snap_id,
                                                   "last_id": info.last_id, "bytes": info.size})
            else:
                log.warning("no usable snapshot; rebuilding from the whole stream", extra={"shard": self.shard})
        if state is None:
            state = EngineState(self.shard)
        self.engine = Engine(
            self.settings.markets, state, shard=self.shard,
            price_stale_ms=self.settings.price_stale_ms, dedup_window_ms=self.settings.dedup_window_ms,
        )
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # Re-deliver everything after the snapshot (the state lost anything later).
        self.redis.xgroup_setid(self.stream, GROUP, id=state.last_id)
        settle_heap()  # the snapshot's state: alive until replaced
        self._boot_started = t0
        self._status("replaying")

    # ------------------------------------------------------------------ main loop
    def request_stop(self, *_: Any) -> None:
        self._stop = True

    def run(self) -> None:
        backoff = 0.05
        while not self._stop:
            try:
                self._step()
                backoff = 0.05
            except (RedisConnectionError, TimeoutError, OSError) as exc:
                # Whatever Redis delivered on the lost connection may not have
                # reached us: re-point the group at the last entry we applied
                # (as boot does) once the pending output is published.
                self._resync = True
                log.error("redis unavailable; retrying", extra={"shard": self.shard, "error": str(exc),
                                                               "retry_in_s": backoff})
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
        self.shutdown()

    def _step(self) -> None:
        """Read what came, apply it, publish its output; then housekeeping.

        Within a burst the Redis round trips overlap with the engine's work:
        each round trip carries one batch's output (a MULTI/EXEC) and the read
        of the batch after next (a non-blocking XREADGROUP behind it, so Redis
        publishes the output before it reads); while Redis runs them, the
        engine applies the batch it already holds. Output is published in the
        order it was applied; anything applied but not confirmed stays in
        ``_pending`` and is published first after a failure, and the group is
        re-pointed at the last entry applied, so what was read but not applied
        is delivered again."""
        if self._pending:
            self._flush()  # output applied in memory is published before anything else is read
        if self._resync:
            self.redis.xgroup_setid(self.stream, GROUP, id=self.engine.state.last_id)
            self._resync = False
        batch = self.settings.engine_batch
        first = self._read(2 * batch, self.settings.engine_block_ms)
        caught_up = len(first) < 2 * batch
        todo = [first[i : i + batch] for i in range(0, len(first), batch)]
        outputs: list[list[tuple[Any, ...]]] = []
        applied = 0
        deadline = time.monotonic() + 0.1  # then housekeeping (snapshots, status)
        try:
            if todo:
                applied += len(todo[0])
                outputs.append(self.process(todo.pop(0)))
            while outputs:
                out = outputs.pop(0)
                self._pending.append(out)  # from here until Redis confirms it
                read = not caught_up and len(todo) < 2 and time.monotonic() < deadline
                self._send(out, read_count=batch if read else 0)
                if todo:  # overlaps with Redis running the round trip
                    applied += len(todo[0])
                    outputs.append(self.process(todo.pop(0)))
                more = self._receive(out, read)
                self._pending.pop(0)
                if read:
                    caught_up = len(more) < batch
                    if more:
                        todo.append(more)
                if not outputs and todo:
                    applied += len(todo[0])
                    outputs.append(self.process(todo.pop(0)))
        except BaseException:
            # applied but unpublished output stays pending, in order; entries
            # read but not applied are delivered again after the resync
            self._pending.extend(outputs)
            raise
        if not self._ready:
            self.stats.boot_replayed += applied
            if caught_up:
                self._publish_read_models()
                self._ready = True
                settle_heap()  # what the replay added
                gc.enable()
                self._start_collapse()
                self.stats.boot_seconds = time.monotonic() - self._boot_started
                log.info("engine ready", extra={"shard": self.shard, "replayed": self.stats.boot_replayed,
                                               "boot_seconds": round(self.stats.boot_seconds, 3),
                                               "accounts": len(self.engine.state.accounts)})
                self._status("ready")
        self._housekeeping()

    # ------------------------------------------------------------------ the loop's Redis I/O
    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.redis.connection_pool.get_connection()
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()  # its replies may be half read: never reuse it
            self.redis.connection_pool.release(conn)

    def _read(self, count: int, block_ms: int) -> list[Any]:
        """XREADGROUP of up to ``count`` new entries, waiting up to ``block_ms``."""
        conn = self._connection()
        try:
            conn.send_packed_command([pack_commands([("XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", count,
                                             "BLOCK", block_ms, "STREAMS", self.stream, ">")])], check_health=False)
            return _entries(conn.read_response())
        except BaseException:
            self._drop_connection()
            raise

    def _send(self, cmds: list[tuple[Any, ...]], read_count: int = 0) -> None:
        """Write one batch's output as MULTI/EXEC, and behind it (if
        ``read_count``) a non-blocking XREADGROUP; the replies are read by
        ``_receive``. Packed here: redis-py's pipeline costs more than the
        commands."""
        tail: list[tuple[Any, ...]] = [("EXEC",)]
        if read_count:
            tail.append(("XREADGROUP", "GROUP", GROUP, CONSUMER, "COUNT", read_count, "STREAMS", self.stream, ">"))
        conn = self._connection()
        try:
            conn.send_packed_command([pack_commands([("MULTI",), *cmds, *tail])], check_health=False)
        except BaseException:
            self._drop_connection()
            raise

    def _receive(self, cmds: list[tuple[Any, ...]], read: bool) -> list[Any]:
        """The replies of ``_send``: raises if the transaction failed; returns
        the entries read (if it read)."""
        conn = self._conn
        try:
            conn.read_response()  # MULTI: OK
            for _ in cmds:
                conn.read_response()  # QUEUED (an error raises here)
            results = conn.read_response()  # EXEC
            if results is None:
                raise ResponseError("transaction aborted")
            for res in results:
                if isinstance(res, Exception):
                    raise res
            return _entries(conn.read_response()) if read else []
        except BaseException:
            self._drop_connection()
            raise

    def _flush(self) -> None:
        """Publish every pending output, oldest first, one round trip each."""
        while self._pending:
            cmds = self._pending[0]
            self._send(cmds)
            self._receive(cmds, False)
            self._pending.pop(0)

    def process(self, entries: list[Any]) -> list[tuple[Any, ...]]:
        """Apply a batch; return its output (the commands that publish it).
        ``entries`` are XREADGROUP's entries as Redis sends them:
        ``[id, [field, value, ...]]``."""
        engine = self.engine
        apply = engine.apply
        loads = orjson.loads
        dumps = orjson.dumps
        replies: list[tuple[str, str | None, bytes]] = []  # (command id, user id, reply JSON)
        events: list[dict[str, Any]] = []
        ids: list[bytes] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            ids.append(raw_id)
            now_ms = int(entry_id.split("-", 1)[0])
            raw = _data_field(fields)
            try:
                msg = loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                msg = None
            if type(msg) is not dict:
                self.stats.malformed += 1
                self._bad.warning("malformed", "malformed stream entry skipped",
                                  shard=self.shard, entry_id=entry_id)
            rep, evs = apply(entry_id, now_ms, msg)
            if rep is not None:
                # the bytes the engine remembered for deduplication, else (an
                # audit, which is not remembered) serialized here
                rj = engine.reply_json
                replies.append((rep["id"], rep.get("user_id"), rj if rj is not None else dumps(rep)))
            if evs:
                events.extend(evs)
        self.stats.applied += len(entries)
        self.stats.batches += 1
        return self._output(replies, events, ids)

    def _output(self, replies: list[tuple[str, str | None, bytes]], events: list[dict[str, Any]],
                ids: list[bytes]) -> list[tuple[Any, ...]]:
        """A batch's output, to publish: MSET of the changed read models, one
        PUBLISH of them for the pusher, one script call that pushes every
        reply, one XADD of the events and the XACK, in one MULTI/EXEC (all or
        nothing). Read models go first so that a client holding its reply
        reads its new state. The commands are kept until Redis has taken them:
        if it fails mid-way the same output is retried before anything new is
        read (a retry may re-send replies and events; both are deduplicated
        downstream by id).

        Nothing is serialized twice: each event once (its bytes go both into
        the event stream and into its user's live update), each changed
        account's read model once (into the MSET, the live update and the
        replies), each reply once, by the engine (the read model is spliced
        into those bytes)."""
        engine = self.engine
        keys = self.keys
        dumps = orjson.dumps
        Fragment = orjson.Fragment
        cmds: list[tuple[Any, ...]] = []
        touched = engine.touched
        views: dict[str, bytes] = {}
        # each event's bytes go to its user's live update too, once ready;
        # while replaying at boot only to the event stream (one call)
        event_json = [dumps(ev) for ev in events] if self._ready else []
        # While replaying at boot, read models are written once at the end
        # (the touched set keeps accumulating), not once per batch.
        if touched and self._ready:
            by_user: dict[str, list[bytes]] = {}
            for ev, raw in zip(events, event_json, strict=True):
                uid = ev.get("user_id")
                if uid is not None and uid in touched:
                    by_user.setdefault(uid, []).append(raw)
            accounts = engine.state.accounts
            models: list[Any] = []
            live: list[dict[str, Any]] = []
            for uid in sorted(touched):
                acct = accounts.get(uid)
                if acct is None:
                    continue
                view_json = dumps(engine.account_view(acct))
                views[uid] = view_json
                models += (keys.account(uid), view_json)
                live.append({"user_id": uid, "account": Fragment(view_json),
                             "events": Fragment(b"[" + b",".join(by_user.get(uid, ())) + b"]")})
            engine.touched = set()
            if models:
                cmds.append(("MSET", *models))
                cmds.append(("PUBLISH", keys.accounts_channel(), dumps({"accounts": live})))
        if replies:
            # The engine's reply is deterministic and small; the account read
            # model (as of the end of this batch) rides along when it changed.
            reply_keys: list[str] = []
            bodies: list[bytes] = []
            for cid, uid, body in replies:
                view = views.get(uid) if uid is not None and views else None
                reply_keys.append(keys.reply(cid))
                bodies.append(with_account(body, view) if view is not None else body)
            cmds.append(("EVAL", PUSH_REPLIES_LUA, len(reply_keys), *reply_keys, *bodies, REPLY_TTL_S))
        if events:
            payload = b"[" + b",".join(event_json) + b"]" if event_json else dumps(events)
            cmds.append(("XADD", self.events_stream, "*", m.FIELD, payload))
        cmds.append(("XACK", self.stream, GROUP, *ids))
        return cmds

    def _publish_read_models(self) -> None:
        """Write the read model of every account changed during the boot replay."""
        engine = self.engine
        accounts = engine.state.accounts
        dumps = orjson.dumps
        uids = sorted(u for u in engine.touched if u in accounts)
        engine.touched = set()
        for i in range(0, len(uids), 1000):
            models: list[Any] = []
            for uid in uids[i : i + 1000]:
                models += (self.keys.account(uid), dumps(engine.account_view(accounts[uid])))
            self._pending.append([("MSET", *models)])
            self._flush()

    # ------------------------------------------------------------------ housekeeping
    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._child is not None:
            self._poll_snapshot(block=False)
        elif (self.snapshots_enabled and self._ready
              and now - self._last_snapshot_at >= self.settings.snapshot_interval_s):
            self._fork_snapshot()
        if now - self._last_status_at >= 1.0:
            self._status("ready" if self._ready else "replaying")

    def _status(self, state: str) -> None:
        self._last_status_at = time.monotonic()
        st = self.engine.state
        body = {
            "state": state, "pid": os.getpid(), "shard": self.shard, "last_id": st.last_id,
            "accounts": len(st.accounts), "applied": self.stats.applied, "ts": int(time.time() * 1000),
            "snapshots": self.stats.snapshots, "snapshot_failures": self.stats.snapshot_failures,
            "max_fork_ms": round(self.stats.max_fork_ms, 3), "boot_seconds": round(self.stats.boot_seconds, 3),
            "insurance": st.insurance, "rss_mb": _rss_mb(),
        }
        with contextlib.suppress(RedisError):
            self.redis.set(self.keys.engine_status(self.shard), orjson.dumps(body), ex=STATUS_TTL_S)

    def _start_collapse(self) -> None:
        """Move the heap onto huge pages on a thread (heap.collapse_to_huge_pages:
        the system call runs without the GIL), so that the next snapshot fork
        copies 512 times fewer page table entries."""
        if not self._huge_pages or self._collapsing is not None:
            return
        self._collapsing = threading.Thread(target=self._collapse, name="huge-pages", daemon=True)
        self._collapsing.start()

    def _collapse(self) -> None:
        t0 = time.monotonic()
        done = heap.collapse_to_huge_pages()
        self.stats.extra["huge_pages_s"] = round(time.monotonic() - t0, 3)
        if done is None:
            log.info("huge pages unavailable; snapshot forks copy 4 KiB page tables", extra={"shard": self.shard})
            self._huge_pages = False

    def _fork_snapshot(self) -> None:
        if self._collapsing is not None:
            if self._collapsing.is_alive():
                return  # fork once the heap is on huge pages (fork would wait for it anyway)
            self._collapsing.join()
            self._collapsing = None
        self._last_snapshot_at = time.monotonic()
        last_id = self.engine.state.last_id
        rfd, wfd = os.pipe()
        t0 = time.perf_counter()
        settle_heap()  # no full collection here: that would be the stall
        pid = os.fork()
        if pid == 0:  # child: a frozen copy of the state
            code = 0
            try:
                os.close(rfd)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                self._write_snapshot()
                os.write(wfd, b"ok")
            except BaseException as exc:  # noqa: BLE001 - report anything to the parent
                os.write(wfd, f"error {exc.__class__.__name__}: {exc}".encode()[:500])
                code = 1
            finally:
                os._exit(code)
        fork_ms = (time.perf_counter() - t0) * 1000
        self.stats.last_fork_ms = fork_ms
        self.stats.max_fork_ms = max(self.stats.max_fork_ms, fork_ms)
        os.close(wfd)
        self._child = _Snapshotting(pid, rfd, last_id, time.monotonic())

    def _write_snapshot(self) -> str | None:
        """Serialize and store the current state; return the id the stream may
        be trimmed below (None: do not trim)."""
        payload = encode_state(self.engine.state)
        store = SnapshotStore(self.settings.mongo_url, self.settings.mongo_db, self.settings.key_prefix)
        try:
            store.save(self.shard, self.engine.state.last_id, payload)
            return safe_prune(store, self.shard)
        finally:
            store.close()

    def _poll_snapshot(self, block: bool) -> None:
        child = self._child
        assert child is not None
        if not block:
            ready, _, _ = select.select([child.fd], [], [], 0)
            if not ready:
                return
        data = b""
        while True:
            chunk = os.read(child.fd, 1024)
            if not chunk:
                break
            data += chunk
        os.close(child.fd)
        os.waitpid(child.pid, 0)
        self._child = None
        if data == b"ok":
            self.stats.snapshots += 1
            log.info("snapshot saved", extra={"shard": self.shard, "last_id": child.last_id,
                                              "fork_ms": round(self.stats.last_fork_ms, 2),
                                              "seconds": round(time.monotonic() - child.started, 2),
                                              "rss_mb": _rss_mb(), **self.stats.extra})
            self._trim_after_snapshot()
            self._start_collapse()  # writes since the fork split huge pages; grown memory is new
        else:
            self.stats.snapshot_failures += 1
            log.error("snapshot failed; trading continues, will retry",
                      extra={"shard": self.shard, "error": data.decode(errors="replace")})

    def _trim_after_snapshot(self) -> None:
        """Trim the input stream below the oldest snapshot we still keep."""
        try:
            store = SnapshotStore(self.settings.mongo_url, self.settings.mongo_db, self.settings.key_prefix)
            try:
                oldest = store.prune(self.shard)
            finally:
                store.close()
        except Exception as exc:  # noqa: BLE001 - trimming is an optimisation; never trim on doubt
            log.warning("not trimming the stream: snapshot store unavailable", extra={"error": str(exc)})
            return
        if oldest:
            self.redis.xtrim(self.stream, minid=oldest, approximate=False)

    def snapshot_now(self) -> bool:
        """Synchronous snapshot (shutdown). Returns success."""
        if self._child is not None:
            self._poll_snapshot(block=True)
        try:
            oldest = self._write_snapshot()
        except Exception as exc:  # noqa: BLE001
            self.stats.snapshot_failures += 1
            log.error("final snapshot failed", extra={"shard": self.shard, "error": str(exc)})
            return False
        self.stats.snapshots += 1
        if oldest:
            with contextlib.suppress(RedisError):
                self.redis.xtrim(self.stream, minid=oldest, approximate=False)
        return True

    def shutdown(self) -> None:
        log.info("engine stopping", extra={"shard": self.shard, "last_id": self.engine.state.last_id})
        if self._pending:
            try:
                self._flush()
            except (RedisError, OSError) as exc:
                # A snapshot would cover entries whose replies and events never
                # left: skip it; the next boot replays them from the stream.
                log.error("stopping with unpublished output; no final snapshot",
                          extra={"shard": self.shard, "error": str(exc)})
                self.redis.close()
                return
        if self.snapshots_enabled and self._ready:
            self.snapshot_now()
        elif self._child is not None:
            self._poll_snapshot(block=True)
        self._status("stopped")
        self.redis.close()



def run_engine(settings: Settings, shard: int) -> None:
    rt = EngineRuntime(settings, shard)
    signal.signal(signal.SIGTERM, rt.request_stop)
    signal.signal(signal.SIGINT, rt.request_stop)
    rt.boot()
    rt.run()
