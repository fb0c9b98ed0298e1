"""Engine command / reply / event messages: names, codes and encoding.

Messages travel as one JSON document in field ``d`` of a stream entry (see
docs/contracts.md). orjson is used for speed; the bytes are canonical (sorted
keys) where they are compared.
"""

from __future__ import annotations

from typing import Any

import orjson

FIELD = "d"

# --- command types -----------------------------------------------------------
CREATE_ACCOUNT = "create_account"
OPEN = "open"
CLOSE = "close"
RESET_ACCOUNT = "reset_account"
PLACE_ORDER = "place_order"
CANCEL_ORDER = "cancel_order"
SET_TPSL = "set_tpsl"
ADD_MARGIN = "add_margin"
TICK = "tick"
AUDIT = "audit"  # operator read of a shard's balances and totals (no user, no state change)
STALE = "stale"
USER_COMMANDS = frozenset({CREATE_ACCOUNT, OPEN, CLOSE, RESET_ACCOUNT, PLACE_ORDER, CANCEL_ORDER, SET_TPSL,
                           ADD_MARGIN})

LONG, SHORT = "long", "short"
SIDES = {LONG: 1, SHORT: -1}
SIDE_NAMES = {1: LONG, -1: SHORT}
CROSS, ISOLATED = "cross", "isolated"
MARGIN_MODES = frozenset({CROSS, ISOLATED})

# --- reply codes -> HTTP status the API answers with ---------------------------
OK = "ok"
INVALID = "invalid"  # 422: the command is malformed or out of range
NOT_FOUND = "not_found"  # 404: no such account / trade (ids don't leak)
REJECTED = "rejected"  # 409: valid but refused (slippage, margin, stale price)
CONFLICT = "conflict"  # 409: e.g. account already exists
STATUS = {OK: 200, INVALID: 422, NOT_FOUND: 404, REJECTED: 409, CONFLICT: 409}

# --- event types --------------------------------------------------------------
EV_ACCOUNT_OPENED = "account_opened"
EV_TRADE_OPENED = "trade_opened"
EV_TRADE_CLOSED = "trade_closed"
EV_LEDGER = "ledger"
EV_INSURANCE = "insurance"
EV_MARGIN_WARNING = "margin_warning"  # margin ratio crossed 80% (and "margin_ok" below 70%)
EV_MARGIN_OK = "margin_ok"
EV_ORDER_PLACED = "order_placed"
EV_ORDER_CLOSED = "order_closed"  # filled / cancelled / expired / trade_closed / trade_gone
EV_TPSL_CHANGED = "tpsl_changed"
# a debit from a trade's locked margin (isolated funding): not a balance change
EV_MARGIN_DEBIT = "margin_debit"

# ledger kinds: every change of an account's free balance is one of these
LEDGER_KINDS = frozenset(
    {
        "deposit",
        "margin_lock",
        "margin_release",
        "realized_pnl",
        "fee",
        "funding",
        "liquidation_fee",
        "bankruptcy_cover",
        "reset",
        "order_reserve",
        "order_release",
    }
)


def reply(command_id: str, code: str, message: str, data: dict[str, Any] | None = None,
          user_id: str | None = None) -> dict[str, Any]:
    return {
        "id": command_id,
        "user_id": user_id,
        "ok": code == OK,
        "status": STATUS[code],
        "code": code,
        "message": message,
        "data": data or {},
    }


def encode(msg: dict[str, Any]) -> bytes:
    return orjson.dumps(msg)


def encode_canonical(msg: Any) -> bytes:
    return orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)


def decode(raw: bytes | str) -> Any:
    return orjson.loads(raw)
