"""Stopping supervisors (the local stack, the API's workers, the pusher's
partitions) on SIGTERM or SIGINT."""

from __future__ import annotations

import signal


class StopFlag:
    """True once SIGTERM or SIGINT arrived (or ``set()`` was called): the
    supervisor's loop checks it between looks at its children."""

    def __init__(self) -> None:
        self._set = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self._set = True

    def set(self) -> None:
        self._set = True

    def __bool__(self) -> bool:
        return self._set
