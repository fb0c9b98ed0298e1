"""The live connection drops and comes back by itself.

The browser reaches the WebSocket gateway through a TCP proxy (tests/e2e/stack.py):
cutting it resets the open socket and refuses new ones, as a crashed gateway
would. The indicator must say "Reconnecting…", at least one retry must fail
while the gateway is away, and once it is back the app reconnects on its own
(no reload) and prices stream again on the new socket.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocket, expect

from tests.e2e.stack import BTC, E2EStack
from tests.e2e.ui import sign_up

pytestmark = pytest.mark.e2e


def _prices_frame(payload: str | bytes) -> bool:
    text = payload.decode() if isinstance(payload, bytes) else payload
    return '"type":"prices"' in text.replace(" ", "")


def poll(page: Page, cond: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    """Wait for a condition on what Playwright reports to Python (events keep flowing meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        page.wait_for_timeout(50)


def test_the_connection_indicator_shows_reconnecting_and_resumes_by_itself(
        stack: E2EStack, new_context: Callable[..., BrowserContext]) -> None:
    page = new_context().new_page()
    sockets: list[WebSocket] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    sign_up(page, stack, "reconnect")
    page.get_by_test_id(f"market-{BTC}").click()
    status = page.get_by_test_id("conn-status")
    expect(status).to_have_attribute("data-state", "connected")
    expect(status).to_have_text("Live")
    page.evaluate("() => { window.__e2eSamePage = true; }")  # gone if the page reloads
    before = len(sockets)
    assert before >= 1 and not sockets[-1].is_closed()

    try:
        stack.feed.cut_ws()
        expect(status).to_have_attribute("data-state", "reconnecting")
        expect(status).to_contain_text("Reconnecting")
        # a retry while the gateway is away fails, and the app keeps trying
        poll(page, lambda: len(sockets) > before and sockets[before].is_closed(), "a failed retry")
        expect(status).to_have_attribute("data-state", "reconnecting")
    finally:
        stack.feed.restore_ws()

    expect(status).to_have_attribute("data-state", "connected", timeout=40_000)
    expect(status).to_have_text("Live")
    assert page.evaluate("() => window.__e2eSamePage === true"), "the page was reloaded"
    live = sockets[-1]
    assert not live.is_closed() and len(sockets) >= before + 2, [ws.url for ws in sockets]
    assert re.search(r"[?&]ticket=", live.url) and live.url != sockets[before - 1].url  # a fresh ticket

    # prices flow on the new socket, and the screen follows them
    live.wait_for_event("framereceived", predicate=_prices_frame)
    bid = page.get_by_test_id("bid")
    first = bid.inner_text()
    expect(bid).not_to_have_text(first)
    live.wait_for_event("framereceived", predicate=_prices_frame)
