"""Crash recovery against the real Redis and Mongo-wire server.

The test is the only producer on the shard's stream, so it knows every entry
(id and payload). It kills the engine with SIGKILL twice mid-run, restarts it,
and finally stops it with SIGTERM (which writes a last snapshot). That
snapshot must equal, byte for byte, the state of a reference engine that
applied every entry once without stopping; and every reply the clients
received must be the reference's reply for that command.
"""

from __future__ import annotations

import random
import time
import uuid

import orjson
import pytest

from opex_common.messages import encode_canonical
from opex_engine.core.engine import Engine
from opex_engine.snapshots import SnapshotStore, encode_state

MARKETS = {"BTC_USDC_PERP": (1_000_000_000, 1_000), "ETH_USDC_PERP": (40_000_000, 100),
           "SOL_USDC_PERP": (1_500_000, 100)}
STEPS = {"BTC_USDC_PERP": 10_000, "ETH_USDC_PERP": 100_000, "SOL_USDC_PERP": 1_000_000}


class Producer:
    def __init__(self, settings, redis, seed: int = 7) -> None:
        self.settings = settings
        self.redis = redis
        self.rng = random.Random(seed)
        self.stream = settings.keys.input_stream(0)
        self.sent: list[tuple[str, dict]] = []
        self.users = [f"user-{i}" for i in range(12)]
        self.mid = {m: p for m, (p, _) in MARKETS.items()}
        self.commands: list[str] = []

    def _add(self, pipe_items: list[dict]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for msg in pipe_items:
            pipe.xadd(self.stream, {"d": orjson.dumps(msg)})
        for msg, rid in zip(pipe_items, pipe.execute(), strict=True):
            self.sent.append((rid.decode(), msg))
            if "id" in msg:
                self.commands.append(msg["id"])

    def tick(self, market: str, jump_bps: int = 0) -> dict:
        price, tick = MARKETS[market]
        mid = self.mid[market]
        mid += mid * (self.rng.randint(-30, 30) + jump_bps) // 10_000
        mid = max(tick * 10, mid - mid % tick)
        self.mid[market] = mid
        return {"type": "tick", "market": market, "bid": mid - tick, "ask": mid + tick, "mark": mid,
                "index": mid, "funding_rate": self.rng.randint(-2000, 2000), "next_funding_ms": 0}

    def burst(self, n: int) -> None:
        items: list[dict] = []
        for _ in range(n):
            r = self.rng.random()
            market = self.rng.choice(list(MARKETS))
            if r < 0.3:
                items.append(self.tick(market, jump_bps=self.rng.choice([0, 0, 0, -300, 300])))
            elif r < 0.85:
                side = self.rng.choice(["long", "short"])
                mid = self.mid[market]
                items.append({"id": uuid.uuid4().hex, "type": "open", "user_id": self.rng.choice(self.users),
                              "market": market, "side": side, "qty": STEPS[market] * self.rng.randint(1, 40),
                              "leverage": self.rng.choice([2, 10, 25, 50, 100]), "slippage_bps": 500,
                              "price": mid, "margin_mode": self.rng.choice(["cross", "isolated"])})
            else:
                items.append({"id": uuid.uuid4().hex, "type": "reset_account",
                              "user_id": self.rng.choice(self.users)})
        self._add(items)

    def setup(self) -> None:
        items = [self.tick(m) for m in MARKETS]
        items += [{"id": f"create-{u}", "type": "create_account", "user_id": u} for u in self.users]
        self._add(items)


def reference(settings, sent: list[tuple[str, dict]]) -> tuple[Engine, dict[str, dict]]:
    eng = Engine(settings.markets, price_stale_ms=settings.price_stale_ms,
                 dedup_window_ms=settings.dedup_window_ms)
    replies: dict[str, dict] = {}
    for rid, msg in sent:
        rep, _ = eng.apply(rid, int(rid.split("-")[0]), msg)
        if rep is not None:
            replies[rep["id"]] = rep
    return eng, replies


def wait_caught_up(settings, redis, last_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = redis.get(settings.keys.engine_status(0))
        if raw and orjson.loads(raw)["state"] == "ready":
            groups = redis.xinfo_groups(settings.keys.input_stream(0))
            if groups and groups[0]["last-delivered-id"].decode() == last_id and groups[0]["pending"] == 0:
                return
        time.sleep(0.05)
    raise AssertionError("engine did not catch up")


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_mid_run_recovers_exactly(engine_factory, settings, redis):
    settings = settings.model_copy(update={"snapshot_interval_s": 0.3})
    prod = Producer(settings, redis)
    eng = engine_factory(settings_override=settings).start()
    prod.setup()
    for round_no in range(3):
        for _ in range(8):
            prod.burst(150)
            time.sleep(0.05)
        if round_no < 2:
            eng.kill()  # SIGKILL: no final snapshot, replies of the in-flight batch may be lost
            prod.burst(200)  # commands keep arriving while it is down
            eng = engine_factory(settings_override=settings).start()
    wait_caught_up(settings, redis, prod.sent[-1][0])
    # every command was answered (replies live 60 s), and answered as the reference would
    ref, ref_replies = reference(settings, prod.sent)
    got = {}
    pipe = redis.pipeline(transaction=False)
    for cid in prod.commands:
        pipe.lindex(settings.keys.reply(cid), 0)
    for cid, raw in zip(prod.commands, pipe.execute(), strict=True):
        assert raw is not None, f"command {cid} was never answered"
        got[cid] = orjson.loads(raw)
    for cid in prod.commands:
        got[cid]["data"].pop("account", None)  # the runtime attaches the batch's read model
        assert got[cid] == ref_replies[cid]
    assert eng.stop() == 0  # SIGTERM: graceful, final snapshot
    store = SnapshotStore(settings.mongo_url, settings.mongo_db, settings.key_prefix)
    try:
        loaded = store.load_latest(0)
    finally:
        store.close()
    assert loaded is not None
    state, info = loaded
    assert info.last_id == prod.sent[-1][0]
    assert encode_state(state) == encode_state(ref.state)
    assert ref.state.check_invariants() == []
    # something real happened: trades opened, some liquidated, snapshots taken
    assert any(a.trades for a in ref.state.accounts.values())
    assert encode_canonical([1]) == b"[1]"


@pytest.mark.integration
def test_corrupt_snapshot_is_refused_and_state_rebuilt(engine_factory, settings, redis):
    prod = Producer(settings, redis, seed=3)
    eng = engine_factory().start()
    prod.setup()
    prod.burst(100)
    wait_caught_up(settings, redis, prod.sent[-1][0])
    assert eng.stop() == 0
    store = SnapshotStore(settings.mongo_url, settings.mongo_db, settings.key_prefix)
    try:
        # corrupt the newest snapshot's checksum: it must be refused, the older one used
        newest = store._manifests(0)[0]
        store.manifests.delete_one({"_id": newest["_id"]})
        newest["sha256"] = "0" * 64
        store.manifests.insert_one(newest)
    finally:
        store.close()
    prod.burst(50)
    eng = engine_factory().start()
    wait_caught_up(settings, redis, prod.sent[-1][0])
    assert eng.stop() == 0
    ref, _ = reference(settings, prod.sent)
    store = SnapshotStore(settings.mongo_url, settings.mongo_db, settings.key_prefix)
    try:
        state, _ = store.load_latest(0)  # type: ignore[misc]
    finally:
        store.close()
    assert encode_state(state) == encode_state(ref.state)
    assert "snapshot refused" in eng.log_tail(200)
