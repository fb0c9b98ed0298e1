"""Price-level trigger index: what must be looked at when a price moves.

Each watched thing (an isolated trade's liquidation price, a cross account's
safe band, a take-profit, a stop-loss) registers price levels per market:
``FALLING`` fires when the price drops to or below the level, ``RISING`` when it
climbs to or above it. A tick pops only the levels it crossed, so its cost is
proportional to what is near its trigger, not to the number of open trades.

Entries are removed lazily: re-registering a key bumps its sequence and old
heap entries are skipped when popped. Heaps are rebuilt when stale entries
outnumber live ones, so memory stays proportional to what is watched.
"""

from __future__ import annotations

import heapq

FALLING = 0
RISING = 1
ALWAYS = 10**18  # a FALLING level that any price crosses

Key = tuple[str, str]  # (kind, id): ("iso", trade id), ("acct", user id), ("order", order id) ...
KeySet = set[Key]  # (named here: inside TriggerIndex, ``set`` is the method)
Level = tuple[str, int, int]  # (market, direction, price level)


class TriggerIndex:
    __slots__ = ("_falling", "_rising", "_live", "_seq", "_heap_size")

    def __init__(self) -> None:
        self._falling: dict[str, list[tuple[int, int, Key]]] = {}  # (-level, seq, key)
        self._rising: dict[str, list[tuple[int, int, Key]]] = {}  # (level, seq, key)
        self._live: dict[Key, tuple[int, tuple[Level, ...]]] = {}
        self._seq = 0
        self._heap_size = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: Key) -> bool:
        return key in self._live

    def set(self, key: Key, levels: tuple[Level, ...]) -> None:
        """Watch ``key`` at ``levels`` (replacing what it watched before)."""
        if not levels:
            self._live.pop(key, None)
            return
        self._seq += 1
        seq = self._seq
        self._live[key] = (seq, levels)
        for market, direction, level in levels:
            if direction == FALLING:
                heapq.heappush(self._falling.setdefault(market, []), (-level, seq, key))
            else:
                heapq.heappush(self._rising.setdefault(market, []), (level, seq, key))
        self._heap_size += len(levels)
        if self._heap_size > 4 * len(self._live) + 4096:
            self._compact()

    def remove(self, key: Key) -> None:
        self._live.pop(key, None)

    def pop_crossed(self, market: str, price: int, out: KeySet) -> None:
        """Move every key with a level in ``market`` crossed by ``price`` into ``out``.

        A popped key is no longer watched anywhere; whoever evaluates it
        registers it again if it still needs watching.
        """
        live = self._live
        heap = self._falling.get(market)
        if heap:
            while heap and -heap[0][0] >= price:
                _, seq, key = heapq.heappop(heap)
                self._heap_size -= 1
                cur = live.get(key)
                if cur is not None and cur[0] == seq:
                    del live[key]
                    out.add(key)
        heap = self._rising.get(market)
        if heap:
            while heap and heap[0][0] <= price:
                _, seq, key = heapq.heappop(heap)
                self._heap_size -= 1
                cur = live.get(key)
                if cur is not None and cur[0] == seq:
                    del live[key]
                    out.add(key)

    def _compact(self) -> None:
        falling: dict[str, list[tuple[int, int, Key]]] = {}
        rising: dict[str, list[tuple[int, int, Key]]] = {}
        size = 0
        for key, (seq, levels) in self._live.items():
            for market, direction, level in levels:
                if direction == FALLING:
                    falling.setdefault(market, []).append((-level, seq, key))
                else:
                    rising.setdefault(market, []).append((level, seq, key))
                size += 1
        for heap in falling.values():
            heapq.heapify(heap)
        for heap in rising.values():
            heapq.heapify(heap)
        self._falling, self._rising, self._heap_size = falling, rising, size
