"""Posting without threads: boto3 calls in greenlets on the pusher's event loop.

Why: the pusher's CPU per post is its limit (docs/websocket.md). With the
posts in a thread pool, every post hands the GIL over at least twice (the
request written, the answer read) and the hand-offs cost ~100 µs of CPU per
post on top of boto3's own ~300 µs: measured with 2, 8 and 32 threads alike.
A post's own waiting is I/O on one socket, so it can wait on the event loop
instead, and nothing needs a second thread.

How: ``Hub.submit(fn, *args)`` runs ``fn`` in a greenlet of its own, started
from the loop's thread, at most ``limit`` at once (the rest wait in order).
``fn`` calls boto3's client as usual. When the client's HTTP session, the
pusher's ``KeepAliveTransport``, would block on a socket (no answer yet, a
full send buffer) it calls ``Hub.wait_socket``: the socket is registered with
the event loop and the greenlet switches back to the loop, which switches into
it again when the socket is ready (or raises ``TimeoutError`` in it when the
timeout passes). Opening a connection (DNS, connect, TLS handshake) is handed
to the loop's default executor meanwhile (``Hub.call_blocking``).

Everything above the transport, botocore's serialization, endpoint rules,
signing, parsing and modelled exceptions, runs unchanged; it runs on the
loop's thread, one post at a time, between the loop's other callbacks. Code
outside a hub greenlet (``current_hub()`` is None) keeps blocking as before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

log = logging.getLogger("opex.pusher")

T = TypeVar("T")


class _Job(greenlet):  # type: ignore[misc]
    """A greenlet run by a Hub: the transport asks ``current_hub()`` for it."""

    hub: Hub


def current_hub() -> Hub | None:
    """The Hub running the calling greenlet, if any."""
    current = getcurrent()
    return current.hub if isinstance(current, _Job) else None


class Hub:
    """Runs jobs in greenlets on one event loop's thread, at most ``limit`` at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.loop = loop
        self.limit = limit
        self.running = 0
        self._thread = threading.get_ident()
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._jobs: set[_Job] = set()
        self._pump_scheduled = False
        self._closed = False

    # ------------------------------------------------------------------ jobs
    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in a greenlet: now if called from the loop itself,
        else as soon as the loop gets to it. RuntimeError once closed."""
        if self._closed:
            raise RuntimeError("the hub is closed")
        self._queue.append((fn, args))
        if self.running >= self.limit:
            return  # a finishing job starts it
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._pump)
        elif isinstance(getcurrent(), _Job):
            self._schedule_pump()  # never start a greenlet from inside another one
        else:
            self._pump()

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        """On the loop's own greenlet: start queued jobs up to the limit."""
        self._pump_scheduled = False
        queue = self._queue
        while queue and self.running < self.limit and not self._closed:
            fn, args = queue.popleft()
            self.running += 1
            job = _Job(self._run, parent=getcurrent())
            job.hub = self
            self._jobs.add(job)
            job.switch(job, fn, args)

    def _run(self, job: _Job, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except GreenletExit:
            pass
        except Exception:  # a job should not raise; never lose the hub's count
            log.exception("posting job failed")
        finally:
            self.running -= 1
            self._jobs.discard(job)
            if self._queue and not self._closed:
                self._schedule_pump()

    # ------------------------------------------------------------------ waiting (in a job)
    def wait_socket(self, sock: socket.socket, write: bool, timeout: float | None) -> None:
        """Suspend the calling job until ``sock`` is readable (writable if
        ``write``); TimeoutError after ``timeout`` seconds."""
        job = getcurrent()
        loop = self.loop
        fd = sock.fileno()
        wake = job.switch
        if write:
            loop.add_writer(fd, wake, True)
        else:
            loop.add_reader(fd, wake, True)
        timer = loop.call_later(timeout, wake, False) if timeout is not None else None
        try:
            ready = job.parent.switch()
        finally:
            if write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)
            if timer is not None:
                timer.cancel()
        if not ready:
            raise TimeoutError("timed out")

    def call_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the loop's default executor; the calling job waits for it."""
        job = getcurrent()
        future = self.loop.run_in_executor(None, fn, *args)
        future.add_done_callback(lambda _f: job.switch())
        try:
            job.parent.switch()
        except GreenletExit:
            future.cancel()
            raise
        return future.result()

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Drop the jobs not started and end the ones waiting (GreenletExit in
        them). From the loop's thread, outside a job."""
        self._closed = True
        self._queue.clear()
        for job in list(self._jobs):
            if not job.dead:
                job.throw(GreenletExit)
        self._jobs.clear()
