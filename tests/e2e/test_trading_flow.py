"""A trader's first session in the browser: sign up, watch prices move, open a
20x long, follow its live PnL, close it, and find it in the history with the
PnL its entry and exit prices give. Saves the screenshots in docs/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, expect

from tests.e2e.stack import BTC, E2EStack
from tests.e2e.ui import (
    DESKTOP,
    PHONE,
    api_json,
    assert_no_sideways_scroll,
    dismiss_toasts,
    fill_signup,
    fit_viewport,
    format_usd,
    new_email,
    open_trade,
    pnl_units,
    price_units,
    qty_units,
    screenshot,
    trade_row_values,
)

pytestmark = pytest.mark.e2e

QTY = "0.0100"  # BTC; a multiple of the 0.0001 step, so q x (exit - entry) is a whole 1e-4 USD


def test_sign_up_trade_close_and_find_it_in_history(stack: E2EStack,
                                                     new_context: Callable[..., BrowserContext]) -> None:
    page = new_context().new_page()

    # --- landing: the markets table shows live marks
    page.goto(stack.url("/"))
    expect(page.get_by_test_id("landing-signup")).to_be_visible()
    expect(page.get_by_role("region", name="Markets").get_by_role("row")).to_have_count(4)  # header + 3
    expect(page.get_by_role("region", name="Markets")).to_contain_text("BTC-PERP")
    screenshot(page, "landing.png")

    page.set_viewport_size(PHONE)  # a phone: the page fits its width (the markets table scrolls in its card)
    assert_no_sideways_scroll(page)
    page.set_viewport_size(DESKTOP)

    # --- sign up
    page.get_by_test_id("landing-signup").click()
    expect(page).to_have_url(re.compile(r"#/signup$"))
    email = new_email("flow")
    fill_signup(page, email)
    screenshot(page, "signup.png")
    page.get_by_test_id("signup-submit").click()
    expect(page).to_have_url(re.compile(r"#/trade/"))
    expect(page.get_by_test_id("user-email")).to_have_text(email)
    page.get_by_test_id(f"market-{BTC}").click()
    expect(page).to_have_url(re.compile(rf"#/trade/{BTC}$"))
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    expect(page.get_by_test_id("account-balance")).to_have_text("$5,000.00")

    # --- prices move: the quote line and the picker follow the pushes
    bid = page.get_by_test_id("bid")
    expect(bid).to_have_text(re.compile(r"^\d{2},\d{3}\.\d$"))
    first_bid = bid.inner_text()
    expect(bid).not_to_have_text(first_bid)
    picker_bid = page.get_by_test_id(f"market-{BTC}").get_by_test_id("market-bid")
    first_picker = picker_bid.inner_text()
    expect(picker_bid).not_to_have_text(first_picker)

    # --- open a 20x long; the preview shows what it will lock
    page.get_by_test_id("order-quantity").fill(QTY)
    expect(page.get_by_test_id("order-notional")).to_have_text(re.compile(r"^\$\d{3}\.\d{2}$"))
    open_trade(page, side="long", qty=QTY, leverage=20)
    expect(page.get_by_test_id("toast").filter(has_text="Order filled")).to_have_attribute("data-tone", "long")
    row = page.get_by_test_id("open-trade-row")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-market", BTC)
    expect(row.get_by_test_id("trade-side")).to_have_text("Long 20×")
    expect(row.get_by_test_id("trade-margin-mode")).to_have_text("Cross")
    expect(row.get_by_test_id("trade-qty")).to_have_text(QTY)

    # --- live PnL: s x q x (mark - entry), and it follows the mark
    seen_marks: set[str] = set()
    for _ in range(2):
        expect(row.get_by_test_id("trade-mark")).not_to_have_text(re.compile(
            "^(" + "|".join(map(re.escape, seen_marks)) + ")$" if seen_marks else "^—$"))
        v = trade_row_values(page)
        seen_marks.add(v["mark"])
        expected = pnl_units(1, qty_units(v["qty"]), price_units(v["entry"]), price_units(v["mark"]))
        assert v["pnl_text"] == format_usd(expected, plus=True), v
    assert len(seen_marks) == 2
    entry_shown = trade_row_values(page)["entry"]

    # --- the account follows: margin used = q x entry / 20, rounded up (trading-rules.md)
    margin_units = -(-qty_units(QTY) * price_units(entry_shown) // (100_000_000 * 20))
    expect(page.get_by_test_id("account-margin-used")).to_have_text(format_usd(margin_units))

    # --- screenshots: the whole trade page (chart, order form, account, the position), then a phone
    expect(page.get_by_test_id("price-chart").locator("canvas").first).to_be_visible()
    expect(page.locator(".chart__note")).to_have_text("1m candles")
    dismiss_toasts(page)
    fit_viewport(page, width=1440)
    expect(row).to_be_in_viewport()
    screenshot(page, "trade.png")
    page.set_viewport_size(PHONE)
    page.evaluate("() => window.scrollTo(0, 0)")
    assert_no_sideways_scroll(page)
    screenshot(page, "trade-phone.png")
    row.scroll_into_view_if_needed()
    screenshot(page, "trade-phone-position.png")
    page.set_viewport_size(DESKTOP)

    # --- close it
    row.get_by_test_id("trade-close").click()
    expect(page.get_by_test_id("toast").filter(has_text="Position closed")).to_be_visible()
    expect(page.get_by_test_id("open-trades-empty")).to_be_visible()

    # --- history: one closed trade, PnL = q x (exit - entry) of the prices it shows
    page.get_by_test_id("nav-history").click()
    expect(page).to_have_url(re.compile(r"#/history"))
    hrow = page.get_by_test_id("history-row")
    expect(hrow).to_have_count(1)
    expect(hrow).to_have_attribute("data-liquidated", "false")
    expect(hrow.get_by_test_id("history-status")).to_have_text("Closed")
    entry_text = hrow.locator('td[data-label="Entry"]').inner_text()
    exit_text = hrow.locator('td[data-label="Exit"]').inner_text()
    assert entry_text == entry_shown
    expected = pnl_units(1, qty_units(QTY), price_units(entry_text), price_units(exit_text))
    expect(hrow.get_by_test_id("history-pnl")).to_have_text(format_usd(expected, plus=True))
    expect(page.get_by_test_id("history-realized-pnl")).to_have_text(format_usd(expected, plus=True))

    # the API's exact integers agree with the screen
    [closed] = api_json(page, "/trade/closed")["trades"]
    assert (closed["openPrice"], closed["closePrice"]) == (price_units(entry_text), price_units(exit_text))
    assert closed["pnl"] == expected, closed
    assert closed["liquidated"] is False and closed["reason"] == "close"
    screenshot(page, "history.png")

    # the ledger tab lists the starting deposit and the taker fees
    page.get_by_test_id("history-tab-ledger").click()
    expect(page.locator('[data-testid="ledger-row"][data-kind="deposit"]')).to_have_count(1)
    expect(page.locator('[data-testid="ledger-row"][data-kind="fee"]').first).to_be_visible()
