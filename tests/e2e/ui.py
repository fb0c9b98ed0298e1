"""What the browser tests do on the page, and the app's number formats in Python.

Selectors are the ``data-testid`` attributes listed in frontend/README.md.
Amounts are integers as on the wire: prices and USD in 1e-4, quantities in 1e-8.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, ViewportSize, expect

from tests.e2e.stack import ROOT, E2EStack

SCREENSHOTS = ROOT / "docs" / "screenshots"
PASSWORD = "correct horse battery"
PRICE_SCALE = 10_000
QTY_SCALE = 100_000_000
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


# ---------------------------------------------------------------------------- numbers
def parse_units(text: str, scale: int) -> int:
    """Displayed decimal text ("65,001.5", "-$12.34", "0.0100") -> integer units of 1/scale, exactly."""
    clean = re.sub(r"[,$+\s]", "", text.replace("\u2212", "-"))
    value = Decimal(clean) * scale
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has more decimals than 1/{scale}")
    return int(value)


def price_units(text: str) -> int:
    return parse_units(text, PRICE_SCALE)


def qty_units(text: str) -> int:
    return parse_units(text, QTY_SCALE)


def pnl_units(side: int, qty: int, entry: int, price: int) -> int:
    """s x q x (price - entry) in 1e-4 USD, floored like opex_common.margin.pnl and the app's calc.pnl."""
    return (side * qty * (price - entry)) // QTY_SCALE


def format_usd(units: int, plus: bool = False, decimals: int = 2) -> str:
    """The app's formatUsd: 4-decimal int -> "+$1,234.57" (half away from zero)."""
    div = 10 ** (4 - decimals)
    a = abs(units)
    q = a // div + (1 if (a % div) * 2 >= div else 0)
    int_part, frac = divmod(q, 10**decimals)
    body = f"{int_part:,}" + (f".{frac:0{decimals}d}" if decimals else "")
    if q == 0:
        return "$" + body
    if units < 0:
        return "-$" + body
    return ("+$" if plus else "$") + body


# ---------------------------------------------------------------------------- pages
def new_email(tag: str) -> str:
    return f"e2e-{tag}-{uuid.uuid4().hex[:10]}@example.com"


def fill_signup(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_test_id("signup-email").fill(email)
    page.get_by_test_id("signup-password").fill(password)


def sign_up(page: Page, stack: E2EStack, tag: str) -> str:
    """Create an account through the sign-up form; lands on the trade page, live."""
    email = new_email(tag)
    page.goto(stack.url("/signup"))
    fill_signup(page, email)
    page.get_by_test_id("signup-submit").click()
    expect(page).to_have_url(re.compile(r"#/trade/"))
    expect(page.get_by_test_id("user-email")).to_have_text(email)
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    return email


def set_leverage(page: Page, leverage: int) -> None:
    """Move the leverage slider with the keyboard, as a user would (Home = 1x, then one step per arrow)."""
    slider = page.get_by_test_id("order-leverage")
    slider.focus()
    slider.press("Home")
    for _ in range(leverage - 1):
        slider.press("ArrowRight")
    expect(page.get_by_test_id("order-leverage-value")).to_have_text(f"{leverage}×")


def open_trade(page: Page, *, side: str, qty: str, leverage: int, margin_mode: str = "cross") -> None:
    page.get_by_test_id(f"order-side-{side}").click()
    page.get_by_test_id(f"order-margin-{margin_mode}").click()
    page.get_by_test_id("order-quantity").fill(qty)
    set_leverage(page, leverage)
    page.get_by_test_id("order-submit").click()


def trade_row_values(page: Page) -> dict[str, Any]:
    """Side, qty, entry, mark and PnL of the only open-trade row, read in one go (one render)."""
    values: dict[str, Any] = page.evaluate("""() => {
        const row = document.querySelector('[data-testid="open-trade-row"]');
        if (!row) return null;
        const t = (id) => row.querySelector(`[data-testid="${id}"]`).textContent.trim();
        return {side: t('trade-side'), qty: t('trade-qty'), entry: t('trade-entry'), mark: t('trade-mark'),
                pnl: t('trade-pnl'), liq: t('trade-liq-price'), margin: t('trade-margin')};
    }""")
    assert values is not None, "no open-trade row"
    values["pnl_text"] = values["pnl"].split("(")[0].strip()  # "+$1.23 (+1.2%)" -> "+$1.23"
    return values


def settle_for_screenshot(page: Page) -> None:
    """Park the mouse (no crosshair or hover state in the picture) and let two frames paint."""
    page.mouse.move(1, 1)
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def screenshot(page: Page, name: str) -> Path:
    """A viewport-sized PNG in docs/screenshots/ (overwritten each run)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settle_for_screenshot(page)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    return path


def fit_viewport(page: Page, width: int, max_height: int = 1500) -> None:
    """A viewport ``width`` wide and as tall as the page is at that width (so a screenshot shows it all)."""
    page.set_viewport_size(ViewportSize(width=width, height=800))
    height = page.evaluate("() => document.documentElement.scrollHeight")
    page.set_viewport_size(ViewportSize(width=width, height=min(int(height), max_height)))


def assert_no_sideways_scroll(page: Page) -> None:
    """The document is no wider than the viewport (no horizontal page scroll on a phone)."""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]}px wide in a {widths[1]}px viewport"


def dismiss_toasts(page: Page) -> None:
    toasts = page.get_by_test_id("toast")
    while toasts.count():
        toasts.first.get_by_role("button", name="Dismiss notification").click()
    expect(toasts).to_have_count(0)


def api_json(page: Page, path: str) -> Any:
    """GET /api/v1<path> with the page's session cookie."""
    resp = page.request.get(f"/api/v1{path}")
    assert resp.ok, f"GET {path}: {resp.status} {resp.text()[:200]}"
    return resp.json()
