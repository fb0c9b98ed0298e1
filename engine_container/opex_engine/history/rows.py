"""Engine events -> history rows (pure: no I/O).

An event stream entry carries, in field ``d``, the JSON list of the events one
engine batch produced (a single event object is accepted too). Events keep the
order the engine emitted them, which matters once: a ``trade_closed`` event does
not say how much margin the close released, the ``ledger`` ``margin_release``
event just before it (same trade, same input) does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from opex_common import messages as m

log = logging.getLogger("opex.history")


@dataclass
class Rows:
    """Column lists per table, ready for ``unnest`` inserts."""

    closed_trades: list[tuple[Any, ...]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)
    funding: list[tuple[Any, ...]] = field(default_factory=list)
    insurance: list[tuple[Any, ...]] = field(default_factory=list)
    events: int = 0
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.closed_trades) + len(self.ledger) + len(self.funding) + len(self.insurance)


class _Invalid(Exception):
    pass


def _int(ev: dict[str, Any], key: str, default: int | None = None) -> int:
    v = ev.get(key, default)
    if type(v) is not int:
        if v is None and default is not None:
            return default
        raise _Invalid(f"{key} is not an integer")
    return v


def _str(ev: dict[str, Any], key: str, *, optional: bool = False) -> str | None:
    v = ev.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        raise _Invalid(f"{key} is not a string")
    return v


def decode_entry(raw: bytes | None) -> list[dict[str, Any]]:
    """The events of one stream entry; [] (logged) if it is not what the engine writes."""
    if raw is None:
        return []
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.error("event stream entry is not JSON; skipped", extra={"raw": raw[:200].decode(errors="replace")})
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        log.error("event stream entry is neither an event nor a list; skipped")
        return []
    return [ev for ev in data if isinstance(ev, dict)]


class RowBuilder:
    """Turns the events of one stream entry into rows.

    The engine emits a close's ``margin_release`` (if its margin was not used up)
    and then its ``trade_closed`` while applying one input, so both are in the
    same entry: released margin is tracked per entry only."""

    def __init__(self, shard: int) -> None:
        self.shard = shard
        # (user_id, trade_id) -> margin released by the close being processed
        self._released: dict[tuple[str, str], int] = {}

    def add(self, rows: Rows, events: list[dict[str, Any]]) -> None:
        self._released = {}
        for ev in events:
            rows.events += 1
            try:
                self._add(rows, ev)
            except (_Invalid, KeyError, TypeError) as exc:
                rows.skipped += 1
                log.error("malformed engine event skipped",
                          extra={"event_id": ev.get("id"), "type": ev.get("type"), "reason": str(exc)})

    def _add(self, rows: Rows, ev: dict[str, Any]) -> None:
        typ = ev.get("type")
        if typ == m.EV_LEDGER:
            self._ledger(rows, ev)
        elif typ == m.EV_TRADE_CLOSED:
            self._closed(rows, ev)
        elif typ == m.EV_MARGIN_DEBIT:
            if ev.get("kind") == "funding":
                rows.funding.append((_str(ev, "id"), _str(ev, "user_id"), _str(ev, "trade_id", optional=True),
                                     _str(ev, "market", optional=True), -_int(ev, "amount"), "margin",
                                     _int(ev, "ts")))
        elif typ == m.EV_INSURANCE:
            rows.insurance.append((_str(ev, "id"), self.shard, _str(ev, "user_id", optional=True),
                                   _str(ev, "kind"), _int(ev, "amount"), _int(ev, "fund_after"), _int(ev, "ts")))
        # account_opened (its deposit is a ledger event), trade_opened, margin_warning: nothing to keep

    def _ledger(self, rows: Rows, ev: dict[str, Any]) -> None:
        event_id, user_id, kind = _str(ev, "id"), _str(ev, "user_id"), _str(ev, "kind")
        amount = _int(ev, "amount")
        trade_id = _str(ev, "trade_id", optional=True)
        market = _str(ev, "market", optional=True)
        ts = _int(ev, "ts")
        rows.ledger.append((event_id, user_id, kind, amount, _int(ev, "balance_after"), trade_id, market, ts))
        if kind == "funding":
            rows.funding.append((event_id, user_id, trade_id, market, -amount, "balance", ts))
        elif kind == "margin_release" and trade_id is not None:
            assert user_id is not None
            key = (user_id, trade_id)
            self._released[key] = self._released.get(key, 0) + amount

    def _closed(self, rows: Rows, ev: dict[str, Any]) -> None:
        trade = ev.get("trade")
        if not isinstance(trade, dict):
            raise _Invalid("trade is missing")
        user_id = _str(ev, "user_id")
        assert user_id is not None
        trade_id = _str(trade, "id")
        assert trade_id is not None
        qty = _int(ev, "closed_qty")
        entry, leverage = _int(trade, "entry"), _int(trade, "leverage")
        released = ev.get("margin_released")
        if type(released) is not int:  # no release event: the margin was used up (funding, cover)
            released = self._released.get((user_id, trade_id), 0)
        # every release seen so far belonged to this close or to its cover
        for key in [k for k in self._released if k[0] == user_id]:
            del self._released[key]
        side = _int(trade, "side")
        if side not in (1, -1):
            raise _Invalid("side is not 1 or -1")
        rows.closed_trades.append((
            _str(ev, "id"), user_id, trade_id, _str(trade, "market"), side, _str(trade, "margin_mode"), leverage,
            entry, _int(ev, "close_price"), qty, _int(ev, "remaining_qty"), released, _int(ev, "pnl"),
            _int(ev, "fee"), _int(trade, "funding", 0), _int(ev, "bankruptcy_cover", 0), _str(ev, "reason"),
            bool(ev.get("liquidated")), trade.get("opened_ms") if type(trade.get("opened_ms")) is int else None,
            _int(ev, "ts"),
        ))
