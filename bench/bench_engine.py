"""Engine figures (issue 2): in-process and through-Redis throughput, tick cost
versus open trades, recovery time, snapshot stall.

    python bench/bench_engine.py [--out bench/results/engine.json] [--quick]

Runs against the machine's Redis and an embedded Mongo-wire server, under a
key prefix of its own (deleted afterwards). Prints a table; writes JSON.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis as redis_lib

ROOT = Path(__file__).resolve().parents[1]
for p in ("layers/common/python", "engine_container", "functions"):
    sys.path.insert(0, str(ROOT / p))

import opex_engine.core as core  # noqa: E402
from opex_common.markets import DEFAULT_MARKETS  # noqa: E402
from opex_engine.core.engine import Engine  # noqa: E402
from opex_engine.localstack import start_mongo_wire  # noqa: E402
from opex_engine.runtime import pack_commands, settle_heap  # noqa: E402
from opex_engine.snapshots import SnapshotStore, encode_state  # noqa: E402

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BTC = "BTC_USDC_PERP"
PRICES = {"BTC_USDC_PERP": 1_000_000_000, "ETH_USDC_PERP": 40_000_000, "SOL_USDC_PERP": 1_500_000}
STEPS = {"BTC_USDC_PERP": 10_000, "ETH_USDC_PERP": 100_000, "SOL_USDC_PERP": 1_000_000}


def tick_msg(market: str, mid: int) -> dict[str, Any]:
    spread = DEFAULT_MARKETS[market].tick_size
    return {"type": "tick", "market": market, "bid": mid - spread, "ask": mid + spread, "mark": mid,
            "index": mid, "funding_rate": 0, "next_funding_ms": 0}


def open_msg(i: int, user: str, market: str = BTC, mode: str = "cross") -> dict[str, Any]:
    return {"id": f"o{i}", "type": "open", "user_id": user, "market": market,
            "side": "long" if i % 2 else "short", "qty": STEPS[market] * (1 + i % 5), "leverage": 5,
            "slippage_bps": 100, "price": PRICES[market], "margin_mode": mode}


def build_engine(trades: int, users: int, t0_ms: int) -> tuple[Engine, list[tuple[str, int, dict[str, Any]]]]:
    """An engine with ``trades`` open trades (half cross, half isolated) at low leverage."""
    eng = Engine(DEFAULT_MARKETS)
    inputs: list[tuple[str, int, dict[str, Any]]] = []
    seq = 0

    def feed(msg: dict[str, Any]) -> None:
        nonlocal seq
        seq += 1
        ms = t0_ms + seq // 1000
        entry = (f"{ms}-{seq}", ms, msg)
        inputs.append(entry)
        eng.apply(*entry)

    for m, p in PRICES.items():
        feed(tick_msg(m, p))
    for u in range(users):
        feed({"id": f"c{u}", "type": "create_account", "user_id": f"u{u}"})
    for i in range(trades):
        market = list(PRICES)[i % 3]
        if i % 1000 == 0:
            feed(tick_msg(market, PRICES[market]))
            feed(tick_msg(list(PRICES)[(i + 1) % 3], PRICES[list(PRICES)[(i + 1) % 3]]))
            feed(tick_msg(list(PRICES)[(i + 2) % 3], PRICES[list(PRICES)[(i + 2) % 3]]))
        o = open_msg(i, f"u{i % users}", market, "cross" if i % 2 else "isolated")
        o["qty"] = STEPS[market]
        o["leverage"] = 2
        feed(o)
    open_count = sum(len(a.trades) for a in eng.state.accounts.values())
    assert open_count == trades, f"only {open_count} of {trades} trades opened"
    return eng, inputs


# ----------------------------------------------------------------------------- figures
def bench_in_process(n: int) -> dict[str, Any]:
    """Commands/s of the pure core: 1,000 accounts, each closing the trade it
    opened in the previous round and opening a new one (the API bench's loop)."""
    eng = Engine(DEFAULT_MARKETS)
    t = 1_000
    for m, p in PRICES.items():
        eng.apply(f"{t}-0", t, tick_msg(m, p))
    for u in range(1000):
        eng.apply(f"{t}-{u + 1}", t, {"id": f"c{u}", "type": "create_account", "user_id": f"u{u}"})
    gc.collect()
    settle_heap()  # the garbage collector tuned as the engine process runs it
    apply = eng.apply
    open_ids: dict[str, str] = {}
    done = opens = 0
    seq = 0
    rounds = n // 2000 + 1
    users = [f"u{u}" for u in range(1000)]
    # the inputs are built before the clock starts (the engine gets them parsed
    # from the stream); only a close's trade id comes from the open before it
    open_msgs = [[{**open_msg(rnd * 1000 + u, users[u]), "id": f"o{rnd}-{u}"} for u in range(1000)]
                 for rnd in range(rounds)]
    close_ids = [[f"x{rnd}-{u}" for u in range(1000)] for rnd in range(rounds)]
    start = time.perf_counter()
    rnd = 0
    while done < n:
        t += 1
        opens_r, closes_r = open_msgs[rnd], close_ids[rnd]
        for u in range(1000):
            user = users[u]
            tid = open_ids.get(user)
            if tid is not None:
                seq += 1
                apply(f"{t}-{seq}", t, {"id": closes_r[u], "type": "close", "user_id": user, "trade_id": tid})
            seq += 1
            rep, _ = apply(f"{t}-{seq}", t, opens_r[u])
            open_ids[user] = rep["data"]["trade"]["id"]  # type: ignore[index]
            opens += 1
            done += 2 if tid is not None else 1
        rnd += 1
    elapsed = time.perf_counter() - start
    assert eng.state.check_invariants() == []
    return {"commands": done, "opens": opens, "commands_per_s": done / elapsed, "seconds": elapsed}


def bench_tick_cost(sizes: list[int]) -> list[dict[str, Any]]:
    """Cost of one price tick that liquidates nothing, indexed vs brute force."""
    rows = []
    for size in sizes:
        eng, _ = build_engine(size, max(100, size // 10), 1_000_000)
        gc.collect()
        t = 2_000_000
        mid = PRICES[BTC]
        samples = []
        for i in range(2000):
            mid += 1_000 if i % 2 else -1_000  # +-$0.10 wiggle: nothing near liquidation
            msg = tick_msg(BTC, mid)
            s = time.perf_counter_ns()
            eng.apply(f"{t + i}-0", t + i, msg)
            samples.append(time.perf_counter_ns() - s)
        eng.brute_force = True
        brute = []
        for i in range(20 if size >= 100_000 else 100):
            msg = tick_msg(BTC, mid + (1_000 if i % 2 else 0))
            s = time.perf_counter_ns()
            eng.apply(f"{t + 5000 + i}-0", t + 5000 + i, msg)
            brute.append(time.perf_counter_ns() - s)
        samples.sort()
        rows.append({
            "open_trades": size,
            "tick_us_p50": samples[len(samples) // 2] / 1000,
            "tick_us_p99": samples[int(len(samples) * 0.99)] / 1000,
            "brute_force_scan_us_p50": statistics.median(brute) / 1000,
        })
        del eng
        gc.collect()
    return rows


def bench_tick_cost_with_orders(trades: int = 30_000, orders: int = 10_000, triggering: int = 100) -> dict[str, Any]:
    """Issue 6's figure: the tick cost with 10,000 resting limit orders and
    10,000 TP/SL triggers live: nothing triggering, then ``triggering`` orders
    filling on one tick (cost must follow what triggers, not what is live)."""
    eng, _ = build_engine(trades, max(100, trades // 10), 1_000_000)
    t = 2_000_000
    seq = 0

    def feed(msg: dict[str, Any]) -> Any:
        nonlocal seq
        seq += 1
        return eng.apply(f"{t}-{seq}", t, msg)

    for m, p in PRICES.items():
        feed(tick_msg(m, p))
    tick = DEFAULT_MARKETS[BTC].tick_size
    n_tpsl = 0
    for acct in list(eng.state.accounts.values()):  # TP and SL on every BTC trade, far away
        for tr in list(acct.trades.values()):
            if tr.market == BTC and n_tpsl < 10_000:
                tp = tr.entry + tr.side * 200_000_000
                sl = tr.entry - tr.side * 200_000_000
                tp -= tp % tick
                sl -= sl % tick
                rep, _ = feed({"id": f"tpsl{n_tpsl}", "type": "set_tpsl", "user_id": acct.user_id,
                               "trade_id": tr.id, "take_profit": tp, "stop_loss": sl})
                n_tpsl += 1 if rep and rep["ok"] else 0
    users = sorted(eng.state.accounts)
    placed = 0
    for i in range(orders):  # buy limits spread 1% to 11% below the market; the nearest trigger first
        near = i < triggering
        limit = PRICES[BTC] - (tick * 5 if near else 10_000_000 + (i % 1000) * 100_000)
        limit -= limit % tick
        rep, _ = feed({"id": f"lim{i}", "type": "place_order", "user_id": users[i % len(users)], "market": BTC,
                       "side": "long", "qty": STEPS[BTC], "leverage": 10, "limit_price": limit,
                       "post_only": True})
        placed += 1 if rep and rep["ok"] else 0
    gc.collect()
    mid = PRICES[BTC] + 2 * tick
    quiet = []
    for i in range(2000):
        t += 1
        msg = tick_msg(BTC, mid + (tick if i % 2 else 0))
        s0 = time.perf_counter_ns()
        eng.apply(f"{t}-0", t, msg)
        quiet.append(time.perf_counter_ns() - s0)
    quiet.sort()
    t += 1
    s0 = time.perf_counter_ns()
    _, events = eng.apply(f"{t}-0", t, tick_msg(BTC, PRICES[BTC] - tick * 10))  # crosses the near limits
    fill_ns = time.perf_counter_ns() - s0
    filled = sum(1 for e in events if e["type"] == "order_closed" and e.get("reason") == "filled")
    assert eng.state.check_invariants() == []
    return {"open_trades": trades, "resting_orders": placed, "tpsl_trades": n_tpsl,
            "quiet_tick_us_p50": quiet[len(quiet) // 2] / 1000, "quiet_tick_us_p99": quiet[int(len(quiet) * .99)] / 1000,
            "orders_filled_on_one_tick": filled, "tick_with_fills_us": fill_ns / 1000,
            "per_fill_us": fill_ns / 1000 / max(filled, 1)}


def _start_engine(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "opex_engine", "engine", "--shard", "0"], env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, cwd=ROOT)  # noqa: SIM115


def _wait_status(r: redis_lib.Redis, key: str, pid: int, state: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = r.get(key)
        if raw:
            st = orjson.loads(raw)
            if st["pid"] == pid and st["state"] == state:
                return st  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise TimeoutError(f"engine not {state} in {timeout}s")


def _env(prefix: str, mongo_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"KEY_PREFIX": prefix, "REDIS_URL": REDIS_URL, "MONGO_URL": mongo_url,
                "MONGO_DB": "opex_bench", "ENGINE_SHARDS": "1", "ENVIRONMENT": "test",
                "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in
                                              ("layers/common/python", "engine_container", "functions"))})
    env.update(extra)
    return env


def bench_through_redis(n: int, mongo_url: str, workdir: Path, producers: int = 2) -> dict[str, Any]:
    """Commands/s from XADD to reply through a real engine process."""
    prefix = f"opex-bench-{uuid.uuid4().hex[:6]}"
    r = redis_lib.Redis.from_url(REDIS_URL)
    env = _env(prefix, mongo_url, SNAPSHOT_INTERVAL_S="3600")
    proc = _start_engine(env, workdir / "engine-redis.log")
    try:
        _wait_status(r, f"{prefix}:engine:0:status", proc.pid, "ready")
        stream = f"{prefix}:in:0"
        pipe = r.pipeline(transaction=False)
        for m, p in PRICES.items():
            pipe.xadd(stream, {"d": orjson.dumps(tick_msg(m, p))})
        for u in range(1000):
            pipe.xadd(stream, {"d": orjson.dumps({"id": f"c{u}", "type": "create_account", "user_id": f"u{u}"})})
        pipe.execute()
        r.blpop([f"{prefix}:reply:c999"], timeout=30)

        def producer(users: list[str], quota: int, out: list[int]) -> None:
            # Rounds: every user closes the trade it opened last round and opens
            # a new one, all in flight at once, then reads every reply, as the
            # API's many concurrent requests would. The client shares the
            # machine's two cores with the engine and Redis, so it is kept
            # lean: commands as JSON templates, packed by the engine loop's own
            # packer on one connection, replies checked without a full parse.
            conn = redis_lib.Redis.from_url(REDIS_URL).connection_pool.get_connection()
            reply_key = f"{prefix}:reply:".encode()
            open_ids: dict[str, bytes] = {}
            sent = rnd = 0
            while sent < quota:
                cmds: list[tuple[bytes, str | None]] = []  # (command id, user whose open it is)
                xadds: list[tuple[Any, ...]] = []
                for user in users:
                    u = user.encode()
                    tid = open_ids.get(user)
                    if tid is not None:
                        cid = b"x%d-%b" % (rnd, u)
                        body = b'{"id":"%b","type":"close","user_id":"%b","trade_id":"%b"}' % (cid, u, tid)
                        cmds.append((cid, None))
                        xadds.append(("XADD", stream, "*", "d", body))
                    i = rnd * 1000 + int(user[1:])
                    cid = b"o%d-%b" % (rnd, u)
                    body = (b'{"id":"%b","type":"open","user_id":"%b","market":"%b","side":"%b","qty":%d,'
                            b'"leverage":5,"slippage_bps":100,"price":%d,"margin_mode":"cross"}'
                            % (cid, u, BTC.encode(), b"long" if i % 2 else b"short", STEPS[BTC] * (1 + i % 5),
                               PRICES[BTC]))
                    cmds.append((cid, user))
                    xadds.append(("XADD", stream, "*", "d", body))
                conn.send_packed_command([pack_commands(xadds)], check_health=False)
                for _ in cmds:
                    conn.read_response()
                conn.send_packed_command([pack_commands([("BLPOP", reply_key + cmds[-1][0], 60)])],
                                         check_health=False)
                got = conn.read_response()
                assert got, "engine did not answer"
                conn.send_packed_command([pack_commands([("LPOP", reply_key + cid) for cid, _ in cmds[:-1]])],
                                         check_health=False)
                replies = [conn.read_response() for _ in cmds[:-1]]
                replies.append(got[1])
                for (_, opener), raw in zip(cmds, replies, strict=True):
                    assert raw is not None and b'"ok":true' in raw[:200], raw
                    if opener is not None:
                        at = raw.index(b'"trade":{"id":"') + 15
                        open_ids[opener] = raw[at : raw.index(b'"', at)]
                sent += len(cmds)
                rnd += 1
            conn.disconnect()
            out.append(sent)

        # Two clients with 500 users each: while the engine works through one
        # client's round the other sends or reads its own (one client alone
        # would leave the engine idle while it builds and reads its rounds).
        groups = [[f"u{u}" for u in range(k, 1000, producers)] for k in range(producers)]
        counts: list[int] = []
        threads = [threading.Thread(target=producer, args=(g, n // producers, counts)) for g in groups]
        start = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        sent = sum(counts)
        assert len(counts) == producers, "a client failed"
        elapsed = time.perf_counter() - start
        return {"commands": sent, "commands_per_s": sent / elapsed, "seconds": elapsed, "clients": producers}
    finally:
        proc.terminate()
        proc.wait(60)
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)


def bench_recovery_and_stall(trades: int, after: int, mongo_url: str, workdir: Path) -> dict[str, Any]:
    """Boot from a snapshot of ``trades`` open trades plus ``after`` stream
    entries; then measure the fork stall of periodic snapshots under load."""
    prefix = f"opex-bench-{uuid.uuid4().hex[:6]}"
    r = redis_lib.Redis.from_url(REDIS_URL)
    t0 = int(time.time() * 1000) - 3_600_000
    eng, _ = build_engine(trades, max(100, trades // 10), t0)
    payload = encode_state(eng.state)
    store = SnapshotStore(mongo_url, "opex_bench", prefix)
    store.save(0, eng.state.last_id, payload)
    store.close()
    stream = f"{prefix}:in:0"
    users = [f"u{i}" for i in range(max(100, trades // 10))]
    batch: list[bytes] = []
    for i in range(after):
        if i % 10 == 0:
            market = list(PRICES)[i % 3]
            batch.append(orjson.dumps(tick_msg(market, PRICES[market] + (i % 7) * DEFAULT_MARKETS[market].tick_size)))
        else:
            o = open_msg(i, users[i % len(users)], list(PRICES)[i % 3])
            o["id"] = f"r{i}"
            o["qty"] = STEPS[o["market"]]
            o["leverage"] = 2
            o["slippage_bps"] = 10_000
            batch.append(orjson.dumps(o))
    for k in range(0, len(batch), 5000):
        pipe = r.pipeline(transaction=False)
        for raw in batch[k : k + 5000]:
            pipe.xadd(stream, {"d": raw})
        pipe.execute()
    del eng
    gc.collect()
    env = _env(prefix, mongo_url, SNAPSHOT_INTERVAL_S="2", ENGINE_BATCH="2000")
    proc = _start_engine(env, workdir / "engine-recovery.log")
    try:
        t_start = time.perf_counter()
        st = _wait_status(r, f"{prefix}:engine:0:status", proc.pid, "ready", timeout=300)
        wall = time.perf_counter() - t_start
        # keep trading while periodic snapshots fork
        deadline = time.monotonic() + 9
        i = 0
        while time.monotonic() < deadline:
            pipe = r.pipeline(transaction=False)
            for _ in range(200):
                market = list(PRICES)[i % 3]
                pipe.xadd(stream, {"d": orjson.dumps(tick_msg(market, PRICES[market]))})
                i += 1
            pipe.execute()
            time.sleep(0.05)
        st2 = orjson.loads(r.get(f"{prefix}:engine:0:status"))  # type: ignore[arg-type]
        return {"open_trades": trades, "entries_after_snapshot": after,
                "recovery_seconds": st["boot_seconds"], "recovery_wall_seconds_incl_process_start": wall,
                "snapshots_taken": st2["snapshots"], "snapshot_stall_ms_max": st2["max_fork_ms"],
                "engine_rss_mb": st2.get("rss_mb"),
                "snapshot_bytes": len(payload)}
    finally:
        proc.terminate()
        proc.wait(120)
        for key in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(key)


def table(rows: list[tuple[str, str, str]]) -> str:
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c:<{w[2]}}" for a, b, c in rows)


def run(quick: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="opex-bench-"))
    mongo_url = os.environ.get("MONGO_URL")
    server = None
    if not mongo_url:
        server = start_mongo_wire(work / "mongo")
        mongo_url = server.url
    try:
        res: dict[str, Any] = {"native": core.NATIVE}
        res["in_process"] = bench_in_process(20_000 if quick else 100_000)
        res["through_redis"] = bench_through_redis(20_000 if quick else 100_000, mongo_url, work)
        res["tick_cost"] = bench_tick_cost([1_000, 10_000] if quick else [1_000, 10_000, 100_000])
        res["tick_cost_with_orders"] = bench_tick_cost_with_orders()
        res["recovery"] = bench_recovery_and_stall(10_000 if quick else 100_000, 10_000 if quick else 100_000,
                                                   mongo_url, work)
    finally:
        if server:
            server.stop()
    rows = [("figure", "value", "target"),
            ("engine core, commands/s in-process", f"{res['in_process']['commands_per_s']:,.0f}", ">= 100,000"),
            ("engine through Redis, commands/s", f"{res['through_redis']['commands_per_s']:,.0f}", ">= 20,000")]
    for row in res["tick_cost"]:
        rows.append((f"tick cost at {row['open_trades']:,} open trades (p50/p99 us)",
                     f"{row['tick_us_p50']:.1f} / {row['tick_us_p99']:.1f}",
                     f"< 1000 us; brute-force scan {row['brute_force_scan_us_p50']:,.0f} us"))
    wo = res["tick_cost_with_orders"]
    rows.append((f"tick, {wo['resting_orders']:,} resting limits + {wo['tpsl_trades']:,} TP/SL live (p50/p99 us)",
                 f"{wo['quiet_tick_us_p50']:.1f} / {wo['quiet_tick_us_p99']:.1f}", "follows what triggers"))
    rows.append((f"tick filling {wo['orders_filled_on_one_tick']} limit orders (us, per fill)",
                 f"{wo['tick_with_fills_us']:,.0f} ({wo['per_fill_us']:.1f} each)", ""))
    rec = res["recovery"]
    rows.append((f"recovery, {rec['open_trades']:,} trades + {rec['entries_after_snapshot']:,} entries (s)",
                 f"{rec['recovery_seconds']:.2f}", "< 5 s"))
    rows.append(("longest snapshot stall (ms)", f"{rec['snapshot_stall_ms_max']:.2f}", "< 10 ms"))
    print(table(rows))
    return res


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench/results/engine.json"))
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    res = run(args.quick)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(orjson.dumps(res, option=orjson.OPT_INDENT_2).decode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
