"""Fault: the Mongo-wire server (snapshots) dies under load, then comes back.

The test runs an nx-27017 server of its own (the run's shared one stays up),
kills it, and checks that snapshots fail with a log line and are retried while
trading goes on; that once it is back (same port, same data directory) a
snapshot succeeds; and that recovery from it works: the engine is killed with
SIGKILL and restarted from that snapshot plus the stream.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import orjson
import pymongo
import pytest
import redis as redis_lib

from opex_engine.localstack import start_mongo_wire
from tests.faults.support import (
    Figures,
    Load,
    count_trade_commands,
    free_port,
    record_figures,
    verify_after_load,
    wait_until,
)

MAX_PAUSE_S = 1.0


def _status(client: redis_lib.Redis, settings) -> dict:  # type: ignore[no-untyped-def]
    raw = client.get(settings.keys.engine_status(0))
    return orjson.loads(raw) if raw else {}


def _newest_snapshot_ms(settings) -> int:  # type: ignore[no-untyped-def]
    """created_ms of the newest snapshot manifest of this test (0: none)."""
    mc: pymongo.MongoClient = pymongo.MongoClient(settings.mongo_url, serverSelectionTimeoutMS=2000)
    try:
        doc = mc[settings.mongo_db]["engine_snapshot_manifests"].find_one(
            {"ns": settings.key_prefix, "shard": 0}, sort=[("created_ms", -1)])
        return int(doc["created_ms"]) if doc else 0
    except pymongo.errors.PyMongoError:
        return 0
    finally:
        mc.close()


@pytest.mark.slow
@pytest.mark.integration
def test_mongo_down_then_back(engine_factory, settings, redis, tmp_path: Path,  # type: ignore[no-untyped-def]
                              start_history) -> None:
    port, data = free_port(), tmp_path / "mongo"
    mongo = start_mongo_wire(data, port)
    try:
        s = settings.model_copy(update={"mongo_url": mongo.url, "snapshot_interval_s": 0.5})
        engine = engine_factory(settings_override=s).start()
        start_history(s)
        load = Load(s, clients=2, users_per_client=5, seed=41, tag="m")
        load.setup()
        load.start()
        client = redis_lib.Redis.from_url(s.redis_url)
        try:
            wait_until(lambda: _status(client, s).get("snapshots", 0) >= 2, 20, "snapshots before the outage")
            before_ms = _newest_snapshot_ms(s)
            down_at = time.monotonic()
            mongo.proc.send_signal(signal.SIGKILL)  # a crash, not a clean stop
            mongo.proc.wait(10)
            # the forked snapshot writer gives up after pymongo's server selection timeout
            wait_until(lambda: "snapshot failed" in engine.log_path.read_text(errors="replace"), 30,
                       "the 'snapshot failed' log line")
            failed_logged_s = time.monotonic() - down_at
            time.sleep(1.0)
            mongo = start_mongo_wire(data, port)
            up_at = time.monotonic()
            replies_during = load.replies_between(down_at, up_at)
            pause = load.max_reply_gap(down_at, up_at)
            wait_until(lambda: _newest_snapshot_ms(s) > before_ms, 30, "a snapshot after Mongo is back")
            recovered_s = time.monotonic() - up_at
            time.sleep(1.1)  # the status heartbeat (1 s)
            status = _status(client, s)
            # recovery from the snapshot taken after the outage
            time.sleep(0.5)
            engine.kill()
            engine = engine_factory(settings_override=s).start()
            time.sleep(1.0)
        finally:
            load.stop()
            client.close()
        loaded = [orjson.loads(line) for line in engine.log_path.read_text(errors="replace").splitlines()
                  if '"snapshot loaded"' in line]

        fig = Figures("mongo_outage")
        count_trade_commands(fig, load.trade_commands())
        verdict = verify_after_load(s, load, engine, lambda: engine_factory(settings_override=s).start())
        verdict.engine.stop()
        fig.lost, fig.duplicated = len(verdict.lost), len(verdict.duplicated)
        fig.recover_s = recovered_s
        fig.extra = {"outage_s": round(up_at - down_at, 1), "failure_logged_after_s": round(failed_logged_s, 2),
                     "snapshot_failures": status.get("snapshot_failures"), "replies_during_outage": replies_during,
                     "max_trading_pause_s": round(pause, 3), "recover_means": "first snapshot after Mongo is back"}
        record_figures(fig)

        assert status.get("snapshot_failures", 0) >= 1
        assert pause < MAX_PAUSE_S, f"trading paused for {pause:.2f}s while Mongo was down"
        assert replies_during > 20
        assert loaded, "the restarted engine did not load a snapshot"
        # the snapshot it recovered from was written after Mongo came back ("{ns}:{shard}:{last id}:{created ms}")
        assert int(loaded[-1]["snapshot"].rsplit(":", 1)[1]) > before_ms, loaded[-1]
        assert fig.unanswered == 0
        assert verdict.problems == []
        assert verdict.lost == [] and verdict.duplicated == []
    finally:
        mongo.stop()
