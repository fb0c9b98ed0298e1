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
from typing import Any

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


# ---------------------------------------------------------------------- one write per response
class _Hold:
    """Stands in for the transport while uvicorn writes a response's head."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class _Prefixed:
    """Stands in for the transport while uvicorn writes the first body chunk:
    the held head goes in the same ``write``."""

    __slots__ = ("transport", "head", "done")

    def __init__(self, transport: Any, head: bytes) -> None:
        self.transport, self.head, self.done = transport, head, False

    def write(self, data: bytes) -> None:
        if not self.done:
            self.done = True
            data = self.head + data
        self.transport.write(data)

    def flush(self) -> None:
        if not self.done:
            self.done = True
            self.transport.write(self.head)

    def close(self) -> None:
        self.flush()
        self.transport.close()


_coalescing = False


def coalesce_response_writes() -> None:
    """Make uvicorn's httptools protocol send a response's head with its first
    body chunk, in one ``write`` (one system call, one TCP segment) instead of two.

    uvicorn writes the status line and headers as soon as the app sends
    ``http.response.start``, then the body at ``http.response.body``: two
    ``send`` system calls per response, which were a tenth of the API
    worker's time on the trade routes. Here the head is held (in the request's
    ``RequestResponseCycle``) until the first body message, which follows at
    once for every response this app makes. A HEAD response, or a body message
    that writes nothing, still sends the head. Installed in the worker process
    of ``opex_api.serve`` only (a subclass of uvicorn's cycle, set where its
    protocol looks the class up)."""
    global _coalescing
    if _coalescing:
        return
    from uvicorn.protocols.http import httptools_impl

    base = httptools_impl.RequestResponseCycle

    class CoalescingCycle(base):  # type: ignore[misc, valid-type]
        _held: bytes | None = None
        transport: Any

        async def send(self, message: Any) -> None:
            transport: Any = self.transport
            if message["type"] == "http.response.start" and not self.response_started:
                hold = _Hold()
                self.transport = hold
                try:
                    await super().send(message)
                finally:
                    self.transport = transport
                if hold.data:
                    self._held = hold.data
                return
            head = self._held
            if head is None:
                await super().send(message)
                return
            self._held = None
            prefixed = _Prefixed(transport, head)
            self.transport = prefixed
            try:
                await super().send(message)
            finally:
                self.transport = transport
            if not self.disconnected:
                prefixed.flush()

    httptools_impl.RequestResponseCycle = CoalescingCycle  # type: ignore[misc]
    _coalescing = True
