"""Keeping CPython's garbage collector off a long-running process's hot path.

Full collections walk every tracked object. In a server, most of those live
for the whole process (the engine's state; FastAPI's, pydantic's and redis'
objects in the API) and never become garbage, so each full collection is a
pause that grows with them. ``settle`` moves everything alive now into the
permanent generation (``gc.freeze()``): later collections look only at what
was allocated since. Nothing is switched off; cycles made afterwards are
still collected.
"""

from __future__ import annotations

import gc


def settle(gen0_threshold: int, *, collect: bool = False, older: tuple[int, int] | None = None) -> None:
    """Freeze what is alive; young collections every ``gen0_threshold`` net
    allocations (CPython's default is 700), the older generations at
    ``older`` (default: unchanged). ``collect`` first so no garbage cycle is
    frozen with the rest; skip it where a full collection is the very pause
    to avoid (a large heap of acyclic objects)."""
    gen1, gen2 = older if older is not None else gc.get_threshold()[1:]
    gc.set_threshold(gen0_threshold, gen1, gen2)
    if collect:
        gc.collect()
    gc.freeze()
