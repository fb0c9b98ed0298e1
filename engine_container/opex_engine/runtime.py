"""The I/O shell around one engine shard.

Loop: XREADGROUP a batch from the shard's input stream -> apply each entry to
the pure engine -> one pipeline that writes read models, replies, events,
live account updates and the XACK. No database call ever runs inside the loop.

Boot: load the newest valid snapshot from MongoDB, point the consumer group at
the snapshot's last id (XGROUP SETID) and let the loop replay everything after
it; replies and events of replayed entries are re-sent with the same ids, and
their consumers deduplicate by id.

Snapshots: every SNAPSHOT_INTERVAL_S the process forks; the child has a
consistent copy-on-write image of the state, serializes it and writes it to
MongoDB while the parent keeps trading (the stall is the fork itself). When
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

import gc
import logging
import os
import select
import signal
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
        self._pending: list[tuple[Any, ...]] | None = None  # a batch's output not yet published
        self._resync = False

    # ------------------------------------------------------------------ boot
    def boot(self) -> None:
        t0 = time.monotonic()
        # Loading and replaying build the state: nothing of it is garbage, so
        # no collection until ready (settle_heap then freezes it all).
        gc.disable()
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
        if self._pending is not None:
            self._flush()  # a batch applied in memory is published before anything else is read
        if self._resync:
            self.redis.xgroup_setid(self.stream, GROUP, id=self.engine.state.last_id)
            self._resync = False
        batch = self.settings.engine_batch
        resp = self.redis.xreadgroup(GROUP, CONSUMER, {self.stream: ">"}, count=batch,
                                     block=self.settings.engine_block_ms)
        entries = resp[0][1] if resp else []
        if entries:
            self.process(entries)
        if not self._ready and len(entries) < batch:
            self._publish_read_models()
            self._ready = True
            settle_heap()  # what the replay added
            gc.enable()
            self.stats.boot_seconds = time.monotonic() - self._boot_started
            log.info("engine ready", extra={"shard": self.shard, "replayed": self.stats.boot_replayed,
                                           "boot_seconds": round(self.stats.boot_seconds, 3),
                                           "accounts": len(self.engine.state.accounts)})
            self._status("ready")
        elif not self._ready:
            self.stats.boot_replayed += len(entries)
        self._housekeeping()

    def process(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply a batch and publish its results in one pipeline."""
        engine = self.engine
        apply = engine.apply
        loads = orjson.loads
        replies: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        ids: list[bytes] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            ids.append(raw_id)
            now_ms = int(entry_id.split("-", 1)[0])
            raw = fields.get(b"d")
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
                replies.append(rep)
            if evs:
                events.extend(evs)
        self.stats.applied += len(entries)
        self.stats.batches += 1
        self._publish(replies, events, ids)

    def _publish(self, replies: list[dict[str, Any]], events: list[dict[str, Any]], ids: list[bytes]) -> None:
        """Publish a batch's output: MSET of the changed read models, one
        PUBLISH of them for the pusher, one script call that pushes every
        reply, one XADD of the events and the XACK, in one MULTI/EXEC (all or
        nothing). Read models go first so that a client holding its reply
        reads its new state. The commands are kept until Redis has taken them:
        if it fails mid-way the same output is retried before anything new is
        read (a retry may re-send replies and events; both are deduplicated
        downstream by id)."""
        engine = self.engine
        keys = self.keys
        dumps = orjson.dumps
        cmds: list[tuple[Any, ...]] = []
        touched = engine.touched
        # each changed account's read model is serialized once and its bytes
        # spliced (orjson.Fragment) into the reply and the live update
        views: dict[str, orjson.Fragment] = {}
        # While replaying at boot, read models are written once at the end
        # (the touched set keeps accumulating), not once per batch.
        if touched and self._ready:
            by_user: dict[str, list[dict[str, Any]]] = {}
            for ev in events:
                uid = ev.get("user_id")
                if uid is not None and uid in touched:
                    by_user.setdefault(uid, []).append(ev)
            accounts = engine.state.accounts
            models: list[Any] = []
            live: list[dict[str, Any]] = []
            for uid in sorted(touched):
                acct = accounts.get(uid)
                if acct is None:
                    continue
                view_json = dumps(engine.account_view(acct))
                views[uid] = orjson.Fragment(view_json)
                models += (keys.account(uid), view_json)
                live.append({"user_id": uid, "account": views[uid], "events": by_user.get(uid, [])})
            engine.touched = set()
            if models:
                cmds.append(("MSET", *models))
                cmds.append(("PUBLISH", keys.accounts_channel(), dumps({"accounts": live})))
        if replies:
            # The engine's reply is deterministic and small; the account read
            # model (as of the end of this batch) rides along when it changed.
            reply_keys: list[str] = []
            bodies: list[bytes] = []
            for rep in replies:
                view = views.get(rep.get("user_id") or "") if views else None
                if view is not None:
                    rep = {**rep, "data": {**rep["data"], "account": view}}
                reply_keys.append(keys.reply(rep["id"]))
                bodies.append(dumps(rep))
            cmds.append(("EVAL", PUSH_REPLIES_LUA, len(reply_keys), *reply_keys, *bodies, REPLY_TTL_S))
        if events:
            cmds.append(("XADD", self.events_stream, "*", m.FIELD, dumps(events)))
        cmds.append(("XACK", self.stream, GROUP, *ids))
        self._pending = cmds
        self._flush()

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
            self._pending = [("MSET", *models)]
            self._flush()

    def _flush(self) -> None:
        cmds = self._pending
        assert cmds is not None
        pipe = self.redis.pipeline(transaction=True)
        for cmd in cmds:
            pipe.execute_command(*cmd)
        pipe.execute()
        self._pending = None

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
        try:
            self.redis.set(self.keys.engine_status(self.shard), orjson.dumps(body), ex=STATUS_TTL_S)
        except RedisError:
            pass

    def _fork_snapshot(self) -> None:
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
            self._trim_after_snapshot()
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
            try:
                self.redis.xtrim(self.stream, minid=oldest, approximate=False)
            except RedisError:
                pass
        return True

    def shutdown(self) -> None:
        log.info("engine stopping", extra={"shard": self.shard, "last_id": self.engine.state.last_id})
        if self._pending is not None:
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
