"""The poller's view of each market: the latest good prices, and the checks that
need memory (sanity band, ordering).

Pure logic with an injected clock value (``now`` in monotonic seconds): no I/O.

- **Sanity band.** A price more than ``sanity_band_bps`` away from the last good
  one is dropped (reason ``price_jump``) and the last good price stays. If the
  new level persists (``jump_confirm_frames`` frames over ``jump_confirm_ms``, all
  within the band of each other) it is a real move and becomes the new reference.
  Bid/ask are checked by their mid; mark and index each against their own last
  value. A change of source (simulator <-> Backpack) resets the references.
- **Ordering.** Within one connection, a bookTicker whose update id ``u`` is lower
  than the last one, or a markPrice older (``E``) than the last one, is dropped
  (``out_of_order``). Reconnecting resets this, since ids may restart.
- **Provisional mark.** Until a source has sent a mark for a market, the mark and
  index are the mid (rounded down), or the values primed from REST markPrices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .backpack import BookUpdate, FrameError, MarkUpdate, mid_price

PRIMED_MARK_TTL_S = 10.0  # a REST mark older than this is not used


class JumpGuard:
    """Sanity band around the last good value of one price series."""

    __slots__ = ("band_bps", "cand", "cand_frames", "cand_since", "confirm_frames", "confirm_s", "ref")

    def __init__(self, band_bps: int, confirm_ms: int, confirm_frames: int) -> None:
        self.band_bps = band_bps
        self.confirm_s = confirm_ms / 1000.0
        self.confirm_frames = confirm_frames
        self.ref = 0
        self.cand = 0
        self.cand_since = 0.0
        self.cand_frames = 0

    def reset(self) -> None:
        self.ref = 0
        self.cand = 0
        self.cand_frames = 0

    def _within(self, price: int, ref: int) -> bool:
        return abs(price - ref) * 10_000 <= self.band_bps * ref

    def assess(self, price: int, now: float) -> bool:
        """True if ``price`` may be accepted; tracks a candidate new level otherwise."""
        if self.ref == 0 or self._within(price, self.ref):
            return True
        if self.cand and self._within(price, self.cand):
            self.cand_frames += 1
            return self.cand_frames >= self.confirm_frames and now - self.cand_since >= self.confirm_s
        self.cand = price
        self.cand_since = now
        self.cand_frames = 1
        return self.confirm_frames <= 1 and self.confirm_s <= 0

    def accept(self, price: int) -> bool:
        """Make ``price`` the reference. Returns True if this confirmed a jump."""
        jumped = self.ref != 0 and not self._within(price, self.ref)
        self.ref = price
        self.cand = 0
        self.cand_frames = 0
        return jumped


@dataclass(slots=True)
class MarketState:
    symbol: str
    guard_book: JumpGuard
    guard_mark: JumpGuard
    guard_index: JumpGuard
    bid: int = 0
    ask: int = 0
    mark: int = 0
    index: int = 0
    funding_rate: int = 0  # 1e-9
    next_funding_ms: int = 0
    ts_ms: int = 0  # source time of the latest update
    source: str = ""
    has_book: bool = False
    has_mark: bool = False  # the current source sent a mark (not the provisional mid)
    last_update_id: int | None = None
    last_mark_ts: int = 0
    last_good_mono: float | None = None
    stale_notified: bool = False
    primed: MarkUpdate | None = field(default=None)
    primed_at: float = 0.0

    @property
    def ready(self) -> bool:
        """Complete and sane enough to send to the engine."""
        return self.has_book and 0 < self.bid <= self.ask and self.mark > 0 and self.index > 0

    def public(self) -> dict[str, int | str]:
        return {
            "bid": self.bid,
            "ask": self.ask,
            "mark": self.mark,
            "index": self.index,
            "funding_rate": self.funding_rate,
            "next_funding_ms": self.next_funding_ms,
            "ts": self.ts_ms,
            "source": self.source,
        }


class MarketBook:
    def __init__(self, symbols: Iterable[str], band_bps: int, confirm_ms: int, confirm_frames: int) -> None:
        def guard() -> JumpGuard:
            return JumpGuard(band_bps, confirm_ms, confirm_frames)

        self.states: dict[str, MarketState] = {
            s: MarketState(s, guard(), guard(), guard()) for s in symbols
        }
        self.dirty: set[str] = set()
        self.jumps_confirmed = 0

    # ----------------------------------------------------------------- source / connection
    def switch_source(self) -> None:
        """A different source takes over: its first prices set new references."""
        for st in self.states.values():
            st.guard_book.reset()
            st.guard_mark.reset()
            st.guard_index.reset()
            st.has_mark = False
            st.last_update_id = None
            st.last_mark_ts = 0

    def new_connection(self) -> None:
        """Update ids and event times are only comparable within one connection."""
        for st in self.states.values():
            st.last_update_id = None
            st.last_mark_ts = 0

    def prime_mark(self, upd: MarkUpdate, now: float) -> None:
        """A mark from REST, used (while fresh) until the stream's first markPrice."""
        st = self.states.get(upd.market)
        if st is not None and not st.has_mark:
            st.primed = upd
            st.primed_at = now

    # ----------------------------------------------------------------- updates
    def _touch(self, st: MarketState, ts_ms: int, source: str, now: float) -> None:
        st.ts_ms = ts_ms
        st.source = source
        if st.ready:  # a price the engine can use: only that counts against staleness
            st.last_good_mono = now
            st.stale_notified = False
        self.dirty.add(st.symbol)

    def apply_book(self, upd: BookUpdate, source: str, now: float) -> MarketState:
        st = self.states[upd.market]
        if upd.update_id is not None and st.last_update_id is not None and upd.update_id < st.last_update_id:
            raise FrameError("out_of_order", "u", f"{upd.update_id} after {st.last_update_id}")
        mid = mid_price(upd.bid, upd.ask)
        if not st.guard_book.assess(mid, now):
            raise FrameError("price_jump", "b", f"mid {mid} vs last good {st.guard_book.ref}")
        if st.guard_book.accept(mid):
            self.jumps_confirmed += 1
        st.bid, st.ask = upd.bid, upd.ask
        st.has_book = True
        if upd.update_id is not None:
            st.last_update_id = upd.update_id
        if not st.has_mark:
            primed = st.primed
            st.primed = None
            if primed is not None and now - st.primed_at <= PRIMED_MARK_TTL_S:
                self._set_mark(st, primed)
            else:
                st.mark = st.index = mid
        self._touch(st, upd.ts_ms, source, now)
        return st

    def _set_mark(self, st: MarketState, upd: MarkUpdate) -> None:
        st.mark = upd.mark
        if upd.index is not None:
            st.index = upd.index
        elif not st.has_mark:
            st.index = upd.mark
        if upd.funding_rate is not None:
            st.funding_rate = upd.funding_rate
        if upd.next_funding_ms is not None:
            st.next_funding_ms = upd.next_funding_ms
        st.has_mark = True
        if st.guard_mark.accept(upd.mark):
            self.jumps_confirmed += 1
        if upd.index is not None:
            st.guard_index.accept(upd.index)

    def apply_mark(self, upd: MarkUpdate, source: str, now: float) -> MarketState:
        st = self.states[upd.market]
        if st.last_mark_ts and upd.ts_ms < st.last_mark_ts:
            raise FrameError("out_of_order", "E", f"{upd.ts_ms} before {st.last_mark_ts}")
        mark_ok = st.guard_mark.assess(upd.mark, now)
        index_ok = upd.index is None or st.guard_index.assess(upd.index, now)
        if not mark_ok:
            raise FrameError("price_jump", "p", f"mark {upd.mark} vs last good {st.guard_mark.ref}")
        if not index_ok:
            raise FrameError("price_jump", "i", f"index {upd.index} vs last good {st.guard_index.ref}")
        self._set_mark(st, upd)
        st.primed = None
        st.last_mark_ts = upd.ts_ms
        self._touch(st, upd.ts_ms, source, now)
        return st

    def apply_full(self, market: str, bid: int, ask: int, mark: int, index: int, funding_rate: int,
                   next_funding_ms: int, ts_ms: int, source: str, now: float) -> MarketState:
        """A complete tick from a trusted source (the simulator)."""
        st = self.states[market]
        st.bid, st.ask, st.mark, st.index = bid, ask, mark, index
        st.funding_rate, st.next_funding_ms = funding_rate, next_funding_ms
        st.has_book = st.has_mark = True
        self._touch(st, ts_ms, source, now)
        return st
