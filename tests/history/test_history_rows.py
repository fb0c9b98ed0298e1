"""Engine events -> history rows (pure)."""

from __future__ import annotations

import orjson
import pytest

from opex_engine.history.rows import RowBuilder, Rows, decode_entry

pytestmark = pytest.mark.unit

TRADE = {"id": "t1", "market": "BTC_USDC_PERP", "side": -1, "qty": 0, "entry": 970_000_000, "leverage": 10,
         "margin": 0, "margin_mode": "cross", "fees": 9702, "funding": 120, "take_profit": None, "stop_loss": None,
         "opened_ms": 1000}


def _ledger(n: int, kind: str, amount: int, after: int, trade_id: str | None = "t1") -> dict[str, object]:
    return {"id": f"0:5-0:{n}", "type": "ledger", "ts": 5000, "user_id": "u1", "kind": kind, "amount": amount,
            "balance_after": after, "trade_id": trade_id, "market": "BTC_USDC_PERP" if trade_id else None}


def test_a_close_takes_the_margin_its_entry_released() -> None:
    events = [
        _ledger(0, "margin_release", 970_000, 1_970_000),
        _ledger(1, "margin_release", 50, 1_970_050, trade_id="t2"),  # another trade's margin covering a loss
        _ledger(2, "realized_pnl", -1_000, 1_969_050),
        _ledger(3, "fee", -4_851, 1_964_199),
        {"id": "0:5-0:4", "type": "trade_closed", "ts": 5000, "user_id": "u1", "trade": TRADE,
         "close_price": 970_100_000, "closed_qty": 1_000_000, "pnl": -1_000, "fee": 4_851, "reason": "close",
         "liquidated": False, "remaining_qty": 0, "bankruptcy_cover": 0},
        # t2 closed later in the same batch with its margin used up: no release event, margin 0
        {"id": "0:5-0:5", "type": "trade_closed", "ts": 5000, "user_id": "u1",
         "trade": {**TRADE, "id": "t2", "side": 1}, "close_price": 1, "closed_qty": 5, "pnl": 0, "fee": 0,
         "reason": "liquidation", "liquidated": True, "remaining_qty": 0},
        {"id": "0:5-0:6", "type": "margin_debit", "ts": 5000, "user_id": "u1", "kind": "funding", "amount": -30,
         "margin_after": 70, "trade_id": "t3", "market": "ETH_USDC_PERP"},
        _ledger(7, "funding", 12, 1_964_211, trade_id="t4"),
        {"id": "0:5-0:8", "type": "insurance", "ts": 5000, "user_id": "u1", "kind": "liquidation_fee",
         "amount": 99, "fund_after": 1_099},
        {"id": "0:5-0:9", "type": "trade_opened", "ts": 5000, "user_id": "u1", "trade": TRADE, "fee": 1},
    ]
    rows = Rows()
    RowBuilder(0).add(rows, decode_entry(orjson.dumps(events)))
    assert rows.events == 10 and rows.skipped == 0
    assert [r[0] for r in rows.ledger] == ["0:5-0:0", "0:5-0:1", "0:5-0:2", "0:5-0:3", "0:5-0:7"]
    first, second = rows.closed_trades
    assert first[:5] == ("0:5-0:4", "u1", "t1", "BTC_USDC_PERP", -1)
    assert first[9:14] == (1_000_000, 0, 970_000, -1_000, 4_851)  # qty, remaining, margin released, pnl, fee
    assert second[2] == "t2" and second[11] == 0 and second[17] is True
    # funding: paid from an isolated margin (30) and received into the balance (12)
    assert sorted((r[2], r[4], r[5]) for r in rows.funding) == [("t3", 30, "margin"), ("t4", -12, "balance")]
    assert rows.insurance == [("0:5-0:8", 0, "u1", "liquidation_fee", 99, 1_099, 5000)]


def test_malformed_events_and_entries_are_skipped_not_fatal() -> None:
    rows = Rows()
    builder = RowBuilder(1)
    builder.add(rows, decode_entry(b"not json"))
    builder.add(rows, decode_entry(b"42"))
    builder.add(rows, decode_entry(orjson.dumps([
        {"id": "1:1-0:0", "type": "ledger", "user_id": "u", "kind": "fee", "amount": "12", "balance_after": 1,
         "ts": 1},
        {"id": "1:1-0:1", "type": "trade_closed", "user_id": "u", "ts": 1},
        _ledger(2, "fee", -1, 5),
    ])))
    assert rows.skipped == 2 and len(rows.ledger) == 1
    single = decode_entry(orjson.dumps(_ledger(0, "deposit", 5, 5, trade_id=None)))
    assert len(single) == 1  # one event object instead of a list is accepted
