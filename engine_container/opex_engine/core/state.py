"""The engine's state: accounts, trades, last prices, insurance fund, dedup log.

Plain objects with ``__slots__`` (the hot path allocates them); every amount is
an int in the units of ``opex_common.units``. ``to_snapshot``/``from_snapshot``
give a canonical, versioned, JSON-able form: two states are equal exactly when
their canonical bytes are equal.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

# 2: accounts carry resting orders and the margin-warning flag
# 3: the dedup log holds each reply as its JSON text
SNAPSHOT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CLOSED_IDS_KEPT = 1000  # per account: lets "close" answer "already closed"


class Trade:
    __slots__ = (
        "id", "user_id", "market", "side", "qty", "entry", "leverage", "margin",
        "mode", "opened_ms", "fees", "funding", "tp", "sl",
    )

    def __init__(
        self, id: str, user_id: str, market: str, side: int, qty: int, entry: int, leverage: int,
        margin: int, mode: str, opened_ms: int, fees: int = 0, funding: int = 0,
        tp: int | None = None, sl: int | None = None,
    ) -> None:
        self.id = id
        self.user_id = user_id
        self.market = market
        self.side = side  # +1 long, -1 short
        self.qty = qty  # 1e-8 base units
        self.entry = entry  # price units
        self.leverage = leverage
        self.margin = margin  # locked initial margin, USD units
        self.mode = mode  # "cross" | "isolated"
        self.opened_ms = opened_ms
        self.fees = fees  # fees paid on this trade so far
        self.funding = funding  # funding paid (+) / received (-) so far
        self.tp = tp  # take-profit trigger (mark), price units
        self.sl = sl  # stop-loss trigger (mark), price units

    def to_list(self) -> list[Any]:
        return [self.id, self.user_id, self.market, self.side, self.qty, self.entry, self.leverage,
                self.margin, self.mode, self.opened_ms, self.fees, self.funding, self.tp, self.sl]

    @classmethod
    def from_list(cls, v: list[Any]) -> Trade:
        return cls(*v)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "market": self.market, "side": self.side, "qty": self.qty,
            "entry": self.entry, "leverage": self.leverage, "margin": self.margin,
            "margin_mode": self.mode, "fees": self.fees, "funding": self.funding,
            "take_profit": self.tp, "stop_loss": self.sl, "opened_ms": self.opened_ms,
        }


class Order:
    """A resting limit order. Opening orders hold their initial margin and
    maker fee in ``reserved_*`` (moved out of the balance when placed);
    reduce-only orders (``reduce_trade_id`` set) reserve nothing."""

    __slots__ = ("id", "user_id", "market", "side", "qty", "limit", "leverage", "mode",
                 "reserved_margin", "reserved_fee", "placed_ms", "expires_ms", "reduce_trade_id")

    def __init__(self, id: str, user_id: str, market: str, side: int, qty: int, limit: int, leverage: int,
                 mode: str, reserved_margin: int, reserved_fee: int, placed_ms: int,
                 expires_ms: int | None, reduce_trade_id: str | None) -> None:
        self.id = id
        self.user_id = user_id
        self.market = market
        self.side = side
        self.qty = qty
        self.limit = limit  # price units
        self.leverage = leverage
        self.mode = mode
        self.reserved_margin = reserved_margin
        self.reserved_fee = reserved_fee
        self.placed_ms = placed_ms
        self.expires_ms = expires_ms  # good-till-time; None = good-till-cancelled
        self.reduce_trade_id = reduce_trade_id

    def to_list(self) -> list[Any]:
        return [self.id, self.user_id, self.market, self.side, self.qty, self.limit, self.leverage, self.mode,
                self.reserved_margin, self.reserved_fee, self.placed_ms, self.expires_ms, self.reduce_trade_id]

    @classmethod
    def from_list(cls, v: list[Any]) -> Order:
        return cls(*v)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "market": self.market, "side": self.side, "qty": self.qty,
            "limit_price": self.limit, "leverage": self.leverage, "margin_mode": self.mode,
            "reserved_margin": self.reserved_margin, "reserved_fee": self.reserved_fee,
            "placed_ms": self.placed_ms, "expires_ms": self.expires_ms,
            "reduce_only": self.reduce_trade_id is not None, "trade_id": self.reduce_trade_id,
        }


class Account:
    __slots__ = ("user_id", "balance", "deposits", "trades", "closed", "realized_pnl",
                 "fees_paid", "funding_paid", "created_ms", "version", "orders", "warned")

    def __init__(self, user_id: str, balance: int, deposits: int, created_ms: int) -> None:
        self.user_id = user_id
        self.balance = balance  # free cash, USD units; never negative
        self.deposits = deposits  # everything ever credited from outside
        self.trades: dict[str, Trade] = {}  # open trades in the order opened
        self.closed: dict[str, int] = {}  # recently closed trade id -> closed at (ms)
        self.realized_pnl = 0
        self.fees_paid = 0
        self.funding_paid = 0
        self.created_ms = created_ms
        self.version = 0  # bumped on every change; read models carry it
        self.orders: dict[str, Order] = {}  # resting limit orders in the order placed
        self.warned = False  # margin ratio above the warning level (hysteresis flag)

    def to_list(self) -> list[Any]:
        return [self.user_id, self.balance, self.deposits, self.realized_pnl, self.fees_paid,
                self.funding_paid, self.created_ms, self.version,
                [t.to_list() for t in self.trades.values()], list(self.closed.items()),
                [o.to_list() for o in self.orders.values()], self.warned]

    @classmethod
    def from_list(cls, v: list[Any]) -> Account:
        a = cls(v[0], v[1], v[2], v[6])
        a.realized_pnl, a.fees_paid, a.funding_paid, a.version = v[3], v[4], v[5], v[7]
        for tl in v[8]:
            t = Trade.from_list(tl)
            a.trades[t.id] = t
        a.closed = {k: ts for k, ts in v[9]}
        if len(v) > 10:  # version 2
            for ol in v[10]:
                o = Order.from_list(ol)
                a.orders[o.id] = o
            a.warned = bool(v[11])
        return a


class MarketPrices:
    __slots__ = ("bid", "ask", "mark", "index", "funding_rate", "next_funding_ms",
                 "updated_ms", "stale", "funding_due_ms")

    def __init__(self) -> None:
        self.bid = 0
        self.ask = 0
        self.mark = 0
        self.index = 0
        self.funding_rate = 0  # 1e-9
        self.next_funding_ms = 0  # as reported by the source
        self.updated_ms = 0  # engine clock at the last tick
        self.stale = False  # set by an explicit "stale" notice from the poller
        self.funding_due_ms = 0  # engine clock at which the next funding applies

    def to_list(self) -> list[Any]:
        return [self.bid, self.ask, self.mark, self.index, self.funding_rate,
                self.next_funding_ms, self.updated_ms, self.stale, self.funding_due_ms]

    @classmethod
    def from_list(cls, v: list[Any]) -> MarketPrices:
        p = cls()
        (p.bid, p.ask, p.mark, p.index, p.funding_rate, p.next_funding_ms, p.updated_ms,
         p.stale, p.funding_due_ms) = v
        return p


class EngineState:
    def __init__(self, shard: int = 0) -> None:
        self.shard = shard
        self.accounts: dict[str, Account] = {}
        self.prices: dict[str, MarketPrices] = {}
        self.insurance = 0  # insurance fund, USD units
        # Net money the house has paid into accounts: traders' realized PnL and
        # funding received, less fees and funding paid, plus bankruptcies it
        # absorbed. Conservation (trading-rules.md):
        #   deposits + house_net_payout == balances + margins + reserved + insurance
        self.house_net_payout = 0
        self.deposits = 0
        self.seq = 0  # id counter for trades
        self.clock_ms = 0  # engine time: the largest stream-entry time applied
        self.last_id = "0-0"  # last input stream id applied
        # command id -> the original reply, serialized: a reply kept as bytes is one
        # object the garbage collector never scans instead of a dozen nested
        # ones, and about a fifth of the memory (what a snapshot fork copies)
        self.dedup: dict[str, bytes] = {}
        self.dedup_order: deque[tuple[int, str]] = deque()  # (applied at ms, command id)

    # -- canonical form ---------------------------------------------------------
    # Three parts: the header (scalars and prices), one list per account (in
    # user id order) and the dedup log (in the order it was written). A
    # snapshot is either one JSON document of all three (to_snapshot) or, in
    # storage, a line per account and per slice of the log (snapshots.py):
    # then loading never holds a parsed copy of the whole state.
    def snapshot_header(self) -> dict[str, Any]:
        return {
            "v": SNAPSHOT_VERSION,
            "shard": self.shard,
            "clock_ms": self.clock_ms,
            "last_id": self.last_id,
            "seq": self.seq,
            "insurance": self.insurance,
            "house_net_payout": self.house_net_payout,
            "deposits": self.deposits,
            "prices": {m: p.to_list() for m, p in sorted(self.prices.items())},
        }

    def account_lists(self) -> list[list[Any]]:
        return [a.to_list() for _, a in sorted(self.accounts.items())]

    def dedup_entries(self) -> list[list[Any]]:
        return [[ts, cid, self.dedup[cid].decode()] for ts, cid in self.dedup_order]

    def to_snapshot(self) -> dict[str, Any]:
        return {**self.snapshot_header(), "accounts": self.account_lists(), "dedup": self.dedup_entries()}

    @classmethod
    def from_header(cls, head: dict[str, Any]) -> EngineState:
        """A state with the header's values and no accounts or dedup log yet."""
        if not isinstance(head, dict) or head.get("v") not in READABLE_VERSIONS:
            raise ValueError(f"snapshot version {head.get('v') if isinstance(head, dict) else None!r} "
                             f"is not one of {READABLE_VERSIONS}")
        s = cls(int(head["shard"]))
        s.clock_ms = head["clock_ms"]
        s.last_id = head["last_id"]
        s.seq = head["seq"]
        s.insurance = head["insurance"]
        s.house_net_payout = head["house_net_payout"]
        s.deposits = head["deposits"]
        s.prices = {m: MarketPrices.from_list(v) for m, v in head["prices"].items()}
        return s

    def add_accounts(self, lists: list[Any]) -> None:
        for av in lists:
            a = Account.from_list(av)
            self.accounts[a.user_id] = a

    def add_dedup(self, entries: list[Any], version: int) -> None:
        text = version >= 3  # older versions kept the reply itself
        for ts, cid, rep in entries:
            self.dedup[cid] = rep.encode() if text else orjson.dumps(rep)
            self.dedup_order.append((ts, cid))

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> EngineState:
        s = cls.from_header(snap)
        s.add_accounts(snap["accounts"])
        s.add_dedup(snap["dedup"], snap["v"])
        return s

    # -- invariants -------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        balances = margins = reserved = 0
        for a in self.accounts.values():
            balances += a.balance
            for t in a.trades.values():
                margins += t.margin
            for o in a.orders.values():
                reserved += o.reserved_margin + o.reserved_fee
        return {"balances": balances, "margins": margins, "reserved": reserved,
                "insurance": self.insurance, "deposits": self.deposits,
                "house_net_payout": self.house_net_payout}

    def check_invariants(self) -> list[str]:
        """Problems found (empty when sound): negatives and conservation."""
        problems: list[str] = []
        if self.insurance < 0:
            problems.append(f"insurance fund negative: {self.insurance}")
        for a in self.accounts.values():
            if a.balance < 0:
                problems.append(f"account {a.user_id} balance negative: {a.balance}")
            for t in a.trades.values():
                if t.margin < 0 or t.qty <= 0:
                    problems.append(f"trade {t.id} margin {t.margin} qty {t.qty}")
            for o in a.orders.values():
                if o.reserved_margin < 0 or o.reserved_fee < 0 or o.qty <= 0:
                    problems.append(f"order {o.id} reserved {o.reserved_margin}/{o.reserved_fee} qty {o.qty}")
        tot = self.totals()
        held = tot["balances"] + tot["margins"] + tot["reserved"] + tot["insurance"]
        if tot["deposits"] + tot["house_net_payout"] != held:
            problems.append(
                f"conservation: deposits {tot['deposits']} + house {tot['house_net_payout']} != held {held}")
        return problems
