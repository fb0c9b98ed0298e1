"""Price poller: Backpack live feed, market simulator, 1-minute candles.

Entry points: :func:`run_poller` (async, for embedding and tests) and
:func:`main_poller` (``python -m opex_engine poller``). See docs/prices.md.
"""

from .poller import main_poller, run_poller

__all__ = ["main_poller", "run_poller"]
