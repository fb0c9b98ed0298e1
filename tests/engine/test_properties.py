"""Property-based tests of the engine: random command and price sequences.

Each example drives two engines with the same inputs, one with the trigger
index (production) and one brute force (every trade checked on every tick),
over 2-4 users and all three markets, with violent moves, wide spreads, funding
(every 20 s, or hourly with long waits between inputs) and stale prices; users
open and close at market, place limit orders (post-only, good-till-time,
reduce-only; resting or marketable), cancel them (their own, someone else's,
unknown ones), set / change / clear TP and SL, and add margin to trades.
After every input:
- the invariants hold (conservation exact, nothing negative);
- both engines gave the same reply, the same events and the same state bytes;
- a repeated command id returned its original reply and changed nothing.
At the end, every account's ledger events sum to its balance (each
``balance_after`` is the running sum), and the state saved at a random step and
loaded into a fresh engine replays the remaining inputs to the same bytes and
the same events.

Deterministic: derandomized hypothesis, no example database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opex_common import messages as m
from opex_common.margin import (
    cross_liquidation_price,
    initial_margin,
    isolated_is_liquidatable,
    isolated_trigger_price,
    isolated_watch_level,
    maintenance,
    pnl,
)
from opex_common.units import NOTIONAL_DIV, RATE_SCALE
from opex_engine.core.state import EngineState
from tests.engine.kit import BTC, ETH, SOL, Kit, core_bytes, markets_with, restore, state_bytes

pytestmark = pytest.mark.unit

SYMBOLS = (BTC, ETH, SOL)
# funding every 20 s so that sequences of a minute or two see several payments;
# or the real hourly interval, which the "wait" op (up to an hour of silence) crosses
FUNDING_INTERVALS = (20_000, 3_600_000)
# SOL's liquidation fee is below its maintenance rate, so an isolated liquidation there
# hands money back to the balance (which moves the cross equity of its account)
MARKETS_BY_FUNDING = {
    iv: markets_with(**{BTC: {"funding_interval_ms": iv}, ETH: {"funding_interval_ms": iv},
                        SOL: {"funding_interval_ms": iv, "liquidation_fee": 2_000}})
    for iv in FUNDING_INTERVALS
}
MARKETS = MARKETS_BY_FUNDING[20_000]
BASE = {BTC: 500_000_000, ETH: 30_000_000, SOL: 1_500_000}  # 50,000 / 3,000 / 150
USERS = ("alice", "bob", "carol", "dave")

PROFILE = settings(derandomize=True, database=None, deadline=None, max_examples=2_000,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------ op strategies
dt = st.sampled_from([0] * 8 + [1, 100, 500, 1_000, 2_000] * 3 + [16_000])  # ms; 16 s: stale
market = st.sampled_from(SYMBOLS)
user = st.sampled_from([0, 0, 0, 1, 2, 3])  # the first user does the most
move = st.one_of(st.integers(-40, 40), st.integers(-2_500, 2_500))  # bps; the second liquidates
tick_op = st.tuples(
    st.just("tick"), market, move,
    st.sampled_from([0, 0, 2, 10, 80, 400]),  # spread, bps
    st.integers(-3, 3),  # mark vs mid, in quarters of the spread (outside the book sometimes)
    st.integers(0, 99_999),  # sub-tick digits of the mark
    st.sampled_from([0, 0, 0, 12_345, -12_345, 1_000_000, -3_000_000]),  # funding, 1e-9
    dt,
)
open_op = st.tuples(
    st.just("open"), user, market, st.sampled_from(["long", "short"]),
    # size as a % of what the balance can pay for: near 100 leaves no room, above it is refused
    st.one_of(st.integers(1, 100), st.sampled_from([90, 98, 100, 101, 150])),
    st.one_of(st.sampled_from([1, 2, 10, 50, 100]), st.integers(1, 100)),
    st.sampled_from(["cross", "cross", "isolated"]),
    st.sampled_from([None, None, None, 100, 500, 2_000]),  # TP distance, bps
    st.sampled_from([None, None, None, 100, 500, 2_000]),  # SL distance, bps
    st.sampled_from(["exact", "exact", "exact", "old"]),  # price seen: now, or at the last op
    dt,
)
# a tick aimed at an open trade's liquidation price, take-profit or stop-loss, or at a
# resting order's limit, plus an offset
snipe_op = st.tuples(
    st.just("snipe"), st.integers(0, 1_000), st.sampled_from(["liq", "liq", "tp", "sl", "order", "order"]),
    st.one_of(st.integers(-3, 3), st.integers(-30_000, 30_000)), dt,
)
place_op = st.tuples(
    st.just("place"), user, market, st.sampled_from(["long", "short"]),
    # limit vs the side's touch, bps: negative rests, >= 0 is marketable (crosses the book)
    st.sampled_from([-2_000, -500, -100, -20, -1, -1, 0, 1, 30]),
    st.one_of(st.integers(1, 100), st.sampled_from([98, 100, 101, 150])),  # size, % of the balance
    st.sampled_from([1, 2, 10, 50, 100]),
    st.sampled_from(["cross", "cross", "isolated"]),
    st.sampled_from([False, False, False, True]),  # post-only
    st.sampled_from([None, None, None, 1, 1_000, 20_000, 3_600_000]),  # good for this many ms
    # reduce-only: None, or (pick of the user's trades, quarters of its qty (5: too much), variant)
    st.one_of(st.none(), st.none(), st.tuples(st.integers(0, 9), st.integers(1, 5),
                                              st.sampled_from(["ok", "ok", "ok", "same_side", "other_market"]))),
    dt,
)
# cancel one of the user's orders, someone else's, or an unknown id
cancel_op = st.tuples(st.just("cancel"), user, st.integers(0, 9), st.sampled_from(["own", "own", "own", "other", "none"]),
                      dt)
# TP / SL distance from the entry in bps ("keep": key left out; None: clear; negative: wrong side)
tpsl_dist = st.sampled_from(["keep", "keep", None, 30, 200, 1_000, 5_000, -50])
tpsl_op = st.tuples(st.just("tpsl"), user, st.integers(0, 9), tpsl_dist, tpsl_dist, dt)
margin_op = st.tuples(st.just("margin"), user, st.integers(0, 9), st.sampled_from([1, 5, 30, 100, 101]), dt)
# a long silence (no input), then a tick of every market: the hourly funding is paid
wait_op = st.tuples(st.just("wait"), st.sampled_from([60_000, 1_200_000, 3_600_000]))
close_op = st.tuples(st.just("close"), user, st.integers(0, 9), st.sampled_from([None, None, 1, 2, 3]), dt)
OPS = {
    "tick": tick_op,
    "snipe": snipe_op,
    "open": open_op,
    "close": close_op,
    "create": st.tuples(st.just("create"), user, dt),
    "reset": st.tuples(st.just("reset"), user, dt),
    "dup": st.tuples(st.just("dup"), st.integers(0, 10_000), st.booleans(), dt),
    "stale": st.tuples(st.just("stale"), market, dt),
    "place": place_op,
    "cancel": cancel_op,
    "tpsl": tpsl_op,
    "margin": margin_op,
    "wait": wait_op,
}
# weighted: mostly prices and trading
op = st.sampled_from(["tick"] * 5 + ["snipe"] * 5 + ["open"] * 5 + ["close"] * 2 + ["place"] * 5
                     + ["cancel"] * 2 + ["tpsl"] * 2 + ["margin"] * 2
                     + ["create", "reset", "dup", "dup", "stale", "wait"]).flatmap(OPS.__getitem__)
scenario = st.tuples(
    st.integers(2, 4),  # users
    st.lists(op, min_size=20, max_size=60),
    st.integers(0, 10_000),  # where the snapshot is taken (mod length)
    st.sampled_from([30_000, 3_600_000]),  # dedup window: short ones expire during the run
    st.sampled_from([50_000_000, 3_000_000]),  # starting balance: $5,000 or a thin $300
    st.sampled_from(FUNDING_INTERVALS),
)


# ------------------------------------------------------------------ the runner
@dataclass
class Run:
    users: int
    dedup_ms: int
    start: int  # starting balance
    funding_ms: int = 20_000
    markets: dict[str, Any] = field(init=False)
    main: Kit = field(init=False)
    brute: Kit = field(init=False)
    prices: dict[str, int] = field(default_factory=lambda: dict(BASE))
    rates: dict[str, int] = field(default_factory=dict)  # last funding rate sent per market
    commands: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # msg, reply
    outputs: list[bytes] = field(default_factory=list)  # canonical (reply, events) of each input

    def __post_init__(self) -> None:
        kw: dict[str, Any] = {"dedup_window_ms": self.dedup_ms, "starting_balance": self.start}
        self.markets = MARKETS_BY_FUNDING[self.funding_ms]
        self.main = Kit(self.markets, **kw)
        self.brute = Kit(self.markets, brute_force=True, **kw)

    def feed(self, msg: Any, at: int) -> dict[str, Any] | None:
        """One input to both engines; they must agree on everything."""
        rep = self.main.send(msg, at=at)
        rep_b = self.brute.send(msg, at=at)
        assert rep == rep_b
        assert m.encode_canonical(self.main.events) == m.encode_canonical(self.brute.events)
        assert self.main.snapshot_bytes() == self.brute.snapshot_bytes()
        assert self.main.invariants() == []
        self.outputs.append(m.encode_canonical([rep, self.main.events]))
        return rep

    def command(self, msg: dict[str, Any], at: int) -> None:
        msg = {"id": f"cmd-{len(self.commands)}", **msg}
        rep = self.feed(msg, at)
        assert rep is not None and rep["id"] == msg["id"]
        assert rep["ok"] or rep["code"] in (m.INVALID, m.REJECTED, m.NOT_FOUND, m.CONFLICT)
        self.commands.append((msg, rep))

    def tick(self, sym: str, mv: int, spread: int, mark_q: int, digits: int, rate: int, at: int) -> None:
        p = self.prices[sym] * (10_000 + mv) // 10_000
        p = min(max(p, BASE[sym] // 4), BASE[sym] * 4)  # stay in a sane band
        self.prices[sym] = p
        half = p * spread // 20_000
        bid, ask = p - half, p + half
        # the mark: around the mid, sometimes outside the book, off the tick grid
        mark = max(1, p + mark_q * half // 2 + digits % 997 - 498)
        self.rates[sym] = rate
        self.feed({"type": m.TICK, "market": sym, "bid": bid, "ask": ask, "mark": mark,
                   "funding_rate": rate}, at)

    def open(self, uid: str, sym: str, side: str, pct: int, lev: int, mode: str, tp: int | None,
             sl: int | None, seen: str, at: int) -> None:
        spec = MARKETS[sym]
        px = self.main.state.prices.get(sym)
        fill = (px.ask if side == "long" else px.bid) if px else self.prices[sym]
        acct = self.main.state.accounts.get(uid)
        # IM + fee of one qty step, roughly; size the trade to pct of the balance
        step_cost = spec.qty_step * fill / 1e8 * (1 / lev + spec.taker_fee / 1e6)
        steps = max(1, int((acct.balance if acct else 0) * pct / 100 / step_cost))
        s = 1 if side == "long" else -1
        msg: dict[str, Any] = {
            "type": m.OPEN, "user_id": uid, "market": sym, "side": side, "qty": steps * spec.qty_step,
            "leverage": lev, "margin_mode": mode,
            "price": fill if seen == "exact" else self.prices[sym], "slippage_bps": 0 if seen == "exact" else 30,
        }
        if tp is not None:
            msg["take_profit"] = (fill * (10_000 + s * tp) // 10_000) // spec.tick_size * spec.tick_size
        if sl is not None:
            msg["stop_loss"] = (fill * (10_000 - s * sl) // 10_000) // spec.tick_size * spec.tick_size
        self.command(msg, at)

    def snipe(self, pick: int, target: str, offset: int, at: int) -> None:
        st_ = self.main.state
        if target == "order":  # bid = ask = mark at a resting order's limit (+ offset)
            orders = [o for uid in sorted(st_.accounts) for o in st_.accounts[uid].orders.values()]
            if not orders:
                return
            order = orders[pick % len(orders)]
            price = min(max(1, order.limit + offset), BASE[order.market] * 8)
            self.prices[order.market] = price
            self.feed({"type": m.TICK, "market": order.market, "bid": price, "ask": price, "mark": price,
                       "funding_rate": self.rates.get(order.market, 0)}, at)
            return
        trades = [t for uid in sorted(st_.accounts) for t in st_.accounts[uid].trades.values()]
        if not trades:
            return
        t = trades[pick % len(trades)]
        level = t.tp if target == "tp" else t.sl if target == "sl" else None
        if target == "liq":
            mmr = MARKETS[t.market].maintenance_rate
            if t.mode == m.ISOLATED:
                level = isolated_watch_level(t.side, t.qty, t.entry, t.margin, mmr)
            else:
                acct = st_.accounts[t.user_id]
                wallet, u_o, mm_o = acct.balance, 0, 0
                for o in acct.trades.values():
                    if o.mode != m.CROSS:
                        continue
                    wallet += o.margin
                    if o is not t:
                        mk = st_.prices[o.market].mark
                        u_o += pnl(o.side, o.qty, o.entry, mk)
                        mm_o += maintenance(o.qty, mk, MARKETS[o.market].maintenance_rate)
                level = cross_liquidation_price(t.side, t.qty, t.entry, mmr, wallet, u_o, mm_o)
        if level is None:
            return
        mark = min(max(1, level + offset), BASE[t.market] * 8)
        self.prices[t.market] = mark
        self.feed({"type": m.TICK, "market": t.market, "bid": mark, "ask": mark, "mark": mark,
                   "funding_rate": self.rates.get(t.market, 0)}, at)

    def close(self, uid: str, pick: int, part: int | None, at: int) -> None:
        acct = self.main.state.accounts.get(uid)
        ids = list(acct.trades) + sorted(acct.closed) if acct else []
        tid = ids[pick % len(ids)] if ids else "no-such-trade"
        msg: dict[str, Any] = {"type": m.CLOSE, "user_id": uid, "trade_id": tid}
        if part is not None and acct and tid in acct.trades:
            t = acct.trades[tid]
            step = MARKETS[t.market].qty_step
            msg["qty"] = max(step, t.qty * part // 4 // step * step)
        self.command(msg, at)

    def place(self, uid: str, sym: str, side: str, offset: int, pct: int, lev: int, mode: str, post_only: bool,
              good_for: int | None, reduce: tuple[int, int, str] | None, at: int) -> None:
        acct = self.main.state.accounts.get(uid)
        msg: dict[str, Any] = {"type": m.PLACE_ORDER, "user_id": uid, "post_only": post_only}
        if reduce is not None:
            uid, acct = self._with_trades(uid)
            msg["user_id"] = uid
            trades = list(acct.trades.values()) if acct else []
            if not trades:
                msg["reduce_trade_id"] = "no-such-trade"
                qty = self.markets[sym].qty_step
            else:
                t = trades[reduce[0] % len(trades)]
                quarters, variant = reduce[1], reduce[2]
                step = self.markets[t.market].qty_step
                msg["reduce_trade_id"] = t.id
                side = m.SIDE_NAMES[t.side if variant == "same_side" else -t.side]
                qty = max(step, t.qty * quarters // 4 // step * step)
                if variant == "other_market":  # refused: a reduce-only order lives in its trade's market
                    sym = SYMBOLS[(SYMBOLS.index(t.market) + 1) % 3]
                    step = self.markets[sym].qty_step
                    qty = max(step, qty // step * step)
                else:
                    sym = t.market
        spec = self.markets[sym]
        s = 1 if side == "long" else -1
        px = self.main.state.prices.get(sym)
        touch = (px.ask if s > 0 else px.bid) if px else self.prices[sym]
        limit = touch * (10_000 + s * offset) // 10_000
        # onto the tick grid, on the passive side of the exact figure (a buy rounds down)
        limit = max(spec.tick_size, (limit // spec.tick_size + (1 if s < 0 and limit % spec.tick_size else 0))
                    * spec.tick_size)
        if reduce is None:
            cost = spec.qty_step * limit / 1e8 * (1 / lev + spec.maker_fee / 1e6)
            qty = max(1, int((acct.balance if acct else 0) * pct / 100 / cost)) * spec.qty_step
            msg.update(leverage=lev, margin_mode=mode)
        msg.update(market=sym, side=side, qty=qty, limit_price=limit)
        if good_for is not None:
            msg["expires_ms"] = at + good_for
        self.command(msg, at)

    def cancel(self, uid: str, pick: int, whose: str, at: int) -> None:
        st_ = self.main.state
        if whose == "own":
            acct = st_.accounts.get(uid)
            ids = list(acct.orders) if acct else []
        elif whose == "other":
            ids = [oid for u in sorted(st_.accounts) if u != uid for oid in st_.accounts[u].orders]
        else:
            ids = []
        oid = ids[pick % len(ids)] if ids else "no-such-order"
        self.command({"type": m.CANCEL_ORDER, "user_id": uid, "order_id": oid}, at)

    def _with_trades(self, uid: str) -> tuple[str, Any]:
        """The user, or (when they have no open trade) the first user who has one."""
        accounts = self.main.state.accounts
        acct = accounts.get(uid)
        if acct is None or not acct.trades:
            for other in sorted(accounts):
                if accounts[other].trades:
                    return other, accounts[other]
        return uid, acct

    def _pick_trade(self, uid: str, pick: int) -> tuple[str, Any]:
        uid, acct = self._with_trades(uid)
        trades = list(acct.trades.values()) if acct else []
        return uid, (trades[pick % len(trades)] if trades else None)

    def tpsl(self, uid: str, pick: int, tp: int | str | None, sl: int | str | None, at: int) -> None:
        uid, t = self._pick_trade(uid, pick)
        msg: dict[str, Any] = {"type": m.SET_TPSL, "user_id": uid, "trade_id": t.id if t else "no-such-trade"}
        if t is not None:
            tick = self.markets[t.market].tick_size
            for name, d, sign in (("take_profit", tp, 1), ("stop_loss", sl, -1)):
                if d == "keep":
                    continue
                if d is None:
                    msg[name] = None
                else:
                    assert isinstance(d, int)
                    msg[name] = max(tick, t.entry * (10_000 + sign * t.side * d) // 10_000 // tick * tick)
        self.command(msg, at)

    def add_margin(self, uid: str, pick: int, pct: int, at: int) -> None:
        uid, t = self._pick_trade(uid, pick)
        acct = self.main.state.accounts.get(uid)
        amount = max(1, (acct.balance if acct else 0) * pct // 100)
        self.command({"type": m.ADD_MARGIN, "user_id": uid, "trade_id": t.id if t else "no-such-trade",
                      "amount": amount}, at)

    def check_ledgers(self) -> None:
        """Every account's ledger events sum to its balance; each balance_after is the running sum."""
        running: dict[str, int] = {}
        for e in self.main.history:
            if e["type"] != m.EV_LEDGER:
                continue
            running[e["user_id"]] = running.get(e["user_id"], 0) + e["amount"]
            assert e["balance_after"] == running[e["user_id"]] >= 0, e
        for uid, acct in self.main.state.accounts.items():
            assert running.get(uid, 0) == acct.balance, uid

    def duplicate(self, pick: int, same_body: bool, at: int) -> None:
        if not self.commands:
            return
        msg, original = self.commands[pick % len(self.commands)]
        if msg["id"] not in self.main.state.dedup:
            return  # expired from the dedup window: it would be a new command
        retry = msg if same_body else {**msg, "qty": 10**6, "type": m.CLOSE}
        before = core_bytes(self.main.state)
        rep = self.feed(retry, at)
        assert rep == original
        assert self.main.events == []
        assert core_bytes(self.main.state) == before


