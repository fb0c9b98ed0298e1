"""Engine command / reply / event messages: names, codes and encoding.

Messages travel as one JSON document in field ``d`` of a stream entry (see
docs/contracts.md). orjson is used for speed; the bytes are canonical (sorted
keys) where they are compared.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

FIELD: Final = "d"

# --- command types -----------------------------------------------------------
CREATE_ACCOUNT: Final = "create_account"
OPEN: Final = "open"
CLOSE: Final = "close"
RESET_ACCOUNT: Final = "reset_account"
PLACE_ORDER: Final = "place_order"
CANCEL_ORDER: Final = "cancel_order"
SET_TPSL: Final = "set_tpsl"
ADD_MARGIN: Final = "add_margin"
TICK: Final = "tick"
AUDIT: Final = "audit"  # operator read of a shard's balances and totals (no user, no state change)
STALE: Final = "stale"
USER_COMMANDS = frozenset({CREATE_ACCOUNT, OPEN, CLOSE, RESET_ACCOUNT, PLACE_ORDER, CANCEL_ORDER, SET_TPSL,
                           ADD_MARGIN})

LONG: Final = "long"
SHORT: Final = "short"
SIDES = {LONG: 1, SHORT: -1}
SIDE_NAMES = {1: LONG, -1: SHORT}
CROSS: Final = "cross"
ISOLATED: Final = "isolated"
MARGIN_MODES = frozenset({CROSS, ISOLATED})

# --- reply codes -> HTTP status the API answers with ---------------------------
OK: Final = "ok"
INVALID: Final = "invalid"  # 422: the command is malformed or out of range
NOT_FOUND: Final = "not_found"  # 404: no such account / trade (ids don't leak)
REJECTED: Final = "rejected"  # 409: valid but refused (slippage, margin, stale price)
CONFLICT: Final = "conflict"  # 409: e.g. account already exists
STATUS = {OK: 200, INVALID: 422, NOT_FOUND: 404, REJECTED: 409, CONFLICT: 409}

# --- event types --------------------------------------------------------------
EV_ACCOUNT_OPENED: Final = "account_opened"
EV_TRADE_OPENED: Final = "trade_opened"
EV_TRADE_CLOSED: Final = "trade_closed"
EV_LEDGER: Final = "ledger"
EV_INSURANCE: Final = "insurance"
EV_MARGIN_WARNING: Final = "margin_warning"  # margin ratio crossed 80% (and "margin_ok" below 70%)
EV_MARGIN_OK: Final = "margin_ok"
EV_ORDER_PLACED: Final = "order_placed"
EV_ORDER_CLOSED: Final = "order_closed"  # filled / cancelled / expired / trade_closed / trade_gone
EV_TPSL_CHANGED: Final = "tpsl_changed"
# a debit from a trade's locked margin (isolated funding): not a balance change
EV_MARGIN_DEBIT: Final = "margin_debit"

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
