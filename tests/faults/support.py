"""What the fault tests share: private Redis and Postgres servers the test may
kill, a steady load of trades and price ticks, the reference replay, the
history counts behind "lost" and "duplicated", and the figures file.

Everything listens on 127.0.0.1 only; every loop is bounded in time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
import redis as redis_lib
from redis.exceptions import RedisError

from opex_common.settings import Settings
from opex_engine.checker import CheckUnavailable, Report, check
from opex_engine.core.engine import Engine
from opex_engine.snapshots import SnapshotStore, encode_state
from tests.conftest import ROOT, settings_env
from tests.helpers import free_port

FIGURES_PATH = ROOT / "bench" / "results" / "faults.json"

BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
# market -> (start mid, tick size, quantity step), engine units (1e-4 USD, 1e-8 base)
MARKETS: dict[str, tuple[int, int, int]] = {
    BTC: (970_000_000, 1_000, 10_000),
    ETH: (35_000_000, 100, 100_000),
    SOL: (2_000_000, 100, 1_000_000),
}


def wait_until(cond: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ====================================================================== private servers
class PrivateRedis:
    """A redis-server of the test's own, persisted as ElastiCache would
    (AOF, fsync on every write), that the test may crash and restart on the
    same port with the same data directory."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> PrivateRedis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not on PATH")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
             "--logfile", str(self.dir / "redis.log"), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis_lib.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            def up() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {self.log_tail()}")
                try:
                    return bool(client.ping())
                except RedisError:
                    return False
            wait_until(up, timeout, "the private redis-server", 0.02)
            # loading the AOF answers -LOADING until done: wait for a real command
            wait_until(lambda: _redis_loaded(client), timeout, "the AOF to load", 0.02)
        finally:
            client.close()
        return self

    def crash(self) -> None:
        """SIGKILL: no shutdown, no save; what was fsynced to the AOF survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.crash()

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.dir / "redis.log").read_text(errors="replace").splitlines()[-n:])
        return ""


def _redis_loaded(client: redis_lib.Redis) -> bool:
    try:
        client.dbsize()
        return True
    except RedisError:
        return False


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    exe = shutil.which(name)
    if exe is None:
        raise RuntimeError(f"{name} not found (looked in /usr/lib/postgresql/*/bin and PATH)")
    return exe


class PrivatePostgres:
    """A Postgres cluster of the test's own (initdb into a temporary
    directory), so the test can stop it without touching the machine's.
    As root it runs as the ``postgres`` OS user (initdb refuses root)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = Path(tempfile.mkdtemp(prefix="opex-fault-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser: cannot start Postgres as 'postgres'")
            self._as = [runuser, "-u", "postgres", "--"]

    @property
    def dsn_admin(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str], timeout: float = 60) -> None:
        subprocess.run([*self._as, *argv], check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def init(self) -> PrivatePostgres:
        self._run([_pg_bin("initdb"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D",
                   str(self.data)], timeout=120)
        return self

    def start(self) -> PrivatePostgres:
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c max_connections=50 -c shared_buffers=32MB")
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                   "start"], timeout=90)
        return self

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend dies at once, like a crash (recovery at the next start)."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"], timeout=90)

    def create_db(self, name: str) -> str:
        with psycopg.connect(self.dsn_admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


# ====================================================================== processes
class Proc:
    """A platform process (``python -m ...``) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], settings: Settings, log_dir: Path, **env: str) -> None:
        self.name = name
        self.argv = argv
        self.env = {**settings_env(settings), **env}
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def history_writer(settings: Settings, log_dir: Path) -> Proc:
    return Proc("history", [sys.executable, "-m", "opex_engine", "history"], settings, log_dir,
                HISTORY_BLOCK_MS="100")


# ====================================================================== the load
@dataclass
class Command:
    id: str
    msg: dict[str, Any]
    client: int
    sent_at: float  # first submission (monotonic)
    sends: int = 0  # submissions (a retry reuses the id)
    reply: dict[str, Any] | None = None
    replied_at: float | None = None
    send_errors: int = 0

    @property
    def acknowledged(self) -> bool:
        return self.reply is not None and bool(self.reply.get("ok"))


@dataclass
class LoadStats:
    ticks_sent: int = 0
    tick_errors: int = 0
    uncertain_xadds: int = 0  # XADDs that raised: the entry may or may not be in the stream


class Load:
    """A steady load on one engine shard, straight through Redis as the API
    does it: each client thread sends a command (XADD), waits for its reply
    (BLPOP on its own list) and, when none comes in ``reply_timeout`` (engine
    down, Redis down), sends it again *with the same id*, as a client retrying
    with an Idempotency-Key would, until it is answered. A ticker thread moves
    prices (small random walk, now and then a jump that liquidates someone).

    Every XADD that returned an id is recorded, so a reference engine can
    replay exactly what the stream received."""

    def __init__(self, settings: Settings, *, clients: int = 2, users_per_client: int = 5,
                 tick_interval: float = 0.1, pause: float = 0.01, reply_timeout: float = 1.0,
                 seed: int = 1, jump_every: int = 40, tag: str = "u") -> None:
        self.settings = settings
        self.stream = settings.keys.input_stream(0)
        self.n_clients = clients
        self.users = [[f"{tag}{c}-{i}" for i in range(users_per_client)] for c in range(clients)]
        self.tick_interval = tick_interval
        self.pause = pause
        self.reply_timeout = reply_timeout
        self.jump_every = jump_every
        self.rng = random.Random(seed)
        self.mid = {m: p for m, (p, _, _) in MARKETS.items()}
        self.lock = threading.Lock()
        self.entries: list[tuple[str, dict[str, Any]]] = []
        self.commands: dict[str, Command] = {}
        self.order: list[str] = []
        self.reply_times: list[float] = []
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._drain_deadline = float("inf")
        self._threads: list[threading.Thread] = []
        self._tick_seq = 0

    # ---------------------------------------------------------------- plumbing
    def _redis(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.settings.redis_url, socket_timeout=self.reply_timeout + 5,
                                        socket_connect_timeout=1)

    def _xadd(self, r: redis_lib.Redis, msg: dict[str, Any]) -> bool:
        try:
            rid = r.xadd(self.stream, {"d": orjson.dumps(msg)})
        except (RedisError, OSError):
            with self.lock:
                self.stats.uncertain_xadds += 1
            return False
        with self.lock:
            self.entries.append((rid.decode(), msg))
        return True

    def tick_message(self, market: str, jump_bps: int = 0) -> dict[str, Any]:
        _, tick, _ = MARKETS[market]
        with self.lock:
            mid = self.mid[market]
            mid += mid * (self.rng.randint(-8, 8) + jump_bps) // 10_000
            mid = max(tick * 100, mid - mid % tick)
            self.mid[market] = mid
        return {"type": "tick", "market": market, "bid": mid - tick, "ask": mid + tick, "mark": mid,
                "index": mid, "funding_rate": 0, "next_funding_ms": 0}

    def send_ticks(self, r: redis_lib.Redis, jump: bool = False) -> None:
        for market in MARKETS:
            jump_bps = self.rng.choice([-250, 250]) if jump else 0
            if self._xadd(r, self.tick_message(market, jump_bps)):
                self.stats.ticks_sent += 1
            else:
                self.stats.tick_errors += 1

    def burst_ticks(self, n: int) -> None:
        """``n`` ticks in one pipeline: the engine's next batches are long (a
        fault injected right after lands mid-batch)."""
        r = self._redis()
        try:
            msgs = [self.tick_message(m) for _ in range(n // len(MARKETS)) for m in MARKETS]
            pipe = r.pipeline(transaction=False)
            for msg in msgs:
                pipe.xadd(self.stream, {"d": orjson.dumps(msg)})
            ids = pipe.execute()
            with self.lock:
                self.entries.extend((rid.decode(), msg) for rid, msg in zip(ids, msgs, strict=True))
                self.stats.ticks_sent += len(msgs)
        finally:
            r.close()

    def call(self, r: redis_lib.Redis, msg: dict[str, Any], client: int = -1,
             deadline: float | None = None) -> Command:
        """Send one command until it is answered (or ``deadline``)."""
        cmd = Command(msg["id"], msg, client, time.monotonic())
        with self.lock:
            self.commands[cmd.id] = cmd
            self.order.append(cmd.id)
        key = self.settings.keys.reply(cmd.id)
        while True:
            if self._xadd(r, msg):
                cmd.sends += 1
                try:
                    got = r.blpop([key], timeout=self.reply_timeout)
                except (RedisError, OSError):
                    got = None
                    cmd.send_errors += 1
                    time.sleep(0.1)
                if got is not None:
                    now = time.monotonic()
                    cmd.reply, cmd.replied_at = orjson.loads(got[1]), now
                    with self.lock:
                        self.reply_times.append(now)
                    return cmd
            else:
                cmd.send_errors += 1
                time.sleep(0.1)
            if time.monotonic() > (deadline if deadline is not None else self._drain_deadline):
                return cmd

    # ---------------------------------------------------------------- set-up
    def setup(self, timeout: float = 20.0) -> None:
        r = self._redis()
        try:
            self.send_ticks(r)
            deadline = time.monotonic() + timeout
            for users in self.users:
                for u in users:
                    cmd = self.call(r, {"id": f"create-{u}", "type": "create_account", "user_id": u},
                                    deadline=deadline)
                    assert cmd.reply is not None and cmd.reply["code"] in ("ok", "conflict"), cmd.reply
        finally:
            r.close()

    # ---------------------------------------------------------------- threads
    def _ticker(self) -> None:
        r = self._redis()
        n = 0
        try:
            while not self._stop.wait(self.tick_interval):
                n += 1
                self.send_ticks(r, jump=self.jump_every > 0 and n % self.jump_every == 0)
        finally:
            r.close()

    def _client(self, c: int) -> None:
        rng = random.Random(1000 + c)
        r = self._redis()
        open_trades: list[tuple[str, str]] = []  # (user, trade id) this client opened
        try:
            while not self._stop.is_set():
                if open_trades and rng.random() < 0.3:
                    user, trade_id = open_trades.pop(rng.randrange(len(open_trades)))
                    msg = {"id": uuid.uuid4().hex, "type": "close", "user_id": user, "trade_id": trade_id}
                    self.call(r, msg, c)
                else:
                    user = rng.choice(self.users[c])
                    market = rng.choice(list(MARKETS))
                    _, _, step = MARKETS[market]
                    with self.lock:
                        seen = self.mid[market]
                    msg = {"id": uuid.uuid4().hex, "type": "open", "user_id": user, "market": market,
                           "side": rng.choice(["long", "short"]), "qty": step * rng.randint(1, 20),
                           "leverage": rng.choice([2, 5, 10, 20, 50]), "slippage_bps": 500, "price": seen,
                           "margin_mode": rng.choice(["cross", "isolated"])}
                    cmd = self.call(r, msg, c)
                    if cmd.acknowledged:
                        open_trades.append((user, cmd.reply["data"]["trade"]["id"]))  # type: ignore[index]
                if self.pause:
                    time.sleep(self.pause)
        finally:
            r.close()

    def start(self) -> Load:
        # The clients run in the test process, which by now (the whole suite in
        # one process) holds a large heap: a full collection of it would stall
        # them, and that gap would be read as the platform pausing. Freeze the
        # heap out of the collector's sight for the load (thawed in stop()).
        gc.collect()
        gc.freeze()
        self._threads = [threading.Thread(target=self._ticker, daemon=True, name="ticker")]
        self._threads += [threading.Thread(target=self._client, args=(c,), daemon=True, name=f"client-{c}")
                          for c in range(self.n_clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop sending new commands; the clients keep retrying what they have
        in hand until it is answered (at most ``drain_timeout``)."""
        gc.unfreeze()
        self._drain_deadline = time.monotonic() + drain_timeout
        self._stop.set()
        for t in self._threads:
            t.join(drain_timeout + 10)

    # ---------------------------------------------------------------- figures
    def trade_commands(self) -> list[Command]:
        with self.lock:
            return [self.commands[c] for c in self.order if self.commands[c].msg["type"] in ("open", "close")]

    def replies_between(self, t0: float, t1: float) -> int:
        with self.lock:
            return sum(1 for t in self.reply_times if t0 <= t <= t1)

    def first_reply_after(self, t0: float) -> float | None:
        """When the first command *sent* after ``t0`` was answered (only an
        engine that is up again can answer it)."""
        with self.lock:
            later = [c.replied_at for c in self.commands.values()
                     if c.sent_at > t0 and c.replied_at is not None]
        return min(later) if later else None

    def max_reply_gap(self, t0: float, t1: float) -> float:
        """The longest time without any reply within [t0, t1]: a trading pause."""
        with self.lock:
            times = sorted(t for t in self.reply_times if t0 <= t <= t1)
        edges = [t0, *times, t1]
        return max(b - a for a, b in zip(edges, edges[1:], strict=False))

    def sorted_entries(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return sorted(self.entries, key=lambda e: _sid(e[0]))


def _sid(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# ====================================================================== engine state
def reference(settings: Settings, entries: list[tuple[str, dict[str, Any]]]) -> tuple[Engine, dict[str, dict]]:
    """An engine that applied every entry exactly once, without stopping."""
    eng = Engine(settings.markets, price_stale_ms=settings.price_stale_ms, dedup_window_ms=settings.dedup_window_ms)
    replies: dict[str, dict[str, Any]] = {}
    for rid, msg in entries:
        rep, _ = eng.apply(rid, int(rid.split("-")[0]), msg)
        if rep is not None and rep["id"] not in replies:
            replies[rep["id"]] = rep
    return eng, replies


def stream_entries(client: redis_lib.Redis, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """The whole input stream as it is now (valid only if it was never trimmed)."""
    out = []
    for rid, fields in client.xrange(stream):
        try:
            msg = orjson.loads(fields[b"d"])
        except (KeyError, orjson.JSONDecodeError):
            msg = None
        out.append((rid.decode(), msg))
    return out


def engine_group(client: redis_lib.Redis, settings: Settings) -> dict[str, Any]:
    stream = settings.keys.input_stream(0)
    info = client.xinfo_stream(stream)
    groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    g = groups.get("engine", {})
    return {"last_generated": info["last-generated-id"].decode(),
            "last_delivered": g.get("last-delivered-id", b"0-0").decode(), "pending": g.get("pending", 0)}


def wait_engine_caught_up(client: redis_lib.Redis, settings: Settings, timeout: float = 60.0) -> dict[str, Any]:
    """Until the engine has read everything on its stream; returns the group
    info (``pending`` > 0 afterwards means entries read but never acknowledged)."""
    def caught_up() -> dict[str, Any] | None:
        try:
            g = engine_group(client, settings)
        except RedisError:
            return None
        return g if g["last_delivered"] == g["last_generated"] else None

    wait_until(caught_up, timeout, "the engine to read its whole stream")
    with contextlib.suppress(AssertionError):  # its last batch's XACK may be a moment behind
        wait_until(lambda: engine_group(client, settings)["pending"] == 0, 5.0, "the engine's last XACK")
    return engine_group(client, settings)


def final_snapshot_state(settings: Settings) -> Any:
    store = SnapshotStore(settings.mongo_url, settings.mongo_db, settings.key_prefix)
    try:
        loaded = store.load_latest(0)
    finally:
        store.close()
    assert loaded is not None, "no snapshot"
    return loaded


def state_diff(a: Any, b: Any) -> str:
    """A short description of where two engine states differ."""
    da, db = a.to_snapshot(), b.to_snapshot()
    out = []
    for k in sorted(set(da) | set(db)):
        if da.get(k) != db.get(k):
            out.append(k)
    return f"differing fields: {out}"


# ====================================================================== history counts
@dataclass
class Figures:
    fault: str
    attempted: int = 0
    acknowledged: int = 0
    refused: int = 0
    unanswered: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return (f"[fault {self.fault}] attempted={self.attempted} acknowledged={self.acknowledged} "
                f"lost={self.lost} duplicated={self.duplicated} recover_s={self.recover_s:.2f}"
                + "".join(f" {k}={v}" for k, v in self.extra.items()))

    def as_dict(self) -> dict[str, Any]:
        return {"attempted": self.attempted, "acknowledged": self.acknowledged, "refused": self.refused,
                "unanswered": self.unanswered, "lost": self.lost, "duplicated": self.duplicated,
                "recover_s": round(self.recover_s, 3), **self.extra}


def count_trade_commands(figures: Figures, commands: list[Command]) -> None:
    figures.attempted = len(commands)
    figures.acknowledged = sum(1 for c in commands if c.acknowledged)
    figures.refused = sum(1 for c in commands if c.reply is not None and not c.reply.get("ok"))
    figures.unanswered = sum(1 for c in commands if c.reply is None)


def history_rows(dsn: str, users: list[str]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """From Postgres: margin locks per trade id (one per opened trade), and
    the close reasons recorded per trade id."""
    with psycopg.connect(dsn) as conn:
        opened = dict(conn.execute(
            "SELECT trade_id, count(*) FROM ledger WHERE kind = 'margin_lock' AND user_id = ANY(%s) "
            "GROUP BY trade_id", (users,)).fetchall())
        closes: dict[str, list[str]] = {}
        for trade_id, reason in conn.execute(
                "SELECT trade_id, reason FROM closed_trades WHERE user_id = ANY(%s) ORDER BY seq", (users,)):
            closes.setdefault(trade_id, []).append(reason)
    return opened, closes


def lost_and_duplicated(commands: list[Command], opened: dict[str, int], closes: dict[str, list[str]]
                        ) -> tuple[list[str], list[str]]:
    """Compare what clients were told with what history recorded.

    lost: an acknowledged open whose trade never reached the ledger, or an
    acknowledged close with no close row. duplicated: a trade locked margin
    more than once, a trade in the ledger that no open reply announced (a
    command applied twice under a new identity), or more close rows with
    reason "close" than acknowledged closes of that trade."""
    lost: list[str] = []
    dup: list[str] = []
    announced: set[str] = set()
    acked_closes: dict[str, int] = {}
    for c in commands:
        if c.reply is None or not c.reply.get("ok"):
            continue
        data = c.reply.get("data") or {}
        if c.msg["type"] == "open":
            tid = data["trade"]["id"]
            announced.add(tid)
            if c.acknowledged and tid not in opened:
                lost.append(f"open {c.id} -> trade {tid} not in the ledger")
        elif c.msg["type"] == "close" and "close_price" in data:
            tid = c.msg["trade_id"]
            acked_closes[tid] = acked_closes.get(tid, 0) + 1
            if "close" not in closes.get(tid, []):
                lost.append(f"close {c.id} of trade {tid} not in closed_trades")
    for tid, n in opened.items():
        if n > 1:
            dup.append(f"trade {tid} locked margin {n} times")
        if tid not in announced:
            dup.append(f"trade {tid} in the ledger but announced by no reply")
    for tid, reasons in closes.items():
        if reasons.count("close") > acked_closes.get(tid, 0):
            dup.append(f"trade {tid} closed {reasons.count('close')} times, {acked_closes.get(tid, 0)} acknowledged")
    return lost, dup


def history_lag(client: redis_lib.Redis, settings: Settings) -> dict[str, Any] | None:
    """The history writer's position on shard 0's event stream (None: no events yet)."""
    stream = settings.keys.event_stream(0)
    try:
        info = client.xinfo_stream(stream)
        groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    except RedisError:
        return None
    g = groups.get(settings.keys.HISTORY_GROUP)
    if g is None:
        return None
    return {"last_generated": info["last-generated-id"].decode(), "last_delivered": g["last-delivered-id"].decode(),
            "pending": g["pending"], "lag": g.get("lag")}


def wait_history_caught_up(settings: Settings, timeout: float) -> float | None:
    """Seconds until the history writer has written and acknowledged every event
    (None if it has not within ``timeout``)."""
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=5)
    t0 = time.monotonic()
    try:
        def done() -> bool:
            lag = history_lag(client, settings)
            return lag is not None and lag["pending"] == 0 and lag["last_delivered"] == lag["last_generated"]
        try:
            wait_until(done, timeout, "the history writer to catch up", 0.05)
        except AssertionError:
            return None
        return time.monotonic() - t0
    finally:
        client.close()


def run_checker(settings: Settings, timeout_s: float = 60.0) -> Report:
    report = check(settings, timeout_s=timeout_s)
    return report


# ====================================================================== figures file
def record_figures(fig: Figures, path: Path = FIGURES_PATH) -> None:
    """Print the one-line figure and merge it into bench/results/faults.json."""
    print(fig.line())
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("faults"), dict):
        data = {"faults": {}}
    entry = fig.as_dict()
    entry["measured_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    data["faults"][fig.fault] = entry
    data["updated"] = entry["measured_at"]
    data["note"] = ("tests/faults: per fault, trade commands attempted, acknowledged (ok reply seen by the "
                    "client), lost and duplicated (both must be 0) and seconds to recover; see docs/reliability.md")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


# ====================================================================== the common ending
def strip_account(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply without the read model the runtime attaches (not part of the deterministic reply)."""
    data = reply.get("data")
    if isinstance(data, dict) and "account" in data:
        return {**reply, "data": {k: v for k, v in data.items() if k != "account"}}
    return reply


@dataclass
class Verdict:
    problems: list[str]
    lost: list[str]
    duplicated: list[str]
    engine: Any  # the engine process running at the end (for the caller to stop)


def verify_after_load(settings: Settings, load: Load, engine: Any, restart_engine: Any,
                      entries: list[tuple[str, dict[str, Any]]] | None = None,
                      checker_timeout: float = 60.0) -> Verdict:
    """What every fault test checks once the load has stopped:

    1. the engine read and acknowledged its whole stream;
    2. every reply a client saw is the reply of a reference engine that applied
       every stream entry exactly once (so each command was applied once, in order);
    3. the engine's final snapshot (SIGTERM) equals the reference's state, byte for byte;
    4. after a restart, the invariant checker: the Postgres ledger rebuilds every
       balance, conservation holds, nothing is negative;
    5. history against what clients were told: nothing lost, nothing duplicated.
    """
    problems: list[str] = []
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        g = wait_engine_caught_up(client, settings)
        if g["pending"]:
            problems.append(f"{g['pending']} input entries were read by the engine but never acknowledged "
                            f"(group: {g})")
        if entries is None:
            entries = load.sorted_entries()
    finally:
        client.close()
    ref, ref_replies = reference(settings, entries)
    wrong = [c.id for c in load.commands.values()
             if c.reply is not None and strip_account(c.reply) != ref_replies.get(c.id)]
    if wrong:
        c = load.commands[wrong[0]]
        problems.append(f"{len(wrong)} replies differ from the reference, e.g. {c.msg} -> {c.reply} "
                        f"(reference {ref_replies.get(c.id)})")
    code = engine.stop()  # SIGTERM: finish the batch, final snapshot
    if code != 0:
        problems.append(f"the engine exited with {code} on SIGTERM")
    state, info = final_snapshot_state(settings)
    if info.last_id != entries[-1][0]:
        problems.append(f"final snapshot at {info.last_id}, the stream ends at {entries[-1][0]}")
    if encode_state(state) != encode_state(ref.state):
        problems.append("final engine state differs from the reference replay: " + state_diff(state, ref.state))
    problems += [f"reference invariant: {p}" for p in ref.state.check_invariants()]
    engine = restart_engine()
    try:
        report = run_checker(settings, checker_timeout)
        problems += [f"checker: {p}" for p in report.problems]
    except CheckUnavailable as exc:
        problems.append(f"checker could not check: {exc}")
    users = [u for group in load.users for u in group]
    opened, closes = history_rows(settings.database_url, users)
    lost, dup = lost_and_duplicated(load.trade_commands(), opened, closes)
    return Verdict(problems, lost, dup, engine)


# ====================================================================== a connection that drops a reply
class DroppingProxy:
    """A TCP proxy on 127.0.0.1 in front of Redis. Once ``arm(marker)`` is
    called, the first server->client chunk containing ``marker`` is thrown
    away and that connection is closed on both sides: Redis executed the
    command, the client never hears the answer (a failover or a network cut
    at the worst moment). Later connections pass through untouched."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.marker: bytes | None = None
        self.fired = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def arm(self, marker: bytes) -> None:
        self.marker = marker

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                marker = self.marker
                if from_server and marker is not None and marker in data and not self.fired.is_set():
                    self.marker = None
                    self.fired.set()
                    break  # the reply is lost with the connection
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for s in self._socks:
                with contextlib.suppress(OSError):
                    s.close()
