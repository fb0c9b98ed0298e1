"""Browser end-to-end fixtures: one local stack and one Chromium for this folder.

The stack (tests/e2e/stack.py) serves the SPA from frontend/dist (``npm run
build`` first; scripts/test.sh does) or from ``OPEX_E2E_DIST``. Each test signs
up users of its own, so tests share the stack but not accounts. On a failure,
a screenshot of every open page and the tail of the stack's log are kept in
the stack's log directory (printed in the report).

Both fixtures are package-scoped (this folder has an ``__init__.py`` for that):
they end with the last browser test, so the stack's load is gone and the
Playwright event loop (which would make ``asyncio.run`` fail) is closed before
the other suites' e2e tests run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ViewportSize, expect, sync_playwright

from tests.e2e.stack import E2EStack, launch_chromium
from tests.e2e.ui import DESKTOP

# A shared 2-core machine: wait generously for anything the stack or the browser does.
TIMEOUT_MS = 25_000
expect.set_options(timeout=TIMEOUT_MS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    s = E2EStack(log_dir=tmp_path_factory.mktemp("e2e-stack"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def new_context(request: pytest.FixtureRequest, browser: Browser,
                stack: E2EStack) -> Iterator[Callable[..., BrowserContext]]:
    """Make a browser context (its own cookies: one user) on the stack's origin."""
    made: list[BrowserContext] = []

    def make(viewport: ViewportSize | None = None, **kwargs: Any) -> BrowserContext:
        ctx = browser.new_context(base_url=stack.base_url, viewport=viewport or DESKTOP, **kwargs)
        ctx.set_default_timeout(TIMEOUT_MS)
        made.append(ctx)
        return ctx

    yield make
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, ctx in enumerate(made):
            for j, page in enumerate(ctx.pages):
                path = stack.log_dir / f"{request.node.name}-{i}-{j}.png"
                try:
                    page.screenshot(path=str(path))
                    print(f"failure screenshot: {path}")
                except Exception as exc:  # the page may be gone
                    print(f"no screenshot of context {i} page {j}: {exc}")
        print(f"--- stack log ({stack.log_path}), last lines:\n{stack.log_tail(40)}")
    for ctx in made:
        ctx.close()