def run_scenario(n_users: int, ops: list[tuple[Any, ...]], snap_pick: int, dedup_ms: int, start: int,
                 funding_ms: int = 20_000) -> None:
    r = Run(n_users, dedup_ms, start, funding_ms)
    now = 1_000
    for sym in SYMBOLS:
        r.feed({"type": m.TICK, "market": sym, "bid": BASE[sym], "ask": BASE[sym], "mark": BASE[sym]}, now)
    for uid in USERS[:n_users]:
        r.command({"type": m.CREATE_ACCOUNT, "user_id": uid}, now)
    snap_at = snap_pick % (len(ops) + 1)
    snapshot: bytes | None = None
    replay_from = 0
    for i, o in enumerate(ops):
        if i == snap_at:
            snapshot, replay_from = r.main.snapshot_bytes(), len(r.main.log)
        kind, args, wait = o[0], list(o[1:-1]), o[-1]
        now += wait
        if kind in ("tick", "snipe"):
            getattr(r, kind)(*args, now)
        elif kind == "open":
            uid, *rest = args
            r.open(USERS[uid % n_users], *rest, now)  # type: ignore[call-arg]
        elif kind == "close":
            r.close(USERS[args[0] % n_users], args[1], args[2], at=now)
        elif kind in ("create", "reset"):
            typ = m.CREATE_ACCOUNT if kind == "create" else m.RESET_ACCOUNT
            r.command({"type": typ, "user_id": USERS[args[0] % n_users]}, now)
        elif kind == "dup":
            r.duplicate(args[0], args[1], now)
        elif kind == "stale":
            r.feed({"type": m.STALE, "market": args[0]}, now)
        elif kind == "place":
            uid, *rest = args
            r.place(USERS[uid % n_users], *rest, now)  # type: ignore[call-arg]
        elif kind in ("cancel", "tpsl", "margin"):
            uid, *rest = args
            fn = {"cancel": r.cancel, "tpsl": r.tpsl, "margin": r.add_margin}[kind]
            fn(USERS[uid % n_users], *rest, now)  # type: ignore[operator]
        elif kind == "wait":  # silence, then the feed resumes: each market's tick pays its funding
            for sym in SYMBOLS:
                p = r.prices[sym]
                r.feed({"type": m.TICK, "market": sym, "bid": p, "ask": p, "mark": p,
                        "funding_rate": r.rates.get(sym, 0) or 12_345}, now)
    r.check_ledgers()
    if snapshot is None:
        snapshot, replay_from = r.main.snapshot_bytes(), len(r.main.log)
    # a fresh engine over the snapshot replays the rest to the same bytes and outputs
    again = restore(EngineState.from_snapshot(m.decode(snapshot)), r.markets, dedup_window_ms=dedup_ms,
                    starting_balance=start)
    assert state_bytes(again.state) == snapshot
    outputs = []
    for entry, at, msg in r.main.log[replay_from:]:
        rep, events = again.apply(entry, at, msg)
        outputs.append(m.encode_canonical([rep, events]))
    assert outputs == r.outputs[replay_from:]
    assert state_bytes(again.state) == r.main.snapshot_bytes()


