"""The pusher's fan-out against moto's @connections API (boto3 through moto, no sockets).

Each test runs the real Pusher (its asyncio state machine and the Poster,
in its default greenlet mode unless said) and reads what moto received.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from opex_engine.pusher.config import PusherSettings
from opex_engine.pusher.frames import AccountUpdate
from opex_engine.pusher.poster import OK, Poster
from opex_engine.pusher.pusher import Pusher
from opex_engine.pusher.registry import Registration
from tests.ws.support import BTC, ETH, MOTO_CALLBACK_URL, MotoApi, price

pytestmark = pytest.mark.unit


def make(rate: float = 10.0, threads: int = 8, partition: tuple[int, int] = (0, 1),
         **kw: Any) -> tuple[Pusher, list[tuple[str, str]]]:
    s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url=MOTO_CALLBACK_URL,
                       ws_price_rate_per_s=rate, ws_push_concurrency=threads, **kw)
    gone: list[tuple[str, str]] = []
    pusher = Pusher(s, Poster(s), partition=partition, on_gone=lambda c, u: gone.append((c, u)))
    return pusher, gone


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def reg(cid: str, user: str, *markets: str) -> Registration:
    return Registration(cid, user, frozenset(markets))


def btc(i: int, ts: int | None = None) -> dict[str, Any]:
    return price(1_000_000_000 + i * 10_000, 1_000_010_000 + i * 10_000, ts=ts if ts is not None else i)


def acct(user: str, balance: int) -> dict[str, Any]:
    return {"user_id": user, "balance": balance, "realized_pnl": 0, "fees_paid": 0, "funding_paid": 0,
            "trades": [], "orders": [], "version": 1, "updated_ms": 0}


def test_prices_are_coalesced_at_the_capped_rate(moto_api: MotoApi) -> None:
    async def scenario() -> Pusher:
        pusher, _ = make(rate=10.0)
        pusher.poster.warm_up()
        for i in range(3):
            pusher.upsert(reg(f"c{i}", f"u{i}", BTC))
        pusher.upsert(reg("eth", "u9", ETH))
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < 1.0:  # 40 ticks a second for a second
            pusher.on_prices({BTC: btc(i)})
            i += 1
            await asyncio.sleep(0.025)
        await asyncio.sleep(0.25)
        await pusher.drain(5)
        pusher.stats["ticks"] = i
        pusher.poster.close()
        return pusher

    pusher = run(scenario())
    ticks = pusher.stats["ticks"]
    assert ticks >= 20
    for i in range(3):
        got = moto_api.frames(f"c{i}")
        times = moto_api.times(f"c{i}")
        # at most 10 a second (+1 for the first, sent at once), far fewer than the ticks
        assert 4 <= len(got) <= 13, len(got)
        assert all(b - a >= 0.08 for a, b in zip(times, times[1:], strict=False)), times
        assert all(set(f["prices"]) == {BTC} and f["type"] == "prices" and f["decimal"] == 4 for f in got)
        # the last frame carries the last price: nothing is lost by coalescing
        assert got[-1]["prices"][BTC]["ts"] == ticks - 1
    assert moto_api.frames("eth") == []


def test_one_frame_carries_every_subscribed_market(moto_api: MotoApi) -> None:
    async def scenario() -> None:
        pusher, _ = make(rate=2.0)
        pusher.upsert(reg("c1", "u1", BTC, ETH))
        pusher.on_prices({BTC: btc(1)})  # sent at once
        await asyncio.sleep(0.05)
        pusher.on_prices({BTC: btc(2)})
        pusher.on_prices({ETH: price(30_000_000, 30_001_000)})  # both wait for the next slot
        await asyncio.sleep(0.6)
        await pusher.drain(5)
        pusher.poster.close()

    run(scenario())
    got = moto_api.frames("c1")
    assert [sorted(f["prices"]) for f in got] == [[BTC], [BTC, ETH]]
    assert got[1]["prices"][BTC]["ts"] == 2


def test_a_new_subscriber_gets_the_latest_prices_at_once(moto_api: MotoApi) -> None:
    async def scenario() -> None:
        pusher, _ = make(rate=1.0)
        pusher.on_prices({BTC: btc(7), ETH: price(30_000_000, 30_001_000)})
        pusher.upsert(reg("c1", "u1", BTC))
        await pusher.drain(5)
        pusher.upsert(reg("c1", "u1", BTC))  # no change: nothing sent
        await pusher.drain(5)
        pusher.poster.close()

    run(scenario())
    got = moto_api.frames("c1")
    assert len(got) == 1 and list(got[0]["prices"]) == [BTC] and got[0]["prices"][BTC]["ts"] == 7


def test_a_slow_connection_skips_frames_and_never_delays_the_others(moto_api: MotoApi) -> None:
    """In threads: moto answers inside the boto3 call (a sleep here), not on a
    socket, so a greenlet could not yield while it waits. The greenlet mode's
    version of this test is against real sockets (test_ws_cooperative.py)."""
    moto_api.slow["slow"] = 0.8

    async def scenario() -> None:
        pusher, _ = make(rate=10.0, threads=4, ws_push_mode="threads")
        pusher.upsert(reg("slow", "u0", BTC))
        for i in range(3):
            pusher.upsert(reg(f"fast{i}", f"u{i + 1}", BTC))
        for i in range(20):  # 2 seconds of ticks at 10 a second
            pusher.on_prices({BTC: btc(i)})
            await asyncio.sleep(0.1)
        await pusher.drain(5)
        pusher.poster.close()

    run(scenario())
    # Bounds are relative to the slow connection's 0.8 s posts, not tight
    # timings: CI machines are shared. The fast ones must not wait on it.
    slow = moto_api.frames("slow")
    for i in range(3):
        times = moto_api.times(f"fast{i}")
        assert len(times) >= 10 and len(times) >= 2 * len(slow), (len(times), len(slow))
        assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 0.8  # never one slow post long
    assert 2 <= len(slow) <= 6  # one post at a time: the frames in between are skipped...
    assert moto_api.max_in_flight["slow"] == 1
    assert slow[-1]["prices"][BTC]["ts"] == 19  # ...and the newest price still arrives


def test_gone_drops_that_connection_only(moto_api: MotoApi) -> None:
    moto_api.gone.add("left")

    async def scenario() -> tuple[Pusher, list[tuple[str, str]]]:
        pusher, gone = make(rate=10.0)
        pusher.upsert(reg("left", "u1", BTC))
        pusher.upsert(reg("stays", "u1", BTC))
        pusher.on_prices({BTC: btc(1)})
        await pusher.drain(5)
        await asyncio.sleep(0.15)
        pusher.on_prices({BTC: btc(2)})
        await pusher.drain(5)
        pusher.poster.close()
        return pusher, gone

    pusher, gone = run(scenario())
    assert gone == [("left", "u1")]
    assert set(pusher.conns) == {"stays"}
    assert {c.id for c in pusher.by_user["u1"]} == {"stays"}
    assert len(moto_api.frames("stays")) == 2
    assert pusher.stats["gone"] == 1


def test_account_changes_reach_only_their_owner(moto_api: MotoApi) -> None:
    events = [{"type": "ledger", "user_id": "u1", "kind": "fee", "amount": -500, "balance_after": 99_999_500}]

    async def scenario() -> None:
        pusher, _ = make()
        pusher.upsert(reg("a1", "u1", BTC))
        pusher.upsert(reg("a2", "u1"))
        pusher.upsert(reg("b1", "u2", BTC))
        pusher.on_accounts([AccountUpdate("u1", acct("u1", 99_999_500), events),
                            AccountUpdate("nobody", acct("nobody", 1), [])])
        await pusher.drain(5)
        pusher.poster.close()

    run(scenario())
    for cid in ("a1", "a2"):
        (frame,) = moto_api.frames(cid)
        assert frame["type"] == "account" and frame["events"] == events
        assert frame["account"]["balance"] == 99_999_500 and frame["account"]["equity"] == 99_999_500
    assert moto_api.frames("b1") == []


def test_account_updates_merge_while_in_flight_and_are_retried(moto_api: MotoApi) -> None:
    moto_api.failing["a1"] = 2  # the first two posts fail with a 500

    async def scenario() -> Pusher:
        pusher, _ = make(ws_account_retries=3)
        pusher.upsert(reg("a1", "u1"))
        pusher.on_accounts([AccountUpdate("u1", acct("u1", 100), [{"type": "ledger", "n": 1}])])
        pusher.on_accounts([AccountUpdate("u1", acct("u1", 200), [{"type": "ledger", "n": 2}])])
        for _ in range(40):
            await asyncio.sleep(0.05)
            await pusher.drain(5)
            if moto_api.frames("a1"):
                break
        pusher.poster.close()
        return pusher

    pusher = run(scenario())
    (frame,) = moto_api.frames("a1")
    assert frame["account"]["balance"] == 200  # the newest account...
    assert [e["n"] for e in frame["events"]] == [1, 2]  # ...with every event, in order
    assert pusher.stats["account_failed"] == 2


def test_account_frames_are_dropped_after_the_retries(moto_api: MotoApi) -> None:
    moto_api.failing["a1"] = 100

    async def scenario() -> Pusher:
        pusher, _ = make(ws_account_retries=2)
        pusher.upsert(reg("a1", "u1"))
        pusher.on_accounts([AccountUpdate("u1", acct("u1", 100), [])])
        for _ in range(30):
            await asyncio.sleep(0.05)
            if pusher.stats["account_dropped"]:
                break
        await pusher.drain(5)
        pusher.poster.close()
        return pusher

    pusher = run(scenario())
    assert pusher.stats["account_dropped"] == 1 and pusher.stats["account_failed"] == 3
    assert "a1" in pusher.conns  # a failure is not a Gone


def test_partitions_split_the_connections(moto_api: MotoApi) -> None:
    async def scenario() -> tuple[Pusher, Pusher]:
        p0, _ = make(partition=(0, 2))
        p1, _ = make(partition=(1, 2))
        for i in range(50):
            p0.upsert(reg(f"c{i}", "u", BTC))
            p1.upsert(reg(f"c{i}", "u", BTC))
        p0.poster.close()
        p1.poster.close()
        return p0, p1

    p0, p1 = run(scenario())
    assert not set(p0.conns) & set(p1.conns)
    assert len(p0.conns) + len(p1.conns) == 50 and p0.conns and p1.conns


def test_a_full_registry_read_does_not_undo_newer_changes(moto_api: MotoApi) -> None:
    async def scenario() -> Pusher:
        pusher, _ = make()
        pusher.upsert(reg("old", "u1", BTC))
        pusher.upsert(reg("removed-later", "u1", BTC))
        started = pusher.loop.time()
        await asyncio.sleep(0.01)
        pusher.upsert(reg("new", "u2", BTC))  # notified while the read ran
        pusher.remove("removed-later")
        # the read saw "old" and "removed-later", not "new"; "expired" is gone from it
        pusher.replace_all({"old": reg("old", "u1", BTC), "removed-later": reg("removed-later", "u1", BTC)},
                           started)
        after = pusher.loop.time()
        pusher.replace_all({"new": reg("new", "u2", ETH)}, after)
        pusher.poster.close()
        return pusher

    pusher = run(scenario())
    assert set(pusher.conns) == {"new"}
    assert pusher.conns["new"].markets == frozenset({ETH})
    assert pusher.by_market[BTC] == set()


class ManualPoster:
    """A poster whose posts the test finishes, one at a time, when it chooses."""

    mode = "threads"
    last_error = None

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, tuple[Any, ...]]] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self.jobs.append((fn, args))

    def post(self, connection_id: str, data: bytes) -> tuple[int, float]:
        return OK, 0.0  # "began" long ago: the rate adds no wait for a slot

    def finish_next(self) -> None:
        fn, args = self.jobs.pop(0)
        fn(*args)


def test_drain_waits_for_the_frame_that_replaces_a_finished_post() -> None:
    """A post finishing with a newer frame already due starts that frame before
    it counts as done: drain (the pusher's last act when stopping) never sees
    zero in flight in between, so the newest price is not dropped."""
    async def scenario() -> None:
        s = PusherSettings(environment="test", key_prefix="unit", ws_callback_url=MOTO_CALLBACK_URL,
                           ws_price_rate_per_s=50.0)
        poster = ManualPoster()
        pusher = Pusher(s, poster)  # type: ignore[arg-type]
        pusher.upsert(reg("c1", "u1", BTC))
        pusher.on_prices({BTC: btc(1)})
        pusher.on_prices({BTC: btc(2)})  # while the first post is out: only marks the market dirty
        assert len(poster.jobs) == 1 and pusher.in_flight == 1
        drained = asyncio.ensure_future(pusher.drain(2))
        await asyncio.sleep(0.03)  # the next frame is due (50 a second: 20 ms)
        poster.finish_next()
        await asyncio.sleep(0.05)
        assert len(poster.jobs) == 1 and pusher.in_flight == 1  # the newer frame went out at once
        assert not drained.done()
        poster.finish_next()
        assert await drained is True and pusher.in_flight == 0

    run(scenario())
