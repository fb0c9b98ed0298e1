"""Browser end-to-end tests (Playwright + Chromium) against the whole local stack."""