# ------------------------------------------------------------------ the properties
@pytest.mark.unit
@PROFILE
@given(scenario)
def test_random_sequences_keep_invariants_match_brute_force_and_replay(sc: tuple[Any, ...]) -> None:
    run_scenario(*sc)


# ------------------------------------------------------------------ the isolated watch level
@pytest.mark.unit
@settings(PROFILE, max_examples=150)
@given(st.sampled_from([1, -1]), market, st.one_of(st.integers(1, 20), st.integers(1, 200_000)),
       st.integers(-500_000, 500_000), st.integers(1, 100), st.integers(0, 100))
@example(1, BTC, 1, 3_822, 10, 0)  # the island of test_triggers: 501_911_000 = 50,000 x 1.003822
def test_isolated_watch_level_covers_every_liquidatable_mark(side: int, sym: str, steps: int, entry_ppm: int,
                                                             lev: int, eaten_pct: int) -> None:
    """Every mark at which isolated_is_liquidatable holds lies at or beyond the
    level the index watches, and the level is no more than about 1e8/q price
    units past the trigger price (the index does not look much too early)."""
    spec = MARKETS[sym]
    q = steps * spec.qty_step
    entry = BASE[sym] * (1_000_000 + entry_ppm) // 1_000_000
    im = initial_margin(q, entry, lev) * (100 - eaten_pct) // 100  # funding may have eaten some
    mmr = spec.maintenance_rate
    level = isolated_watch_level(side, q, entry, im, mmr)
    trigger = isolated_trigger_price(side, q, entry, im, mmr)
    assert isolated_is_liquidatable(side, q, entry, im, trigger, mmr)
    assert 0 <= (level - trigger) * side <= NOTIONAL_DIV * RATE_SCALE // (q * (RATE_SCALE - mmr)) + 2
    # beyond the level (a band wider than any run of rounding), nothing is liquidatable
    width = 2 * NOTIONAL_DIV // q + 3
    beyond = range(level + 1, level + width) if side > 0 else range(max(1, level - width), level)
    assert not any(isolated_is_liquidatable(side, q, entry, im, mk, mmr) for mk in beyond)
