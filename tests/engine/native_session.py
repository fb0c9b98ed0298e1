"""A seeded random trading session for comparing the Python sources of the
engine with its mypyc build (tests/engine/test_native.py runs this file in two
processes, one with OPEX_ENGINE_PURE=1, and compares what they print).

Every command type, valid and invalid, retries, prices that swing far enough
to fill limits, hit TP/SL and liquidate both margin modes, funding intervals
and a snapshot round trip in the middle. Prints one JSON line: which build
ran, the number of inputs and events, and a digest of every reply, every
event and the final state's canonical bytes.
"""

from __future__ import annotations

import hashlib
import random
import sys
from typing import Any

import orjson

import opex_engine.core as core
from opex_common import messages as m
from opex_common.markets import DEFAULT_MARKETS
from opex_engine.core.engine import Engine
from opex_engine.core.state import EngineState

MID = {"BTC_USDC_PERP": 1_000_000_000, "ETH_USDC_PERP": 40_000_000, "SOL_USDC_PERP": 1_500_000}


def run(seed: int, n: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    eng = Engine(DEFAULT_MARKETS, dedup_window_ms=600_000)
    digest = hashlib.sha256()
    now = 1_000
    events_seen = 0
    mids = dict(MID)
    users = [f"u{i}" for i in range(12)]
    sent: list[dict[str, Any]] = []

    def feed(msg: Any) -> dict[str, Any] | None:
        nonlocal now, events_seen
        # now and then an hour passes: funding falls due, retries fall out of the dedup window
        now += 3_600_000 if rnd.random() < 0.004 else rnd.choice((1, 5, 50, 2_000))
        rep, evs = eng.apply(f"{now}-{len(sent)}", now, msg)
        digest.update(orjson.dumps(rep, option=orjson.OPT_SORT_KEYS))
        digest.update(orjson.dumps(evs, option=orjson.OPT_SORT_KEYS))
        events_seen += len(evs)
        if isinstance(msg, dict):
            sent.append(msg)
        return rep

    def tick(market: str) -> None:
        spec = DEFAULT_MARKETS[market]
        mids[market] = max(spec.tick_size * 100,
                           mids[market] + rnd.randint(-400, 400) * MID[market] // 10_000 // spec.tick_size
                           * spec.tick_size)
        mid = mids[market]
        feed({"type": m.TICK, "market": market, "bid": mid - spec.tick_size, "ask": mid + spec.tick_size,
              "mark": mid, "index": mid, "funding_rate": rnd.randint(-50_000, 50_000), "next_funding_ms": 0})

    def trade_ids(uid: str) -> list[str]:
        acct = eng.state.accounts.get(uid)
        return sorted(acct.trades) if acct else []

    for market in MID:
        tick(market)
    for uid in users:
        feed({"id": f"c-{uid}", "type": m.CREATE_ACCOUNT, "user_id": uid})
    for i in range(n):
        uid = rnd.choice(users)
        market = rnd.choice(list(MID))
        spec = DEFAULT_MARKETS[market]
        side = rnd.choice(("long", "short"))
        qty = spec.qty_step * rnd.randint(1, 40) * max(1, spec.min_qty // spec.qty_step)
        op = rnd.random()
        mid = mids[market]
        if op < 0.30:
            tick(market)
        elif op < 0.50:
            msg: dict[str, Any] = {"id": f"o{i}", "type": m.OPEN, "user_id": uid, "market": market, "side": side,
                                   "qty": qty, "leverage": rnd.choice((1, 5, 20, spec.max_leverage)),
                                   "slippage_bps": 500, "price": mid,
                                   "margin_mode": rnd.choice(("cross", "isolated"))}
            sign = 1 if side == "long" else -1
            if rnd.random() < 0.3:
                msg["take_profit"] = (mid + sign * mid // 50) // spec.tick_size * spec.tick_size
            if rnd.random() < 0.3:
                msg["stop_loss"] = (mid - sign * mid // 80) // spec.tick_size * spec.tick_size
            feed(msg)
        elif op < 0.62:
            ids = trade_ids(uid)
            tid = rnd.choice(ids) if ids else "missing"
            close: dict[str, Any] = {"id": f"x{i}", "type": m.CLOSE, "user_id": uid, "trade_id": tid}
            if rnd.random() < 0.3:
                close["qty"] = spec.qty_step * rnd.randint(1, 5)
            feed(close)
        elif op < 0.72:
            limit = (mid + rnd.randint(-300, 300) * mid // 10_000) // spec.tick_size * spec.tick_size
            order: dict[str, Any] = {"id": f"l{i}", "type": m.PLACE_ORDER, "user_id": uid, "market": market,
                                     "side": side, "qty": qty, "limit_price": max(spec.tick_size, limit),
                                     "leverage": 10, "margin_mode": rnd.choice(("cross", "isolated")),
                                     "post_only": rnd.random() < 0.2}
            if rnd.random() < 0.2:
                order["expires_ms"] = now + rnd.randint(10, 20_000)
            feed(order)
        elif op < 0.76:
            acct = eng.state.accounts.get(uid)
            oids = sorted(acct.orders) if acct else []
            feed({"id": f"k{i}", "type": m.CANCEL_ORDER, "user_id": uid,
                  "order_id": rnd.choice(oids) if oids else "missing"})
        elif op < 0.82:
            ids = trade_ids(uid)
            if ids:
                t = eng.state.accounts[uid].trades[rnd.choice(ids)]
                px = eng.state.prices[t.market].mark
                tick_size = DEFAULT_MARKETS[t.market].tick_size
                feed({"id": f"t{i}", "type": m.SET_TPSL, "user_id": uid, "trade_id": t.id,
                      "take_profit": (px + t.side * px // 40) // tick_size * tick_size,
                      "stop_loss": None if rnd.random() < 0.5 else (px - t.side * px // 60) // tick_size * tick_size})
        elif op < 0.86:
            ids = trade_ids(uid)
            feed({"id": f"a{i}", "type": m.ADD_MARGIN, "user_id": uid, "trade_id": rnd.choice(ids) if ids else "x",
                  "amount": rnd.randint(1, 5_000_000)})
        elif op < 0.92 and sent:
            feed(rnd.choice(sent))  # a retry: the same reply, nothing changes
        elif op < 0.96:
            feed(rnd.choice([None, [], {"id": f"b{i}", "type": "open", "user_id": uid, "market": market,
                                        "side": "up", "qty": -1}, {"type": "tick", "market": market, "bid": "x"},
                             {"id": 7, "type": "close"}, {"id": f"r{i}", "type": m.RESET_ACCOUNT, "user_id": uid}]))
        else:
            # snapshot round trip mid-session: the restored engine must carry on identically
            snap = orjson.dumps(eng.state.to_snapshot(), option=orjson.OPT_SORT_KEYS)
            eng = Engine(DEFAULT_MARKETS, EngineState.from_snapshot(orjson.loads(snap)), dedup_window_ms=600_000)
    final = orjson.dumps(eng.state.to_snapshot(), option=orjson.OPT_SORT_KEYS)
    digest.update(final)
    problems = eng.state.check_invariants()
    return {"native": core.NATIVE, "inputs": len(sent), "events": events_seen, "problems": problems,
            "digest": digest.hexdigest()}


if __name__ == "__main__":
    print(orjson.dumps(run(int(sys.argv[1]), int(sys.argv[2]))).decode())
