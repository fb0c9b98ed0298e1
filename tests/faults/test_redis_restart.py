"""Fault: Redis crashes and restarts under load, its data persisted as
ElastiCache would keep it (AOF, fsync on every write).

A private redis-server of this test's own (never the machine's on 6379) is
killed with SIGKILL twice mid-load and restarted on the same port with the
same data directory. The engine, the history writer and the clients stay up
and reconnect; clients retry unanswered commands with the same id.

Snapshots are rare here (the engine is never restarted before the end), so the
input stream is never trimmed and the reference replays it as Redis holds it:
that includes the entries whose XADD the crash interrupted.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import orjson
import pytest
import redis as redis_lib

from tests.faults.support import (
    DroppingProxy,
    Figures,
    Load,
    PrivateRedis,
    count_trade_commands,
    history_lag,
    record_figures,
    stream_entries,
    verify_after_load,
    wait_history_caught_up,
    wait_until,
)

CRASHES = 2
DOWN_S = 1.5
HISTORY_WAIT_S = 10.0

# Platform bugs these tests exposed, now fixed (docs/reliability.md, "Findings");
# the texts stay as the record of what each test guards against.
ENGINE_PUBLISH_BUG = (
    "BUG engine runtime (runtime.py run/_step/_publish): when Redis drops after XREADGROUP handed the engine "
    "a batch, the batch is applied in memory but its replies, events, read models and XACK are never "
    "published and the loop goes on reading '>': the events never reach the ledger (checker: ledger != "
    "engine balance) and the entries stay pending forever")
ENGINE_SKIP_BUG = (
    "BUG engine runtime (runtime.py _step): when the connection drops after Redis executed XREADGROUP but "
    "before the engine got the answer, the delivered entries stay pending and the engine never reads them "
    "(it only reads '>', and boot only moves the group with XGROUP SETID): the live engine skips them, a "
    "replay after a crash applies them, so replayed state and history differ from what clients were told")
HISTORY_PENDING_BUG = (
    "BUG history writer (history/writer.py run/read): after a Redis error it keeps reading '>' and re-reads "
    "the entries it had been handed only when claim_abandoned() takes them after HISTORY_CLAIM_IDLE_MS "
    "(60 s): history, and the checker, wait a minute after every Redis blip")


@pytest.mark.slow
@pytest.mark.integration
def test_redis_crash_and_restart_under_load(engine_factory, settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                            start_history) -> None:
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        s = settings.model_copy(update={"redis_url": server.url, "snapshot_interval_s": 600.0})
        engine = engine_factory(settings_override=s).start()
        history = start_history(s)
        load = Load(s, clients=2, users_per_client=5, seed=23, tag="r")
        load.setup()
        load.start()
        recover: list[float] = []
        try:
            time.sleep(2.0)
            for _ in range(CRASHES):
                load.burst_ticks(600)  # the engine mid-batch when Redis dies, often enough
                time.sleep(0.005)
                server.crash()
                time.sleep(DOWN_S)
                server.start()
                back_at = time.monotonic()
                done = wait_until(lambda t=back_at: load.first_reply_after(t), 30, "a reply after Redis is back")
                recover.append(done - back_at)
                time.sleep(2.0)
        finally:
            load.stop()
        history_s = wait_history_caught_up(s, HISTORY_WAIT_S)

        assert engine.proc is not None and engine.proc.poll() is None, "the engine died: " + engine.log_tail()
        assert history.alive(), "the history writer died: " + history.log_tail()
        client = redis_lib.Redis.from_url(s.redis_url)
        try:
            # everything Redis holds, including entries whose XADD the client saw fail
            entries = stream_entries(client, s.keys.input_stream(0))
        finally:
            client.close()
        fig = Figures("redis_restart")
        count_trade_commands(fig, load.trade_commands())
        verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=s).start(),
                                    entries=entries, checker_timeout=HISTORY_WAIT_S)
        if history_s is None:
            verdict.problems.append(f"the history writer had not caught up {HISTORY_WAIT_S}s after the load "
                                    "(entries it read before the crash wait for its 60 s claim)")
        fig.lost, fig.duplicated = len(verdict.lost), len(verdict.duplicated)
        fig.recover_s = max(recover)
        fig.extra = {"crashes": CRASHES, "down_s": DOWN_S, "recover_each_s": [round(x, 2) for x in recover],
                     "uncertain_xadds": load.stats.uncertain_xadds,
                     "history_caught_up_s": None if history_s is None else round(history_s, 2)}
        record_figures(fig)
        verdict.engine.stop()

        assert fig.unanswered == 0
        assert fig.acknowledged > 100
        assert verdict.problems == [], "\n".join(verdict.problems + verdict.lost[:5])
        assert verdict.lost == [] and verdict.duplicated == []
    finally:
        server.stop()


def _blocked_in_read(client: redis_lib.Redis, name: str, timeout_s: float = 5.0) -> bool:
    """Wait until the connection named ``name`` (the engine's or the history
    writer's, in CLIENT LIST) sits blocked in XREADGROUP (flag ``b``): the
    process has finished its last batch and waits for input."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for c in client.client_list():
            if c.get("name") == name and c.get("cmd") == "xreadgroup" and "b" in c.get("flags", ""):
                return True
        time.sleep(0.002)
    return False


def _handed_over(client: redis_lib.Redis, stream: str, entry_id: bytes) -> bool:
    """Redis delivered ``entry_id`` to the engine's consumer (it is in the group's pending list)."""
    summary = client.xpending(stream, "engine")
    return bool(summary["pending"]) and summary["max"] == entry_id


@pytest.mark.slow
@pytest.mark.integration
def test_redis_dies_between_handing_a_batch_to_the_engine_and_its_publication(  # type: ignore[no-untyped-def]
        engine_factory, settings, tmp_path: Path, start_history) -> None:
    """The worst moment of the crash above, made certain: Redis has handed the
    engine a batch (XREADGROUP answered, the delivery persisted in the AOF) and
    dies before the engine has published the batch's replies, events and
    XACK. The client then retries its command with the same id, as the API
    does after a 503. Expected: the command applied exactly once, its trade in
    the ledger, no entry left pending, the engine's state equal to a replay of
    the stream (so a later recovery from a snapshot reproduces what clients
    were told)."""
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        # a long BLOCK so the read the engine is caught in does not time out first
        s = settings.model_copy(update={"redis_url": server.url, "snapshot_interval_s": 600.0,
                                        "engine_block_ms": 1_000})
        engine = engine_factory(settings_override=s).start()
        start_history(s)
        load = Load(s, clients=0, users_per_client=0, tag="w")
        load.users = [["w-alice"]]
        load.setup()
        client = redis_lib.Redis.from_url(s.redis_url)
        stream = s.keys.input_stream(0)
        assert engine.proc is not None
        pid = engine.proc.pid
        msg: dict = {}
        try:
            for attempt in range(20):
                msg = {"id": f"open-{attempt}", "type": "open", "user_id": "w-alice", "market": "BTC_USDC_PERP",
                       "side": "long", "qty": 10_000, "leverage": 10, "slippage_bps": 500,
                       "price": load.mid["BTC_USDC_PERP"], "margin_mode": "cross"}
                assert _blocked_in_read(client, f"{s.key_prefix}:engine:0"), "the engine never waited in XREADGROUP"
                os.kill(pid, signal.SIGSTOP)
                entry = client.xadd(stream, {"d": orjson.dumps(msg)})
                time.sleep(0.02)
                if _handed_over(client, stream, entry):
                    break
                os.kill(pid, signal.SIGCONT)  # it was between two reads: let it answer, try again
                assert load.call(client, msg, deadline=time.monotonic() + 10).acknowledged
            else:
                pytest.fail("could not catch the engine inside its read")
            server.crash()  # the batch is the engine's, unpublished
        finally:
            os.kill(pid, signal.SIGCONT)
            client.close()
        server.start()
        time.sleep(1.0)  # the engine reconnects (its backoff starts at 0.1 s)
        client = redis_lib.Redis.from_url(s.redis_url, socket_timeout=10)
        try:
            retried = load.call(client, msg, deadline=time.monotonic() + 20)  # the same id, as a retry
            entries = stream_entries(client, stream)
        finally:
            client.close()
        assert retried.acknowledged, retried.reply
        verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=s).start(),
                                    entries=entries, checker_timeout=HISTORY_WAIT_S)
        verdict.engine.stop()
        print(f"[fault redis_mid_batch] lost={len(verdict.lost)} duplicated={len(verdict.duplicated)} "
              f"problems={verdict.problems}")
        assert verdict.problems == []
        assert verdict.lost == [] and verdict.duplicated == []
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_history_writer_resumes_promptly_after_redis_restarts(  # type: ignore[no-untyped-def]
        engine_factory, settings, tmp_path: Path, start_history) -> None:
    """Redis hands the history writer a batch of events and dies before the
    writer acknowledges it. Once Redis is back the writer must finish that
    batch within seconds (its own pending entries), not wait for its 60 s
    claim of abandoned entries: until then history lags and the checker
    cannot run."""
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        s = settings.model_copy(update={"redis_url": server.url, "snapshot_interval_s": 600.0})
        engine_factory(settings_override=s).start()
        history = start_history(s)
        load = Load(s, clients=0, users_per_client=0, tag="h")
        load.users = [["h-bob"]]
        load.setup()
        assert wait_history_caught_up(s, 20) is not None
        client = redis_lib.Redis.from_url(s.redis_url, socket_timeout=10)
        events = s.keys.event_stream(0)
        assert history.proc is not None
        try:
            for attempt in range(20):
                assert _blocked_in_read(client, f"{s.key_prefix}:history"), "the writer never waited in XREADGROUP"
                os.kill(history.pid, signal.SIGSTOP)
                cmd = load.call(client, {"id": f"h-open-{attempt}", "type": "open", "user_id": "h-bob",
                                         "market": "BTC_USDC_PERP", "side": "short", "qty": 10_000,
                                         "leverage": 5, "slippage_bps": 500, "price": load.mid["BTC_USDC_PERP"],
                                         "margin_mode": "isolated"}, deadline=time.monotonic() + 10)
                assert cmd.acknowledged, cmd.reply
                last = client.xinfo_stream(events)["last-generated-id"]
                time.sleep(0.02)
                summary = client.xpending(events, s.keys.HISTORY_GROUP)
                if summary["pending"] and summary["max"] == last:
                    break
                os.kill(history.pid, signal.SIGCONT)
                assert wait_history_caught_up(s, 10) is not None
            else:
                pytest.fail("could not catch the history writer inside its read")
            client.close()
            server.crash()
        finally:
            os.kill(history.pid, signal.SIGCONT)
        server.start()
        back = time.monotonic()
        caught_up = wait_history_caught_up(s, 15)
        print(f"[fault redis_history] history caught up {None if caught_up is None else round(caught_up, 2)}s "
              f"after Redis came back (limit 15 s)")
        assert caught_up is not None, (
            f"history still behind {time.monotonic() - back:.0f}s after Redis came back: "
            f"{history_lag(redis_lib.Redis.from_url(s.redis_url), s)}")
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_a_read_lost_with_the_redis_connection_is_not_skipped(  # type: ignore[no-untyped-def]
        engine_factory, settings, redis, start_history) -> None:
    """Redis executes the engine's XREADGROUP (the entry is now delivered and
    pending) but the answer is lost with the connection, as in a failover.
    The entry must still be applied once, in its place: otherwise the live
    engine never applies it (a client retry is applied later instead), and a
    recovery that replays the stream applies it where the live engine did
    not: the replayed state and history differ from what clients were told."""
    host = redis.connection_pool.connection_kwargs.get("host", "127.0.0.1")
    port = redis.connection_pool.connection_kwargs.get("port", 6379)
    db = redis.connection_pool.connection_kwargs.get("db", 0)
    proxy = DroppingProxy(host, port)
    try:
        s = settings.model_copy(update={"snapshot_interval_s": 600.0})  # no snapshot: recovery replays it all
        via_proxy = s.model_copy(update={"redis_url": proxy.url(db)})
        engine = engine_factory(settings_override=via_proxy).start()
        start_history(s)
        load = Load(s, clients=0, users_per_client=0, tag="x")
        load.users = [["x-carol"]]
        load.setup()
        client = redis_lib.Redis.from_url(s.redis_url, socket_timeout=10)
        msg = {"id": "open-lost-read", "type": "open", "user_id": "x-carol", "market": "ETH_USDC_PERP",
               "side": "long", "qty": 1_000_000, "leverage": 5, "slippage_bps": 500,
               "price": load.mid["ETH_USDC_PERP"], "margin_mode": "cross"}
        try:
            proxy.arm(b"open-lost-read")
            client.xadd(s.keys.input_stream(0), {"d": orjson.dumps(msg)})
            assert proxy.fired.wait(5), "the engine's read never came through the proxy"
            cmd = load.call(client, msg, deadline=time.monotonic() + 20)  # the client retries, same id
            assert cmd.acknowledged, cmd.reply
            time.sleep(0.5)
            live = client.get(s.keys.account("x-carol"))
            # a routine crash: SIGKILL, restart, replay of the stream
            engine.kill()
            engine = engine_factory(settings_override=via_proxy).start()
            entries = stream_entries(client, s.keys.input_stream(0))
        finally:
            client.close()
        verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=via_proxy).start(),
                                    entries=entries, checker_timeout=HISTORY_WAIT_S)
        verdict.engine.stop()
        print(f"[fault redis_lost_read] lost={len(verdict.lost)} duplicated={len(verdict.duplicated)} "
              f"problems={verdict.problems} duplicated={verdict.duplicated}")
        assert live is not None
        assert verdict.problems == []
        assert verdict.lost == [] and verdict.duplicated == []
    finally:
        proxy.stop()
