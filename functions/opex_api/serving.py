"""Serving the API from a long-running process (uvicorn, the local stack).

``tune_gc()``, called once at start-up (the app's lifespan): the garbage
collector's full collections walk every tracked object, and after start-up
that is the ~100k objects of FastAPI, pydantic, redis and the app, which
never become garbage. A full collection then took milliseconds every few
hundred requests under load, a step in the latency tail of whichever requests
were in flight. ``gc.freeze()`` moves everything alive at start-up out of the
collector's sight, and a larger first-generation threshold makes the young
collections (which a request's short-lived dicts trigger) rarer. Nothing is
switched off: cycles created while serving are still collected.
"""

from __future__ import annotations

import os

from opex_common import heap


def _gen0_threshold() -> int:
    raw = os.environ.get("API_GC_GEN0_THRESHOLD", "20000")
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 700 <= value <= 10_000_000:
        raise ValueError(f"API_GC_GEN0_THRESHOLD must be an integer from 700 to 10000000, not {raw!r}")
    return value


# allocations minus deallocations of tracked objects between young collections
# (CPython's default is 700); the older generations keep their defaults
GC_GEN0_THRESHOLD = _gen0_threshold()

_tuned = False


def tune_gc() -> None:
    """Freeze what start-up allocated and raise the young-generation threshold (once per process)."""
    global _tuned
    if _tuned:
        return
    _tuned = True
    heap.settle(GC_GEN0_THRESHOLD, collect=True)
