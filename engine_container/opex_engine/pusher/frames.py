"""What the pusher reads (pub/sub payloads, validated) and what it sends (frames).

In: ``{p}:live:prices`` ``{"type": "prices", "prices": {market: {bid, ask, mark,
index, funding_rate, next_funding_ms, ts, source}}}`` from the poller, and
``{p}:live:accounts`` ``{"accounts": [{user_id, account, events}]}`` from the
engine. Every field the pusher uses is type-checked; a bad entry is skipped and
counted, never allowed to break the fan-out.

Out (docs/contracts.md, "WebSocket"):
``{"type": "prices", "prices": {market: {bid, ask, mark, index, funding_rate,
next_funding_ms, ts}}, "decimal": 4}`` (funding_rate as decimal text, as in GET
/markets) and ``{"type": "account", "account": <GET /account's account>,
"events": [...]}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from opex_common.markets import MarketSpec
from opex_common.messages import MARGIN_MODES
from opex_common.views import DECIMAL, account_health, funding_rate_text

# API Gateway refuses messages over 128 KB; keep a margin for its framing
MAX_FRAME_BYTES = 127 * 1024
MAX_EVENTS_PER_FRAME = 500


def _int(v: Any) -> bool:
    return type(v) is int


def _pos(v: Any) -> bool:
    return type(v) is int and v > 0


def _opt_int(v: Any) -> bool:
    return v is None or type(v) is int


# ---------------------------------------------------------------------- prices
def parse_price(p: Any) -> dict[str, Any] | None:
    """One market's price object from the poller, or None if unusable."""
    if not isinstance(p, dict):
        return None
    if not (_pos(p.get("bid")) and _pos(p.get("ask")) and _pos(p.get("mark"))):
        return None
    index, rate, nxt, ts = p.get("index"), p.get("funding_rate"), p.get("next_funding_ms"), p.get("ts")
    if not ((index is None or _pos(index)) and _opt_int(rate) and _opt_int(nxt) and _opt_int(ts)):
        return None
    return p


def parse_prices(data: bytes, markets: Mapping[str, MarketSpec]) -> tuple[dict[str, dict[str, Any]], int]:
    """The valid prices of a ``live:prices`` message, and how many entries were refused."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}, 1
    prices = msg.get("prices") if isinstance(msg, dict) else None
    if not isinstance(prices, dict):
        return {}, 1
    good: dict[str, dict[str, Any]] = {}
    bad = 0
    for market, p in prices.items():
        if market in markets and (checked := parse_price(p)) is not None:
            good[market] = checked
        else:
            bad += 1
    return good, bad


def parse_price_hash(raw: Mapping[Any, Any], markets: Mapping[str, MarketSpec]) -> dict[str, dict[str, Any]]:
    """The valid entries of the ``{p}:prices`` hash (market -> JSON price)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        market = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
        if market not in markets:
            continue
        try:
            checked = parse_price(orjson.loads(value))
        except orjson.JSONDecodeError:
            continue
        if checked is not None:
            out[market] = checked
    return out


def price_wire(p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "bid": p["bid"],
        "ask": p["ask"],
        "mark": p["mark"],
        "index": p.get("index"),
        "funding_rate": funding_rate_text(p.get("funding_rate")),
        "next_funding_ms": p.get("next_funding_ms"),
        "ts": p.get("ts"),
    }


def prices_frame(wire: Mapping[str, dict[str, Any]], markets: Iterable[str]) -> bytes:
    return orjson.dumps({"type": "prices", "prices": {m: wire[m] for m in sorted(markets) if m in wire},
                         "decimal": DECIMAL})


# ---------------------------------------------------------------------- accounts
@dataclass(frozen=True, slots=True)
class AccountUpdate:
    user_id: str
    account: dict[str, Any]
    events: list[dict[str, Any]]


def _trade_ok(t: Any, markets: Mapping[str, MarketSpec]) -> bool:
    return (isinstance(t, dict) and isinstance(t.get("id"), str) and t.get("market") in markets
            and t.get("side") in (1, -1) and _pos(t.get("qty")) and _pos(t.get("entry"))
            and _pos(t.get("leverage")) and _int(t.get("margin")) and t.get("margin_mode") in MARGIN_MODES
            and _opt_int(t.get("opened_ms")) and _opt_int(t.get("fees")) and _opt_int(t.get("funding"))
            and _opt_int(t.get("take_profit")) and _opt_int(t.get("stop_loss")))


def account_ok(a: Any, markets: Mapping[str, MarketSpec]) -> bool:
    """The engine's account read model, as account_health needs it."""
    if not (isinstance(a, dict) and _int(a.get("balance"))):
        return False
    trades, orders = a.get("trades", []), a.get("orders", [])
    if not (isinstance(trades, list) and isinstance(orders, list)):
        return False
    if not all(_opt_int(a.get(k)) for k in ("realized_pnl", "fees_paid", "funding_paid", "version")):
        return False
    return all(_trade_ok(t, markets) for t in trades)


def parse_accounts(data: bytes, markets: Mapping[str, MarketSpec]) -> tuple[list[AccountUpdate], int]:
    """The valid entries of a ``live:accounts`` message, and how many were refused."""
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError:
        return [], 1
    entries = msg.get("accounts") if isinstance(msg, dict) else None
    if not isinstance(entries, list):
        return [], 1
    out: list[AccountUpdate] = []
    bad = 0
    for e in entries:
        if not isinstance(e, dict):
            bad += 1
            continue
        uid, acct, events = e.get("user_id"), e.get("account"), e.get("events", [])
        if not (isinstance(uid, str) and uid and isinstance(acct, dict) and account_ok(acct, markets)
                and isinstance(events, list)):
            bad += 1
            continue
        mine = [ev for ev in events
                if isinstance(ev, dict) and isinstance(ev.get("type"), str) and ev.get("user_id", uid) == uid]
        out.append(AccountUpdate(uid, acct, mine))
    return out, bad


def account_view(update: AccountUpdate, prices: Mapping[str, dict[str, Any]],
                 markets: Mapping[str, MarketSpec]) -> dict[str, Any]:
    """GET /account's ``account`` at the latest marks (opex_common.views, the API's code)."""
    return account_health(update.account, prices, markets)  # type: ignore[arg-type]


def account_frame(view: dict[str, Any], events: list[dict[str, Any]]) -> bytes:
    """The account push; events are dropped (and counted) if the frame would not fit."""
    dropped = max(0, len(events) - MAX_EVENTS_PER_FRAME)
    events = events[dropped:]
    data = orjson.dumps({"type": "account", "account": view, "events": events})
    if len(data) <= MAX_FRAME_BYTES:
        return data if not dropped else orjson.dumps(
            {"type": "account", "account": view, "events": events, "events_dropped": dropped})
    data = orjson.dumps({"type": "account", "account": view, "events": [], "events_dropped": dropped + len(events)})
    if len(data) <= MAX_FRAME_BYTES:
        return data
    # hundreds of open trades: too big for one WebSocket message
    return orjson.dumps({"type": "resync", "what": "account",
                         "message": "the account is too large to push; fetch GET /api/v1/account"})
