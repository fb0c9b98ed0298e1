"""A forced liquidation seen in the browser, and a second trader who sees none of it.

Trader A opens an isolated 20x ETH long; the scripted feed then moves ETH's
level 1 % below the trade's liquidation price (a fall of about 5.5 %: inside
the poller's 10 % sanity band, so it is taken at once; the path's +-0.08 %
wiggle never brings the mark back above the liquidation price). The engine liquidates on
the mark; A gets the danger toast and finds the trade in the history, marked
liquidated, with PnL = q x (exit - entry). Trader B was signed in and live the
whole time (B's screen follows ETH down) and has no toast, no trade, no history
and the starting balance.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.stack import ETH, MARKETS, E2EStack
from tests.e2e.ui import (
    api_json,
    format_usd,
    open_trade,
    pnl_units,
    price_units,
    qty_units,
    screenshot,
    sign_up,
    trade_row_values,
)

pytestmark = pytest.mark.e2e

QTY = "0.500"  # ETH (step 0.001): margin about $80 at 20x


def bid_below(page: Page, price: int) -> None:
    """Wait until the page's ETH bid (picker) is below ``price`` (4-decimal int)."""
    page.wait_for_function(
        "([sel, below]) => { const t = document.querySelector(sel)?.textContent ?? '';"
        " const n = Number(t.replace(/,/g, '')); return n > 0 && n * 10000 < below; }",
        arg=[f'[data-testid="market-{ETH}"] [data-testid="market-bid"]', price])


def test_a_forced_liquidation_shows_as_a_toast_and_in_history_and_only_to_its_owner(
        stack: E2EStack, new_context: Callable[..., BrowserContext]) -> None:
    a = new_context().new_page()
    b = new_context().new_page()
    sign_up(a, stack, "liq-a")
    sign_up(b, stack, "liq-b")
    for page in (a, b):
        page.get_by_test_id(f"market-{ETH}").click()
        expect(page).to_have_url(re.compile(rf"#/trade/{ETH}$"))
        expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")

    # --- A: an isolated 20x long on ETH
    open_trade(a, side="long", qty=QTY, leverage=20, margin_mode="isolated")
    expect(a.get_by_test_id("toast").filter(has_text="Order filled")).to_have_attribute("data-tone", "long")
    row = a.get_by_test_id("open-trade-row")
    expect(row).to_have_attribute("data-market", ETH)
    expect(row.get_by_test_id("trade-margin-mode")).to_have_text("Isolated")
    expect(row.get_by_test_id("trade-side")).to_have_text("Long 20×")
    expect(row.get_by_test_id("trade-liq-price")).to_have_text(re.compile(r"^\d,\d{3}\.\d{2}$"))
    v = trade_row_values(a)
    entry, liq = price_units(v["entry"]), price_units(v["liq"])
    assert entry * 0.94 < liq < entry * 0.97, v  # about 1/20 - maintenance below the entry

    # --- the scripted crash: ETH's level 1 % under the liquidation price
    level = MARKETS[ETH][0]
    crash = liq / 10_000 * 0.99
    try:
        stack.feed.set_level(ETH, crash)

        # A: the liquidation toast, the position gone
        toast = a.get_by_test_id("toast").and_(a.locator('[data-tone="danger"]'))
        expect(toast).to_have_count(1)
        expect(toast).to_contain_text("Position liquidated")
        expect(toast).to_contain_text("ETH-PERP")
        expect(a.get_by_test_id("open-trades-empty")).to_be_visible()
        bid_below(a, liq)  # the price push may come a moment after the account push
        screenshot(a, "liquidation.png")

        # B watched the same fall live, and was told nothing about A
        bid_below(b, liq)
    finally:
        stack.feed.set_level(ETH, level)

    expect(b.get_by_test_id("toast")).to_have_count(0)
    expect(b.get_by_test_id("open-trades-empty")).to_be_visible()
    expect(b.get_by_test_id("account-balance")).to_have_text("$5,000.00")
    expect(b.get_by_test_id("account-equity")).to_have_text("$5,000.00")

    # --- A's history: liquidated, PnL from the prices shown
    a.get_by_test_id("nav-history").click()
    hrow = a.get_by_test_id("history-row")
    expect(hrow).to_have_count(1)
    expect(hrow).to_have_attribute("data-liquidated", "true")
    expect(hrow.get_by_test_id("history-status")).to_have_text("Liquidated")
    entry_text = hrow.locator('td[data-label="Entry"]').inner_text()
    exit_text = hrow.locator('td[data-label="Exit"]').inner_text()
    assert price_units(entry_text) == entry
    assert price_units(exit_text) <= liq  # liquidated at or below the liquidation price
    expected = pnl_units(1, qty_units(QTY), entry, price_units(exit_text))
    assert expected < 0
    expect(hrow.get_by_test_id("history-pnl")).to_have_text(format_usd(expected, plus=True))
    [closed] = api_json(a, "/trade/closed")["trades"]
    assert closed["liquidated"] is True and closed["reason"] == "liquidation", closed
    assert (closed["openPrice"], closed["closePrice"], closed["pnl"]) == (entry, price_units(exit_text), expected)

    # --- B's history is empty, on the screen and in the API
    b.get_by_test_id("nav-history").click()
    expect(b.get_by_test_id("history-empty")).to_be_visible()
    assert api_json(b, "/trade/closed")["trades"] == []
    b.get_by_test_id("history-tab-ledger").click()
    expect(b.get_by_test_id("ledger-row")).to_have_count(1)
    expect(b.get_by_test_id("ledger-row")).to_have_attribute("data-kind", "deposit")
