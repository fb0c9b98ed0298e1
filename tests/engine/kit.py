"""A small test kit for the pure engine: build an engine with prices and
accounts, open and close trades, and read the state in one line each.

Units (see opex_common/units.py): money and prices 1e-4 USD, qty 1e-8 base,
rates ppm, funding 1e-9. Helpers below take those integers unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from opex_common import messages as m
from opex_common.markets import DEFAULT_MARKETS, MarketSpec
from opex_engine.core.engine import Engine
from opex_engine.core.state import Account, EngineState, Order, Trade

BTC, ETH, SOL = "BTC_USDC_PERP", "ETH_USDC_PERP", "SOL_USDC_PERP"
MARKETS = DEFAULT_MARKETS
T0 = 1_000  # engine clock (ms) of the first input

# readable constants: $1 = 10_000 units; 1 BTC = 100_000_000 units
USD = 10_000
COIN = 100_000_000


def usd(dollars: float | int) -> int:
    """Dollars to money / price units (exact for the values the tests use)."""
    return round(dollars * USD)


def markets_with(**per_market: dict[str, int]) -> dict[str, MarketSpec]:
    """DEFAULT_MARKETS with some fields replaced, e.g. markets_with(BTC_USDC_PERP={...})."""
    out = dict(MARKETS)
    for sym, fields in per_market.items():
        out[sym] = replace(out[sym], **fields)  # type: ignore[arg-type]
    return out


class Kit:
    """An engine plus a clock and an entry counter; every call is one input."""

    def __init__(self, markets: dict[str, MarketSpec] | None = None, *, brute_force: bool = False,
                 **engine_kw: Any) -> None:
        self.engine = Engine(markets or MARKETS, brute_force=brute_force, **engine_kw)
        self.now = T0
        self.n = 0
        self.events: list[dict[str, Any]] = []  # events of the last input
        self.log: list[tuple[str, int, Any]] = []  # every input, for replays
        self.history: list[dict[str, Any]] = []  # every event of every input, in order

    # -- raw input -----------------------------------------------------------------
    def wait(self, ms: int) -> None:
        """Move the clock: the next input is stamped ``ms`` later."""
        self.now += ms

    def send(self, msg: Any, *, at: int | None = None) -> dict[str, Any] | None:
        if at is not None:
            self.now = at
        self.n += 1
        entry = f"{self.now}-{self.n}"
        self.log.append((entry, self.now, msg))
        rep, self.events = self.engine.apply(entry, self.now, msg)
        self.history.extend(self.events)
        return rep

    def cmd(self, typ: str, *, id: str | None = None, **fields: Any) -> dict[str, Any]:
        msg = {"type": typ, "id": id or f"c{self.n + 1}", **fields}
        rep = self.send(msg)
        assert rep is not None, msg
        return rep

    def tick(self, market: str, bid: int, ask: int | None = None, mark: int | None = None, *,
             funding_rate: int = 0, at: int | None = None, advance: int = 0) -> list[dict[str, Any]]:
        """A price tick; ask defaults to bid (no spread), mark to the mid."""
        ask = bid if ask is None else ask
        mark = (bid + ask) // 2 if mark is None else mark
        if at is None:
            at = self.now + advance
        self.send({"type": m.TICK, "market": market, "bid": bid, "ask": ask, "mark": mark,
                   "funding_rate": funding_rate}, at=at)
        return self.events

    # -- commands --------------------------------------------------------------------
    def account(self, uid: str = "u1") -> Account:
        rep = self.cmd(m.CREATE_ACCOUNT, user_id=uid)
        assert rep["ok"], rep
        return self.acct(uid)

    def open_msg(self, uid: str, market: str, side: str, qty: int, leverage: int, *,
                 mode: str = m.CROSS, price: int | None = None, slippage_bps: int = 0,
                 **extra: Any) -> dict[str, Any]:
        if price is None:  # what the client saw: the side's own fill price
            px = self.engine.state.prices[market]
            price = px.ask if side == m.LONG else px.bid
        return {"user_id": uid, "market": market, "side": side, "qty": qty, "leverage": leverage,
                "slippage_bps": slippage_bps, "price": price, "margin_mode": mode, **extra}

    def open(self, uid: str, market: str, side: str, qty: int, leverage: int, **kw: Any) -> dict[str, Any]:
        return self.cmd(m.OPEN, **self.open_msg(uid, market, side, qty, leverage, **kw))

    def open_ok(self, uid: str, market: str, side: str, qty: int, leverage: int, **kw: Any) -> Trade:
        rep = self.open(uid, market, side, qty, leverage, **kw)
        assert rep["ok"], rep
        return self.trade(uid, rep["data"]["trade"]["id"])

    def close(self, uid: str, trade_id: str, qty: int | None = None) -> dict[str, Any]:
        fields: dict[str, Any] = {"user_id": uid, "trade_id": trade_id}
        if qty is not None:
            fields["qty"] = qty
        return self.cmd(m.CLOSE, **fields)

    def place(self, uid: str, market: str, side: str, qty: int, limit: int, leverage: int | None = 10, *,
              mode: str | None = m.CROSS, **extra: Any) -> dict[str, Any]:
        """place_order; ``extra``: post_only, expires_ms, reduce_trade_id (leverage / mode None: left out)."""
        fields: dict[str, Any] = {"user_id": uid, "market": market, "side": side, "qty": qty,
                                  "limit_price": limit, **extra}
        if leverage is not None:
            fields["leverage"] = leverage
        if mode is not None:
            fields["margin_mode"] = mode
        return self.cmd(m.PLACE_ORDER, **fields)

    def place_ok(self, uid: str, market: str, side: str, qty: int, limit: int, leverage: int | None = 10,
                 **kw: Any) -> Order:
        """A resting order (asserts it was placed, not filled)."""
        rep = self.place(uid, market, side, qty, limit, leverage, **kw)
        assert rep["ok"] and "order" in rep["data"], rep
        return self.acct(uid).orders[rep["data"]["order"]["id"]]

    def cancel(self, uid: str, order_id: str) -> dict[str, Any]:
        return self.cmd(m.CANCEL_ORDER, user_id=uid, order_id=order_id)

    def set_tpsl(self, uid: str, trade_id: str, **tpsl: Any) -> dict[str, Any]:
        """set_tpsl; pass take_profit= / stop_loss= (None clears; a key left out is kept)."""
        return self.cmd(m.SET_TPSL, user_id=uid, trade_id=trade_id, **tpsl)

    def add_margin(self, uid: str, trade_id: str, amount: int) -> dict[str, Any]:
        return self.cmd(m.ADD_MARGIN, user_id=uid, trade_id=trade_id, amount=amount)

    # -- reading ---------------------------------------------------------------------
    def order(self, uid: str, order_id: str) -> Order:
        return self.acct(uid).orders[order_id]

    def ledger(self, uid: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """Ledger events of every input so far (of one user, and with these field values)."""
        return [e for e in self.history if e["type"] == m.EV_LEDGER and (uid is None or e["user_id"] == uid)
                and all(e.get(k) == v for k, v in match.items())]

    def ever(self, typ: str, **match: Any) -> list[dict[str, Any]]:
        """Events of every input so far with this type (and these field values)."""
        return [e for e in self.history if e["type"] == typ and all(e.get(k) == v for k, v in match.items())]

    @property
    def state(self) -> EngineState:
        return self.engine.state

    def acct(self, uid: str = "u1") -> Account:
        return self.engine.state.accounts[uid]

    def balance(self, uid: str = "u1") -> int:
        return self.acct(uid).balance

    def trade(self, uid: str, trade_id: str) -> Trade:
        return self.acct(uid).trades[trade_id]

    def is_open(self, uid: str, trade_id: str) -> bool:
        return trade_id in self.acct(uid).trades

    def of_type(self, typ: str, **match: Any) -> list[dict[str, Any]]:
        """Events of the last input with this type (and these field values)."""
        return [e for e in self.events if e["type"] == typ and all(e.get(k) == v for k, v in match.items())]

    def closes(self) -> list[dict[str, Any]]:
        return self.of_type(m.EV_TRADE_CLOSED)

    def snapshot_bytes(self) -> bytes:
        return state_bytes(self.engine.state)

    def core_bytes(self) -> bytes:
        return core_bytes(self.engine.state)

    def invariants(self) -> list[str]:
        return self.engine.state.check_invariants()


def state_bytes(state: EngineState) -> bytes:
    """The canonical bytes of a state (equal states <=> equal bytes)."""
    return m.encode_canonical(state.to_snapshot())


def core_bytes(state: EngineState) -> bytes:
    """Canonical bytes of everything but the input bookkeeping (clock, last id,
    dedup log): what a refused or ignored input must leave untouched."""
    snap = state.to_snapshot()
    for k in ("clock_ms", "last_id", "dedup"):
        snap.pop(k)
    return m.encode_canonical(snap)


def restore(state: EngineState, markets: dict[str, MarketSpec] | None = None, **engine_kw: Any) -> Engine:
    """A fresh engine over a state that went through its JSON snapshot bytes."""
    snap = m.decode(state_bytes(state))
    return Engine(markets or MARKETS, EngineState.from_snapshot(snap), **engine_kw)
